"""The live event stream `/ws/runs/<id>/` (docs/api.md, "Live events over a websocket").

Against the real ASGI application (origin check, session auth, routing, consumer) and the
configured channel layer: the cross-loop in-memory one when REDIS_URL is unset, channels_redis
when it is set (CI's second pass). Runs execute on the executor's own loop thread, or in
another process, while the sockets live on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from flows import services
from flows.consumers import RunConsumer
from flows.execution.executor import executor
from flows.execution.publisher import publish, run_group
from flows.fanout import run_watchers
from flows.follow import RunFollower
from flows.models import Run, RunEvent
from flows.services.history import store_events
from tests.processes import EXECUTE_ONE_RUN, environment_for_another_process

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
ORIGIN = (b"origin", b"http://127.0.0.1:8000")

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name):
    return json.loads((SAMPLES / f"{name}.json").read_text())


def streaming_flow(pause_s: float = 0.05):
    """Many events quickly, in several batches: two echo llm nodes around a short wait."""
    return {
        "dsl": "astron/v1", "name": "Streaming",
        "nodes": [
            {"id": "start", "type": "start",
             "params": {"inputs": {"text": {"type": "string", "required": True}}}},
            {"id": "first", "type": "llm",
             "params": {"provider": "echo", "model": "echo-1", "prompt": "{{start.text}}"}},
            {"id": "pause", "type": "wait", "params": {"seconds": pause_s}},
            {"id": "second", "type": "llm",
             "params": {"provider": "echo", "model": "echo-1", "prompt": "{{start.text}}"}},
            {"id": "end", "type": "end", "inputs": {"text": "{{second.text}}"}},
        ],
        "edges": [{"from": "start", "to": "first"}, {"from": "first", "to": "pause"},
                  {"from": "pause", "to": "second"}, {"from": "second", "to": "end"}],
    }


WORDS = " ".join(f"w{i}" for i in range(300))


@pytest.fixture(autouse=True)
def live_only(monkeypatch):
    """The idle reads of the database (a safety net for lost publishes) stay out of the way:
    these tests see what the live path delivers."""
    monkeypatch.setattr(RunFollower, "idle_check_s", 60.0)


@pytest.fixture
def owner():
    return User.objects.create_user("ada")


@pytest.fixture
def outsider():
    return User.objects.create_user("mallory")


@pytest.fixture
def key(owner):
    return services.create_token(owner, "socket")[1]


@pytest.fixture
def session_cookie(owner):
    client = Client()
    client.force_login(owner)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}="
                       f"{client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


@pytest.fixture
def quick_auth(monkeypatch):
    monkeypatch.setattr(RunConsumer, "auth_timeout_s", 0.3)


# -- helpers -------------------------------------------------------------------------------------


def application():
    """The served ASGI application, imported only once the test database exists: importing
    astron.asgi starts the executor, whose first database call would otherwise open
    connections (a pool, with PostgreSQL) to the real database."""
    from astron.asgi import application

    return application


async def start(owner, dsl, inputs):
    flow = await sync_to_async(services.create_flow)(owner, dsl)
    run, _ = await sync_to_async(services.start_run)(owner, flow, inputs)
    return run


def _wait(run_id, seconds):
    try:
        executor.wait(run_id, seconds)
    finally:
        connection.close()  # this thread's own connection


async def settle(run, seconds=20):
    # Not in asgiref's one thread for sync code: the executor's database calls go there too.
    await asyncio.to_thread(_wait, run.pk, seconds)
    await run.arefresh_from_db()
    return run


async def stored(run):
    return [event.envelope() async for event in RunEvent.objects.filter(run=run).order_by("seq")]


async def until_stored(run, seq, seconds=10):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await RunEvent.objects.filter(run=run, seq__gte=seq).aexists():
        assert loop.time() < deadline, f"event {seq} was not stored in time"
        await asyncio.sleep(0.02)


async def socket(run_id, after=None, headers=(), token=None, connect=True):
    path = f"/ws/runs/{run_id}/" + ("" if after is None else f"?after={after}")
    ws = WebsocketCommunicator(application(), path, headers=list(headers))
    if connect:
        connected, code = await ws.connect(timeout=10)
        assert connected, code
        if token is not None:
            await ws.send_json_to({"type": "auth", "token": token})
    return ws


async def frame(ws, timeout=20):
    """The next frame as JSON, or ("closed", code)."""
    output = await ws.receive_output(timeout)
    if output["type"] == "websocket.close":
        return ("closed", output.get("code", 1000))
    assert output["type"] == "websocket.send", output
    return json.loads(output["text"])


async def collect(ws, timeout=30):
    """Every frame until the server closes; (frames, close code)."""
    frames = []
    while True:
        got = await frame(ws, timeout)
        if isinstance(got, tuple):
            await ws.disconnect()
            return frames, got[1]
        frames.append(got)


async def until_type(ws, kind, timeout=20):
    frames = []
    while True:
        got = await frame(ws, timeout)
        assert not isinstance(got, tuple), f"closed ({got[1]}) before {kind}: {frames}"
        frames.append(got)
        if got.get("type") == kind:
            return frames


def assert_complete(frames, code, after=0):
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), seqs
    assert frames and frames[-1]["type"] == "run.finished"
    assert code == 1000


# -- replay and live tail --------------------------------------------------------------------------


async def test_events_the_channel_layer_cannot_carry_still_reach_the_socket_live(owner, key):
    """An integer beyond 64 bits is JSON and is stored, but MessagePack (both channel layers)
    refuses it: the batch is announced by its seq and read from the database at once, not
    after the idle check (60 s in these tests)."""
    big = 10**29
    dsl = {"dsl": "astron/v1", "name": "Big number",
           "nodes": [{"id": "start", "type": "start",
                      "params": {"inputs": {"n": {"type": "integer", "required": True}}}},
                     {"id": "pause", "type": "wait", "params": {"seconds": 0.5}},
                     {"id": "end", "type": "end", "inputs": {"n": "{{start.n}}"}}],
           "edges": [{"from": "start", "to": "pause"}, {"from": "pause", "to": "end"}]}
    run = await start(owner, dsl, {"n": big})
    ws = await socket(run.pk, token=key)

    frames, code = await collect(ws, timeout=10)

    assert_complete(frames, code)
    assert frames[-1]["data"]["outputs"] == {"n": big}


async def test_replay_then_live_tail_has_no_gap_and_no_duplicate(owner, key):
    run = await start(owner, sample("fanout"), {})
    await until_stored(run, 5)  # started, and the waits are under way
    ws = await socket(run.pk, after=2, token=key)
    frames, code = await collect(ws)
    assert_complete(frames, code, after=2)
    run = await settle(run)
    assert run.status == "succeeded"
    assert frames == (await stored(run))[2:]  # the envelopes exactly as stored


async def test_events_produced_while_the_client_connects_are_neither_lost_nor_repeated(owner, key):
    """The run executes on the executor's thread while the socket authenticates, joins the
    group and replays: connecting at different moments of its stream."""
    flow = await sync_to_async(services.create_flow)(owner, streaming_flow())
    for delay in (0, 0.01, 0.03, 0.06, 0.1):
        run, _ = await sync_to_async(services.start_run)(owner, flow, {"text": WORDS})
        await asyncio.sleep(delay)
        frames, code = await collect(await socket(run.pk, token=key))
        assert_complete(frames, code)
        run = await settle(run)
        assert run.status == "succeeded"
        assert len(frames) == run.last_seq
        assert sum(f["type"] == "node.chunk" for f in frames) == 600


async def test_many_watchers_of_one_run_each_get_every_event_once(owner, key):
    # A pause long enough for the five to connect while the run is still going.
    run = await start(owner, streaming_flow(pause_s=1.0), {"text": WORDS})
    sockets = [await socket(run.pk, token=key) for _ in range(5)]
    firsts = [await frame(ws) for ws in sockets]
    assert len(run_watchers()) == 1  # one subscription to the run for the five sockets
    results = await asyncio.gather(*(collect(ws) for ws in sockets))
    run = await settle(run)
    for first, (frames, code) in zip(firsts, results, strict=True):
        assert_complete([first, *frames], code)
        assert frames[-1]["seq"] == run.last_seq
    assert len(run_watchers()) == 0  # the last one out unsubscribed


async def test_a_late_client_gets_the_full_replay_then_the_socket_closes(owner, key):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    assert run.status == "succeeded"
    frames, code = await collect(await socket(run.pk, token=key))
    assert_complete(frames, code)
    assert frames == await stored(run)
    # Asking for what comes after the end: nothing to send, closed all the same.
    frames, code = await collect(await socket(run.pk, after=run.last_seq, token=key))
    assert (frames, code) == ([], 1000)


async def test_a_long_replay_is_read_in_pages(owner, key, monkeypatch):
    monkeypatch.setattr(RunFollower, "page_size", 7)
    run = await settle(await start(owner, streaming_flow(), {"text": WORDS}))
    frames, code = await collect(await socket(run.pk, after=3, token=key))
    assert_complete(frames, code, after=3)
    assert frames[-1]["seq"] == run.last_seq


async def test_a_live_batch_after_a_gap_is_preceded_by_the_missing_events_and_repeats_drop(
        owner, key, monkeypatch):
    run = await settle(await start(owner, sample("approval"), {"request": "refund"}))
    assert run.status == "waiting"
    ws = await socket(run.pk, token=key)
    replayed = await until_type(ws, "run.waiting")
    last = replayed[-1]["seq"]
    assert last == run.last_seq

    def chunk(seq):
        return {"seq": seq, "type": "node.chunk", "ts": "2026-01-01T00:00:00.000Z",
                "run": str(run.pk), "scope": None, "item": None,
                "data": {"node": "draft", "text": f"extra {seq}"}}

    extra = [chunk(last + n) for n in (1, 2, 3)]
    await sync_to_async(store_events)(run.pk, extra)
    await publish(run.pk, extra[2:])  # only the last one reaches the group
    assert [await frame(ws, 5) for _ in range(3)] == extra  # the first two from the database
    await publish(run.pk, extra)  # repeats: dropped
    later = chunk(last + 4)
    await sync_to_async(store_events)(run.pk, [later])
    await publish(run.pk, [later])
    assert await frame(ws, 5) == later

    # A batch stored but never published (a lost publish) comes from the idle read.
    monkeypatch.setattr(RunFollower, "idle_check_s", 0.2)
    monkeypatch.setattr(RunFollower, "idle_grace_s", 0.2)
    ws2 = await socket(run.pk, after=last + 4, token=key)
    lost = chunk(last + 5)
    await sync_to_async(store_events)(run.pk, [lost])
    assert await frame(ws2, 5) == lost
    await ws.disconnect()
    await ws2.disconnect()


@pytest.fixture
def other_process_environment():
    """Read here, in the test's own thread: an async test has its connection elsewhere."""
    return environment_for_another_process()


