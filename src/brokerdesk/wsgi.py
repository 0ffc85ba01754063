"""WSGI entry point for gunicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerdesk.settings")
application = get_wsgi_application()

from brokerdesk.core.runtime import tune_gc  # noqa: E402 - once Django has loaded the apps

tune_gc()
