"""Print fresh values for the secrets production needs, as `.env` lines.

Nothing is stored or logged: the output goes to the terminal of the operator, who puts it into the secret
store. Values are url-safe base64, so they need no quoting in a shell or an `.env` file and never start with
`$` (which django-environ would read as a reference to another variable).

`--field-key` prints only a new field key (32 random bytes, url-safe base64), for rotation: put it FIRST in
FIELD_ENCRYPTION_KEYS, keep the old keys after it, restart, then run `manage.py rotate_keys`.
"""

from __future__ import annotations

import secrets
from typing import Any

from cryptography.fernet import Fernet
from django.core.management.base import BaseCommand, CommandParser

SECRET_KEY_BYTES = 48  # 64 characters: Django's deploy check wants at least 50
INDEX_KEY_BYTES = 32  # HMAC-SHA256 keys: 256 bits


def fresh_secrets() -> dict[str, str]:
    """New, independent values for every secret config/settings.py requires in production."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(SECRET_KEY_BYTES),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode("ascii"),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(INDEX_KEY_BYTES),
        "AUDIT_CHAIN_KEY": secrets.token_urlsafe(INDEX_KEY_BYTES),
    }


class Command(BaseCommand):
    help = (
        "本番用の秘密鍵（SECRET_KEY・暗号鍵・ブラインドインデックス鍵・監査チェーン鍵）を"
        "新しく生成して表示します。"
    )
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--field-key",
            action="store_true",
            help="鍵ローテーション用にフィールド暗号鍵を1つだけ表示（FIELD_ENCRYPTION_KEYS の先頭に追加）",
        )

    def handle(self, *args: Any, field_key: bool = False, **opts: Any) -> None:
        if field_key:
            self.stdout.write(Fernet.generate_key().decode("ascii"))
            return
        self.stdout.write(
            "# 新しく生成した秘密鍵です。秘密情報の保管場所に保存し、リポジトリには入れないでください。\n"
            "# BLIND_INDEX_KEY と AUDIT_CHAIN_KEY は運用開始後に変えないでください"
            "（検索用インデックス・監査チェーンの検証がその鍵に依存します）。"
        )
        for name, value in fresh_secrets().items():
            self.stdout.write(f"{name}={value}")
