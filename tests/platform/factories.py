"""Personas and small builders for the platform's tests.

An owner with flows and runs, an outsider who must never see them, a staff user; API
clients authenticate with keys made by `services.create_token`, as integrations do.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from flows import services
from flows.models import Flow, FlowVersion, NodeRun, Run, RunEvent

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def user(username: str, staff: bool = False) -> User:
    person = User.objects.create_user(username, is_staff=staff)
    # Ids repeat between tests: requests counted for an earlier holder of this id must not
    # count against the rate limit (only the throttle's key is dropped from a shared cache).
    cache.delete(f"throttle_user_{person.pk}")
    return person


def api_client(person: User | None = None, scheme: str = "Token") -> APIClient:
    """A client sending a fresh key of `person` (no credentials without one)."""
    client = APIClient()
    if person is not None:
        _, key = services.create_token(person, "tests")
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    return client


def flow(owner: User, name: str = "hello", slug: str | None = None,
         publish: bool = False) -> Flow:
    created = services.create_flow(owner, sample(name), slug=slug)
    if publish:
        services.publish_flow(created)
    return created


def run(owner: User, of: Flow, inputs: dict | None = None, **kwargs) -> Run:
    """A run started through the service (it stays queued unless the test commits)."""
    started, _ = services.start_run(owner, of, {"name": "Ada"} if inputs is None else inputs,
                                     **kwargs)
    return started


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count()
            for model in (Flow, FlowVersion, Run, RunEvent, NodeRun)}


@contextmanager
def no_rows_change():
    """Assert that the block leaves every flow, version, run, node run and event as it was."""
    before = row_counts()
    flows = list(Flow.objects.order_by("pk").values())
    runs = list(Run.objects.order_by("pk").values("pk", "status", "cancel_requested",
                                                  "pending_answers"))
    yield
    assert row_counts() == before
    assert list(Flow.objects.order_by("pk").values()) == flows
    assert list(Run.objects.order_by("pk").values("pk", "status", "cancel_requested",
                                                  "pending_answers")) == runs


def assert_error(response, status: int, code: str) -> dict:
    """The response is `status` with exactly the API's error shape and `code`; its error."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    for detail in error["details"]:
        if code in ("invalid_request", "invalid_dsl", "invalid_inputs"):
            assert set(detail) == {"path", "code", "message"}
    return error


def concurrently(clients, request):
    """`request(client)` on every client at once, each in its own thread; the responses."""
    barrier = threading.Barrier(len(clients))
    answers = []

    def send(client):
        try:
            barrier.wait()
            answers.append(request(client))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == len(clients)
    return answers


def holding(seconds: float, name: str = "Hold") -> dict:
    """A flow whose runs wait `seconds` (a `wait` node): runs that stay running a while."""
    return {"dsl": "astron/v1", "name": name,
            "nodes": [{"id": "start", "type": "start"},
                      {"id": "hold", "type": "wait", "params": {"seconds": seconds}},
                      {"id": "end", "type": "end", "inputs": {"done": "yes"}}],
            "edges": [{"from": "start", "to": "hold"}, {"from": "hold", "to": "end"}]}


def most_at_once(runs) -> int:
    """The most runs whose executions (started_at to finished_at) overlapped."""
    moments = sorted([(run.started_at, 1) for run in runs]
                     + [(run.finished_at, -1) for run in runs])
    at_once = most = 0
    for _, step in moments:
        at_once += step
        most = max(most, at_once)
    return most


@contextmanager
def reachable_server(settings, handler: type):
    """A local HTTP server answering with `handler` that runs' `http` nodes may reach (the
    in-process executor starts again with 127.0.0.1 allowed); yields its base URL."""
    from http.server import ThreadingHTTPServer

    from flows.execution.executor import executor
    from flows.execution.world import shared_world

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.HTTP_ALLOW_HOSTS = ["127.0.0.1"]
    shared_world.cache_clear()
    executor.stop()  # its world is built again, with the local host allowed
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        executor.stop()
        shared_world.cache_clear()
        server.shutdown()
