"""Websocket addresses other than a run's: refused with a close code, never an error of the
application; a run's address works without its final slash too."""

import json
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from flows import services

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

pytestmark = pytest.mark.django_db(transaction=True)


def application():
    from astron.asgi import application  # imported once the test database exists

    return application


@pytest.mark.parametrize("path", ["/ws/elsewhere/", "/ws/runs/", "/ws/runs/a/b/", "/"])
async def test_an_unknown_socket_address_is_closed_with_4404(path):
    ws = WebsocketCommunicator(application(), path)

    connected, code = await ws.connect(timeout=10)

    assert (connected, code) == (False, 4404)


async def test_a_runs_address_without_its_final_slash_streams_the_run():
    owner = await sync_to_async(User.objects.create_user)("ada")
    key = (await sync_to_async(services.create_token)(owner, "socket"))[1]
    dsl = json.loads((SAMPLES / "hello.json").read_text())
    flow = await sync_to_async(services.create_flow)(owner, dsl)
    run, _ = await sync_to_async(services.start_run)(owner, flow, {"name": "Ada"})
    ws = WebsocketCommunicator(application(), f"/ws/runs/{run.pk}")

    connected, _ = await ws.connect(timeout=10)
    await ws.send_json_to({"type": "auth", "token": key})
    first = json.loads((await ws.receive_output(20))["text"])

    assert connected
    assert first["seq"] == 1 and first["type"] == "run.started"
    await ws.disconnect()
