"""ASGI entry point: `daphne astron.asgi:application`.

Plain Django for now; the websocket routes (Channels' ProtocolTypeRouter) come with the
run consumers. Importing this module is how a serving process starts: it announces how code
nodes are isolated and starts the executor, which takes over runs that need a worker.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")

application = get_asgi_application()

from flows.execution.executor import executor  # noqa: E402 - needs the apps loaded
from flows.execution.world import announce_isolation  # noqa: E402

announce_isolation()
executor.start()
