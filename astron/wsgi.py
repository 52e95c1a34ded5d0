"""WSGI entry point, for tools that want one; Astron itself is served over ASGI by daphne."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")

application = get_wsgi_application()

from astron.heap import freeze_loaded_objects  # noqa: E402

freeze_loaded_objects()
