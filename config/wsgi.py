import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Refuse to serve with keys that cannot open the data (never show ciphertext as data).
from crm.checks import verify_encryption_canary  # noqa: E402

verify_encryption_canary()
