"""WSGI entry point (gunicorn config.wsgi).

Importing it verifies the encryption keys against the canary: with a wrong or malformed key the import
raises EncryptionKeyError, so every gunicorn worker fails to boot and the master exits instead of serving
pages that could not decrypt (or, worse, would show ciphertext as data).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

from crm.checks import verify_encryption_canary  # noqa: E402

verify_encryption_canary()
