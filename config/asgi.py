"""ASGI entry point. Like config/wsgi.py, refuses to start when the encryption keys cannot open the data."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from crm.checks import verify_encryption_canary  # noqa: E402

verify_encryption_canary()
