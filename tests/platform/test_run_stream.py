"""Server-sent events: `GET /api/runs/{id}/stream/` (docs/api.md), read with a real HTTP client
from a real daphne: the stored events then the live ones, no gap, no duplicate, the end after
`run.finished`, resuming with Last-Event-ID, and the API's 401 and 404."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from flows import services
from flows.api import stream
from flows.execution.executor import executor
from flows.models import Run
from tests.processes import EXECUTE_ONE_RUN, environment_for_another_process
from tests.servers import daphne

from .factories import sample, user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(tmp_path):
    with daphne(environment_for_another_process(CODE_WORKERS="0"),
                tmp_path / "daphne.log") as base:
        yield base


@pytest.fixture
def key(owner):
    return services.create_token(owner, "stream")[1]


def read_stream(base: str, run_id, key: str | None, after: int | None = None,
                last_event_id: int | None = None, stop_after: int | None = None
                ) -> tuple[list[dict], list[str]]:
    """(events, comments) until the server ends the stream (or `stop_after` events)."""
    headers = {"Authorization": f"Token {key}"} if key else {}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    params = {"after": after} if after is not None else {}
    events, comments, fields = [], [], {}
    with httpx.stream("GET", f"{base}/api/runs/{run_id}/stream/", headers=headers,
                      params=params, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                comments.append(line)
            elif line == "":
                if fields:
                    event = json.loads(fields["data"])
                    assert fields["id"] == str(event["seq"]) and fields["event"] == event["type"]
                    events.append(event)
                    fields = {}
                    if stop_after is not None and len(events) == stop_after:
                        break
            else:
                name, _, value = line.partition(": ")
                fields[name] = value
    return events, comments


def stored(base: str, run_id, key: str) -> list[dict]:
    return httpx.get(f"{base}/api/runs/{run_id}/events/",
                     headers={"Authorization": f"Token {key}"}).json()["results"]


def start_through(base: str, key: str, slug: str, inputs: dict) -> str:
    answer = httpx.post(f"{base}/api/flows/{slug}/runs/", json={"inputs": inputs},
                        headers={"Authorization": f"Token {key}"})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def assert_complete(events: list[dict], after: int = 0) -> None:
    assert [e["seq"] for e in events] == list(range(after + 1, after + 1 + len(events)))
    assert events[-1]["type"] == "run.finished"


def test_replay_then_live_then_the_end(server, owner, key):
    services.create_flow(owner, sample("fanout"), slug="fanout")
    run_id = start_through(server, key, "fanout", {})
    events, comments = read_stream(server, run_id, key)
    assert_complete(events)
    assert events == stored(server, run_id, key)  # the envelopes exactly as stored
    assert comments  # the opening comment: headers out at once


def test_a_cut_stream_resumes_with_last_event_id_without_gap_or_repeat(server, owner, key):
    services.create_flow(owner, sample("fanout"), slug="fanout")
    run_id = start_through(server, key, "fanout", {})
    first, _ = read_stream(server, run_id, key, stop_after=3)
    rest, _ = read_stream(server, run_id, key, after=0, last_event_id=first[-1]["seq"])
    assert_complete(first + rest)
    after_end, _ = read_stream(server, run_id, key, after=len(first + rest))
    assert after_end == []  # asked after run.finished: nothing, and the stream ends


def test_a_run_executed_by_another_process_streams_completely(server, owner, key):
    """The run executes in a third process; the stream, served by daphne, hears its batches
    through the channel layer (Redis) or, with the in-memory layer, reads them from the
    database when they do not come live."""
    flow = services.create_flow(owner, sample("fanout"), slug="fanout")
    document = services.documents.store_document(flow.draft)
    run = Run.objects.create(owner=owner, flow=flow, document=document, inputs={})
    worker = subprocess.Popen([sys.executable, "-c", EXECUTE_ONE_RUN, str(run.pk)],
                              env=environment_for_another_process(),
                              stderr=subprocess.PIPE)
    try:
        events, _ = read_stream(server, run.pk, key)
    finally:
        worker.wait(60)
    assert_complete(events)
    run.refresh_from_db()
    assert run.status == "succeeded" and events[-1]["seq"] == run.last_seq



def test_the_api_s_401_400_and_404(server, owner, key):
    done = services.start_run(owner, services.create_flow(owner, sample("hello")),
                              {"name": "Ada"})[0]
    executor.wait(done.pk, 10)
    url = f"{server}/api/runs/{done.pk}/stream/"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "not_authenticated"
    wrong = httpx.get(url, headers={"Authorization": "Token ast_nope"})
    assert wrong.status_code == 401
    stranger = services.create_token(user("eve"), "eve")[1]
    for path in (url, f"{server}/api/runs/not-a-run/stream/",
                 f"{server}/api/runs/00000000-0000-0000-0000-000000000000/stream/"):
        refused = httpx.get(path, headers={"Authorization": f"Token {stranger}"})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    bad = httpx.get(url, params={"after": "-1"}, headers={"Authorization": f"Token {key}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert httpx.post(url, headers={"Authorization": f"Token {key}"}).status_code == 405


async def test_a_quiet_stream_sends_a_comment_at_each_heartbeat(owner, monkeypatch):
    from asgiref.sync import sync_to_async

    monkeypatch.setattr(stream, "HEARTBEAT_S", 0.05)
    flow = await sync_to_async(services.create_flow)(owner, sample("approval"))
    run, _ = await sync_to_async(services.start_run)(owner, flow, {"request": "refund"})
    for _ in range(200):  # until it waits for a person: then nothing happens
        if (await Run.objects.aget(pk=run.pk)).status == "waiting":
            break
        await asyncio.sleep(0.05)
    lines = []
    generator = stream.events_of(run.pk, 0)
    try:
        async for text in generator:
            lines.append(text)
            if sum(text == ": still here\n\n" for text in lines) == 2:
                break
    finally:
        await generator.aclose()
    assert any(text.startswith("id: 1\nevent: run.started\n") for text in lines)
