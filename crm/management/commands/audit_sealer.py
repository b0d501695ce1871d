"""Seal the audit chain: the one long-running process that chains every audit entry written.

    manage.py audit_sealer [--interval SECONDS] [--once]

Run exactly like beat, one per deployment (`./dev up` starts it beside web, worker and beat). It looks for
pending entries every `--interval` seconds (default AUDIT_SEAL_INTERVAL, 0.5), seals them in batches under the
chain's advisory lock, and appends each new head to the anchor file (AUDIT_ANCHOR_PATH) and the
"crm.audit.anchor" log. Two of them, or one beside beat's per-minute safety net, are harmless: when another
process holds the lock it got there first, and this one waits for the next round. SIGTERM/SIGINT finish the
round in progress and exit. `--once` seals what is pending and exits (cron, repairs).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from crm.audit.sealing import anchor_catch_up, audit_seal_pending, audit_sealer_run


class Command(BaseCommand):
    help = "監査ログのハッシュチェーンを封印（連結）し続けます。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=None, help="seconds between two looks")
        parser.add_argument("--once", action="store_true", help="seal what is pending and exit")

    def handle(self, *args: Any, interval: float | None, once: bool, **options: Any) -> None:
        interval = settings.AUDIT_SEAL_INTERVAL if interval is None else interval
        if not 0 < interval <= 60:
            raise CommandError("--interval は0より大きく60以下の秒数で指定してください。")
        if once:
            anchor_catch_up()
            self.stdout.write(f"sealed {audit_seal_pending()} entries")
            return
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            self.stdout.write(f"{signal.strsignal(signum)}, finishing...")
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.stdout.write(f"audit sealer: looking for pending entries every {interval} s")
        audit_sealer_run(stop=stop, interval=interval)
