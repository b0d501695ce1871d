"""An e-mail backend for the worker test only: incidents.mail's file backend that, right after writing its
INCIDENT_TEST_BLOCK_AT-th message, waits on a PostgreSQL advisory lock the test holds. The test then kills the
worker at the worst moment for "exactly once": the e-mail has left, its notice is not yet marked sent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from django.core.mail import EmailMessage
from django.db import connection

from incidents.mail import FileBasedEmailBackend

BLOCK_KEY = 0x15B10C


def messages_in(directory: str | Path) -> list[str]:
    """The Message-ID of every message written to `directory`, one entry per message."""
    found = []
    for path in sorted(Path(directory).iterdir()):
        for line in path.read_bytes().splitlines():
            if line.lower().startswith(b"message-id:"):
                found.append(line.split(b":", 1)[1].strip().decode())
    return found


class BlockingFileBackend(FileBasedEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        block_at = int(os.environ.get("INCIDENT_TEST_BLOCK_AT", "0"))
        if block_at and len(messages_in(self.file_path)) == block_at:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [BLOCK_KEY])
        return sent
