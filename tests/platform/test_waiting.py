"""Waiting for a run holds nothing (docs/api.md, "Waiting for a run"): a run start with
`wait` ends its Django request (thread and connection back) and the server's waiting layer
(flows/api/waiting.py) waits on the event loop, for news from the executor that runs it
here, or from the run's channel group when it moved elsewhere."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.handlers.asgi import ASGIHandler
from django.db import connection, connections

from flows import services
from flows.api.waiting import WaitingForRuns
from flows.execution.executor import executor
from flows.models import Run, RunEvent
from tests.processes import environment_for_another_process
from tests.servers import daphne

pytestmark = pytest.mark.django_db(transaction=True)


def napping(seconds: float) -> dict:
    return {"dsl": "astron/v1", "name": "Nap",
            "nodes": [{"id": "start", "type": "start"},
                      {"id": "nap", "type": "wait", "params": {"seconds": seconds}},
                      {"id": "end", "type": "end", "inputs": {"done": "yes"}}],
            "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}]}


def server_in_process() -> httpx.AsyncClient:
    """An HTTP client of the project's HTTP stack (the waiting layer, then Django), called
    in this process: its database pool is this test's to inspect."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=WaitingForRuns(ASGIHandler())),
                             base_url="http://testserver", timeout=60)


def owner_with_key(name: str, nap_s: float = 0.3) -> str:
    owner = User.objects.create_user(name)
    services.create_flow(owner, napping(nap_s), slug="nap")
    return services.create_token(owner, "wait")[1]


def test_64_waiting_clients_all_get_their_finished_runs(tmp_path):
    """More waiting requests than the pool has connections (20): before, the executor could
    not get one to run the very runs being waited for, and the waits timed out."""
    key = owner_with_key("many")

    async def clients(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base, timeout=60,
                                     headers={"Authorization": f"Token {key}"}) as http:
            return await asyncio.gather(*(
                http.post("/api/flows/nap/runs/", json={"version": "draft", "wait": 30})
                for _ in range(64)))

    environment = environment_for_another_process(API_RATE="100000/minute")
    with daphne(environment, tmp_path / "daphne.log") as base:
        answers = asyncio.run(clients(base))

    assert [answer.status_code for answer in answers] == [201] * 64
    assert {answer.json()["status"] for answer in answers} == {"succeeded"}
    assert all(answer.json()["outputs"] == {"done": "yes"} for answer in answers)
    assert all(answer.headers["content-type"] == "application/json" and
               "astron-wait" not in answer.headers for answer in answers)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's")
async def test_a_waiting_request_holds_no_pooled_connection():
    key = await sync_to_async(owner_with_key)("patient", 3)
    pool = connection.pool

    def checked_out() -> int:
        stats = pool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    client = server_in_process()
    auth = {"Authorization": f"Token {key}"}
    # The executor runs, and its connections are part of the count before.
    warm = await client.post("/api/flows/nap/runs/", json={"version": "draft"}, headers=auth)
    assert warm.status_code == 201, warm.text
    await sync_to_async(executor.wait)(warm.json()["id"], 10)
    before = checked_out()

    waits = [asyncio.create_task(client.post(
        "/api/flows/nap/runs/", json={"version": "draft", "wait": 30}, headers=auth))
        for _ in range(8)]
    deadline = time.monotonic() + 15
    while await sync_to_async(RunEvent.objects.filter(
            type="node.started", data__node="nap").count)() < 9:
        assert time.monotonic() < deadline, "the runs did not start"
        await asyncio.sleep(0.05)
    during = checked_out()  # eight requests are waiting for their naps to end
    answers = await asyncio.gather(*waits)

    assert [answer.json()["status"] for answer in answers] == ["succeeded"] * 8
    assert during <= before + 1, f"{during - before} more connections checked out"
    await sync_to_async(connections.close_all)()


async def test_a_wait_that_times_out_answers_the_run_as_it_is():
    key = await sync_to_async(owner_with_key)("hasty", 30)
    client = server_in_process()
    auth = {"Authorization": f"Token {key}"}
    answer = await client.post("/api/flows/nap/runs/", json={"version": "draft", "wait": 0.5},
                               headers=auth)
    assert answer.status_code == 201
    assert answer.json()["status"] == "running"
    run = await sync_to_async(Run.objects.get)(pk=answer.json()["id"])
    await sync_to_async(services.cancel_run)(run)
    await sync_to_async(executor.wait)(run.pk, 10)
    await sync_to_async(connections.close_all)()


async def test_a_database_that_does_not_answer_after_the_wait_makes_a_503(monkeypatch):
    from django.db import OperationalError

    from flows.api import waiting

    def no_connection(*args):
        raise OperationalError("couldn't get a connection after 5.00 sec")

    key = await sync_to_async(owner_with_key)("unlucky")
    monkeypatch.setattr(waiting, "run_body", no_connection)
    async with server_in_process() as client:
        answer = await client.post("/api/flows/nap/runs/", json={"version": "draft", "wait": 5},
                                   headers={"Authorization": f"Token {key}"})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
    assert answer.json()["error"]["code"] == "overloaded"
    await sync_to_async(connections.close_all)()



def test_the_served_application_waits_in_the_layer_in_front_of_django():
    """Without the layer the view would wait on its thread: correct, but one thread each."""
    import subprocess
    import sys

    from tests.servers import ROOT

    done = subprocess.run(
        [sys.executable, "-c", "import astron.asgi as served; "
         "print(type(served.application.application_mapping['http']).__name__)"],
        cwd=ROOT, env=environment_for_another_process(), capture_output=True, text=True,
        timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "WaitingForRuns", done.stderr[-2000:]
