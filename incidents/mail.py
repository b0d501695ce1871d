"""E-mail backends that can say which messages they have already handed over.

The notice sender (incidents.services.incident_notices_send_batch) gives each notice a Message-ID fixed by
the notice row and records it before the e-mail leaves. When a sender dies between handing a message over
and recording "sent", the next sender asks the backend whether that Message-ID left; a backend answers
through the optional method `delivered_message_ids(candidates) -> set[str]`. A backend without it (Django's
SMTP backend: SMTP has no way to ask afterwards) cannot tell, and the notice is left for a person to check
rather than risk a second letter.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from django.core.mail.backends import filebased

_HEADER = b"message-id:"


class FileBasedEmailBackend(filebased.EmailBackend):
    """Django's file backend (each message appended to a file in EMAIL_FILE_PATH), which can tell which
    Message-IDs its directory holds: the files are what was sent."""

    def delivered_message_ids(self, candidates: Collection[str]) -> set[str]:
        """The Message-IDs among `candidates` that a file of this backend's directory holds."""
        wanted = set(candidates)
        found: set[str] = set()
        if not wanted:
            return found
        directory = Path(self.file_path)  # type: ignore[attr-defined]  # Django's __init__ sets it
        for path in sorted(directory.iterdir()):
            if not path.is_file():
                continue
            with path.open("rb") as stream:
                for line in stream:
                    if line[: len(_HEADER)].lower() == _HEADER:
                        value = line[len(_HEADER) :].strip().decode("ascii", "replace")
                        if value in wanted:
                            found.add(value)
        return found
