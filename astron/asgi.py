"""ASGI entry point: `daphne astron.asgi:application`.

Plain Django for now; the websocket routes (Channels' ProtocolTypeRouter) come with the
run consumers.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")

application = get_asgi_application()
