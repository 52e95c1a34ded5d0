"""ASGI entry point: `daphne astron.asgi:application`.

HTTP goes to Django, through the layer that does a run start's waiting
(flows/api/waiting.py); websockets (`/ws/runs/<id>/`, flows/routing.py) to Channels, behind the
origin check and session authentication. Importing this module is how a serving process
starts: it announces how code nodes are isolated and starts the executor, which takes over
runs that need a worker. One daphne process is a complete server.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

from astron.handler import ReusedThreadsASGIHandler  # noqa: E402 - needs the apps loaded

django_application = ReusedThreadsASGIHandler()  # Django's, keeping its request threads

from channels.routing import ProtocolTypeRouter  # noqa: E402 - needs the apps loaded
from django.conf import settings  # noqa: E402

from astron.heap import freeze_loaded_objects  # noqa: E402
from flows.api.waiting import WaitingForRuns  # noqa: E402
from flows.execution.executor import executor  # noqa: E402
from flows.execution.world import announce_isolation  # noqa: E402
from flows.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter({
    "http": WaitingForRuns(django_application),  # a run start's `wait` holds no thread
    "websocket": websocket_application,
})

announce_isolation()
freeze_loaded_objects()
if settings.RUN_EXECUTOR == "inline":  # with celery, worker processes execute runs
    executor.start()
    executor.prestart_sandbox()