async def test_a_run_executed_by_another_process_streams_completely(owner, key, monkeypatch,
                                                                    other_process_environment):
    """Through Redis its batches arrive live (the idle reads stay out of the way); through
    the in-memory layer they cannot, and the socket's idle reads of the database deliver
    them. With no gap and no duplicate either way."""
    through_redis = "redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
    monkeypatch.setattr(RunFollower, "idle_check_s", 60.0 if through_redis else 0.2)
    monkeypatch.setattr(RunFollower, "idle_grace_s", 0.2)
    executor.stop()
    monkeypatch.setattr(executor, "maintenance", False)  # the other process takes the run
    flow = await sync_to_async(services.create_flow)(owner, sample("fanout"))
    document = await sync_to_async(services.documents.store_document)(flow.draft)
    run = await Run.objects.acreate(owner=owner, flow=flow, document=document, inputs={})
    ws = await socket(run.pk, token=key)
    worker = subprocess.Popen(
        [sys.executable, "-c", EXECUTE_ONE_RUN, str(run.pk)], cwd=ROOT,
        env=other_process_environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        frames, code = await collect(ws, timeout=60)
    finally:
        worker.kill()
        _, errors = worker.communicate(timeout=10)
        print(errors.decode(errors="replace")[-3000:])
    assert_complete(frames, code)
    await run.arefresh_from_db()
    assert run.status == "succeeded"
    assert frames[-1]["seq"] == run.last_seq




# -- authentication, ownership, origin -------------------------------------------------------------


async def test_no_session_and_no_token_frame_in_time_closes_4401(owner, quick_auth):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    ws = await socket(run.pk)
    assert await frame(ws, 5) == ("closed", 4401)
    await ws.disconnect()


async def test_a_bad_token_closes_4401(owner, key):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    ws = await socket(run.pk, token="ast_not-a-key")
    assert await frame(ws, 5) == ("closed", 4401)
    await ws.disconnect()


async def test_a_first_frame_that_is_not_the_token_frame_closes_4401(owner, key):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    for first in ('{"type": "cancel"}', "not json", '{"type": "auth"}', '{"type": "auth", "token": 7}'):
        ws = await socket(run.pk)
        await ws.send_to(text_data=first)
        assert await frame(ws, 5) == ("closed", 4401), first
        await ws.disconnect()


async def test_a_revoked_token_closes_4401(owner):
    token, key = await sync_to_async(services.create_token)(owner, "gone")
    await sync_to_async(services.revoke_token)(token)
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    ws = await socket(run.pk, token=key)
    assert await frame(ws, 5) == ("closed", 4401)
    await ws.disconnect()


async def test_someone_elses_run_closes_4404(owner, outsider):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    _, outsider_key = await sync_to_async(services.create_token)(outsider, "theirs")
    ws = await socket(run.pk, token=outsider_key)
    assert await frame(ws, 5) == ("closed", 4404)
    await ws.disconnect()


@pytest.mark.parametrize("run_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "1"])
async def test_unknown_or_malformed_run_ids_close_4404(key, run_id):
    ws = await socket(run_id, token=key)
    assert await frame(ws, 5) == ("closed", 4404)
    await ws.disconnect()


async def test_a_malformed_after_gets_an_error_frame_then_4400(owner, key):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    for after in ("-1", "x", "1.5", ""):
        ws = await socket(run.pk, after=after, token=key)
        error = await frame(ws, 5)
        assert error["type"] == "error" and error["error"]["code"] == "invalid_request", after
        assert await frame(ws, 5) == ("closed", 4400)
        await ws.disconnect()


@pytest.mark.parametrize("origin", [b"https://evil.example", b"null", b"http://127.0.0.1.evil:8000"])
async def test_an_origin_from_a_host_not_allowed_is_refused(owner, session_cookie, origin):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    ws = WebsocketCommunicator(application(), f"/ws/runs/{run.pk}/",
                               headers=[(b"origin", origin), session_cookie])
    connected, code = await ws.connect(timeout=5)
    assert (connected, code) == (False, 4403)


async def test_a_browser_from_an_allowed_origin_uses_its_session(owner, session_cookie):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    for origin in (b"http://127.0.0.1:8000", b"http://localhost", b"https://LOCALHOST:9"):
        ws = await socket(run.pk, headers=[(b"origin", origin), session_cookie])
        frames, code = await collect(ws)
        assert_complete(frames, code)


async def test_a_session_cookie_without_origin_is_ignored(owner, session_cookie, quick_auth):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    ws = await socket(run.pk, headers=[session_cookie])
    assert await frame(ws, 5) == ("closed", 4401)
    await ws.disconnect()


async def test_an_allowed_origin_without_a_session_may_send_the_token_frame(owner, key,
                                                                            quick_auth):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    frames, code = await collect(await socket(run.pk, headers=[ORIGIN], token=key))
    assert_complete(frames, code)
    ws = await socket(run.pk, headers=[ORIGIN])
    assert await frame(ws, 5) == ("closed", 4401)
    await ws.disconnect()


# -- answers and cancels over the socket -------------------------------------------------------------


async def test_an_answer_over_the_socket_continues_a_waiting_run(owner, session_cookie):
    run = await settle(await start(owner, sample("approval"), {"request": "refund"}))
    assert run.status == "waiting"
    ws = await socket(run.pk, headers=[ORIGIN, session_cookie])
    replayed = await until_type(ws, "run.waiting")
    await ws.send_json_to({"type": "answer", "answer": "fine", "option": "yes", "node": "ask"})
    frames, code = await collect(ws)
    assert_complete(replayed + frames, code)
    resumed = next(f for f in frames if f["type"] == "run.resumed")
    assert resumed["data"]["option"] == "yes" and resumed["data"]["by"] == "ada"
    assert frames[-1]["data"]["status"] == "succeeded"
    assert frames[-1]["data"]["outputs"]["result"].startswith("Sent: ")


async def test_refused_messages_get_error_frames_and_the_socket_stays_open(owner, key):
    run = await settle(await start(owner, sample("approval"), {"request": "refund"}))
    ws = await socket(run.pk, token=key)
    await until_type(ws, "run.waiting")

    async def refused(text):
        await ws.send_to(text_data=text)
        got = await frame(ws, 5)
        assert got["type"] == "error", got
        assert set(got["error"]) == {"code", "message", "details"}
        return got["error"]

    assert (await refused('{"type": "answer", "answer": "x", "option": "maybe"}'))["code"] == \
        "invalid_answer"
    assert (await refused('{"type": "answer", "answer": "x", "node": "nope"}'))["code"] == \
        "not_waiting"
    assert (await refused("{not json"))["code"] == "invalid_json"
    assert (await refused("[1, 2]"))["code"] == "invalid_request"
    assert (await refused('{"type": "dance"}'))["code"] == "invalid_request"
    assert (await refused('{"type": "auth", "token": "again"}'))["code"] == "invalid_request"
    missing = await refused('{"type": "answer"}')
    assert missing["code"] == "invalid_request"
    assert {"path": "/answer", "code": "missing_field"} in [
        {k: d[k] for k in ("path", "code")} for d in missing["details"]]
    extra = await refused('{"type": "cancel", "now": true}')
    assert extra["code"] == "invalid_request"
    await ws.send_to(bytes_data=b"\x00")
    assert (await frame(ws, 5))["error"]["code"] == "invalid_json"

    # Still open, and still listened to.
    await ws.send_json_to({"type": "answer", "answer": "no thanks", "option": "no"})
    frames, code = await collect(ws)
    assert code == 1000
    assert frames[-1]["type"] == "run.finished"
    assert frames[-1]["data"]["outputs"]["result"] == "Discarded (no thanks)"


UNACCEPTABLE_FRAMES = [
    "[" * 100_000 + "]" * 100_000,
    "[" * 300 + "]" * 300,
    '{"type": "answer", "answer": "a\\u0000b", "option": "yes"}',
    '{"type": "answer", "answer": "x", "option": "yes", "node\\u0000": "ask"}',
    '{"type": "answer", "answer": "\\ud800", "option": "yes"}',
    '{"type": "answer", "answer": "x", "option": "\\udfff"}',
    '{"type": "answer", "answer": NaN, "option": "yes"}',
    '{"type": "answer", "answer": 1e999, "option": "yes"}',
]


async def test_frames_are_read_as_strictly_as_request_bodies(owner, key):
    run = await settle(await start(owner, sample("approval"), {"request": "refund"}))
    ws = await socket(run.pk, token=key)
    await until_type(ws, "run.waiting")

    for text in UNACCEPTABLE_FRAMES:
        await ws.send_to(text_data=text)
        got = await frame(ws, 5)
        assert got["type"] == "error", (text[:60], got)
        assert set(got["error"]) == {"code", "message", "details"}
        assert got["error"]["code"] == "invalid_json", (text[:60], got)
    await run.arefresh_from_db()
    assert run.status == "waiting" and not run.pending_answers and run.answer is None

    # Still open, and still listened to.
    await ws.send_json_to({"type": "answer", "answer": "fine \U0001f600", "option": "yes"})
    frames, code = await collect(ws)
    assert code == 1000
    assert frames[-1]["data"]["outputs"]["result"].startswith("Sent: ")


@pytest.mark.parametrize("first", [
    *UNACCEPTABLE_FRAMES[:2],
    '{"type": "auth", "token": "\\ud800"}', '{"type": "auth", "token": "a\\u0000"}'])
async def test_an_unacceptable_first_frame_closes_4401(owner, key, first):
    run = await settle(await start(owner, sample("hello"), {"name": "Ada"}))
    ws = await socket(run.pk)
    await ws.send_to(text_data=first)
    assert await frame(ws, 5) == ("closed", 4401)
    await ws.disconnect()


async def test_cancel_over_the_socket_cancels_a_running_run(owner, key):
    run = await start(owner, sample("fanout"), {})
    ws = await socket(run.pk, token=key)
    await until_type(ws, "node.started")
    await ws.send_json_to({"type": "cancel"})
    frames, code = await collect(ws)
    assert code == 1000
    assert frames[-1]["type"] == "run.finished"
    assert frames[-1]["data"]["status"] == "cancelled"
    run = await settle(run)
    assert run.status == "cancelled"


# -- the channel layer across event loops ------------------------------------------------------------


async def test_the_channel_layer_carries_a_publish_from_the_executors_loop_to_this_loop(owner):
    """The sink publishes on the executor's loop thread; consumers receive on the server's
    loop: the in-memory layer must hop loops (flows/layers.py), channels_redis must not care."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(run_group("cross"), channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.05)  # waiting in receive() on this loop
    executor_loop = executor.start()
    assert executor_loop is not asyncio.get_running_loop()
    events = [{"seq": 1, "type": "node.chunk", "ts": "2026-01-01T00:00:00.000Z", "run": "cross",
               "scope": None, "item": None, "data": {"node": "a", "text": "hé"}}]
    # Not awaited here: nothing but the layer itself may wake this loop up (a queue touched
    # from the wrong thread would leave it asleep until the 5 s timeout).
    loop = asyncio.get_running_loop()
    began = loop.time()
    sent = asyncio.run_coroutine_threadsafe(publish("cross", events), executor_loop)
    message = await asyncio.wait_for(receiving, 5)
    assert loop.time() - began < 1.0
    assert message == {"type": "run.events", "events": events}
    sent.result(5)
    # And from a plain thread with a loop of its own, to a channel not yet received on.
    other = await layer.new_channel()
    await layer.group_add(run_group("cross"), other)
    thread = threading.Thread(target=asyncio.run, args=(publish("cross", events),))
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    assert await asyncio.wait_for(layer.receive(other), 5) == message
    await layer.group_discard(run_group("cross"), channel)
    await layer.group_discard(run_group("cross"), other)
