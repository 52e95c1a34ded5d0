"""A retry (docs/engine.md, "Retrying a run"): a new run given the original's checkpoint takes
over every top-level result that ended succeeded, recovered or skipped, records each once as
`node.finished` with `reused: true`, and executes the rest."""

from __future__ import annotations

from engine import Checkpoint, Run, compile_plan
from engine.ports import Services
from engine.testing import CollectingSink

from .flowfactory import case, chain, cond, edge, end, flow, if_else, node, start, template


def chain_failing_at_15(url: str) -> dict:
    """start, t2…t14, call (node 15: an http request), t16…t19, end: 20 nodes."""
    middle = [template(f"t{i}", f"step {i}") for i in range(2, 15)]
    middle.append(node("call", "http", params={"url": url, "fail_on_status": True}))
    middle += [template(f"t{i}", f"step {i}") for i in range(16, 20)]
    nodes = [start(), *middle, end(last="{{t19.text}}")]
    return flow(nodes, chain("start", *[n["id"] for n in middle], "end"))


async def execute(doc: dict, services: Services, **kw) -> tuple:
    sink = CollectingSink()
    run = Run(compile_plan(doc), {}, sink=sink, services=services, **kw)
    return await run.execute(), sink.events


def started(events) -> list[str]:
    return [e["data"]["node"] for e in events if e["type"] == "node.started"]


def reused(events) -> list[str]:
    return [e["data"]["node"] for e in events
            if e["type"] == "node.finished" and e["data"].get("reused")]


async def test_a_retry_executes_the_failed_node_and_what_follows_only(server, client):
    doc = chain_failing_at_15(server.url("/flaky/retry-chain/1/500"))  # fails once, then not
    services = Services(http=client)
    original, events = await execute(doc, services)
    assert original.status == "failed" and original.error["node"] == "call"
    assert len(started(events)) == 15

    reuse = Checkpoint.from_events(events).reusable()
    retry, retry_events = await execute(doc, services, reuse=reuse)

    assert retry.status == "succeeded", retry.error
    assert started(retry_events) == ["call", "t16", "t17", "t18", "t19", "end"]  # 6, not 20
    assert reused(retry_events) == ["start", *[f"t{i}" for i in range(2, 15)]]
    taken = [e["data"] for e in retry_events if e["data"].get("reused")]
    assert all(d["attempts"] == 0 and d["elapsed_ms"] == 0 for d in taken)
    assert retry.nodes["t2"].outputs == original.nodes["t2"].outputs
    assert retry.steps == 6  # reused nodes take no step of max_steps
    assert [e["type"] for e in retry_events][:2] == ["run.started", "node.finished"]


async def test_skipped_nodes_are_taken_over_as_skipped_and_a_retry_of_a_retry_works(server,
                                                                                   client):
    """start → pick (if_else on a constant) → yes/no; yes → call (fails twice) → end."""
    doc = flow([start(),
                if_else("pick", case("yes", cond("{{start.flag}}", "eq", "x"))),
                template("chosen", "yes"), template("other", "no"),
                node("call", "http", params={"url": server.url("/flaky/retry-twice/2/500")}),
                end(done="{{call.status}}")],
               [edge("start", "pick"), edge("pick", "chosen", "yes"),
                edge("pick", "other", "else"), edge("chosen", "call"), edge("other", "end"),
                edge("call", "end")])
    doc["nodes"][0]["params"] = {"inputs": {"flag": {"type": "string", "default": "x"}}}
    services = Services(http=client)
    first, events = await execute(doc, services)
    assert first.status == "failed"
    second, events2 = await execute(doc, services,
                                    reuse=Checkpoint.from_events(events).reusable())
    assert second.status == "failed"  # the server fails twice
    skipped = [e["data"] for e in events2 if e["type"] == "node.finished"
               and e["data"]["node"] == "other"]
    assert skipped == [{"node": "other", "status": "skipped", "outputs": None, "error": None,
                        "elapsed_ms": 0.0, "attempts": 0, "reused": True}]
    assert not any(e["type"] == "node.skipped" for e in events2)
    # A retry of the retry takes over from the latest run.
    third, events3 = await execute(doc, services,
                                   reuse=Checkpoint.from_events(events2).reusable())
    assert third.status == "succeeded", third.error
    assert started(events3) == ["call", "end"]
    assert set(reused(events3)) == {"start", "pick", "chosen", "other"}


async def test_a_resumed_retry_replays_its_own_events_without_recording_them_again(server,
                                                                                   client):
    doc = chain_failing_at_15(server.url("/flaky/retry-resume/1/500"))
    services = Services(http=client)
    _, events = await execute(doc, services)
    _, retry_events = await execute(doc, services,
                                    reuse=Checkpoint.from_events(events).reusable())
    # Cut the retry's events after its reused results, as a crash would, and resume.
    cut = [e for e in retry_events if e["type"] in ("run.started", "node.finished")
           and (e["type"] == "run.started" or e["data"].get("reused"))]
    resumed, more = await execute(doc, services, resume=Checkpoint.from_events(cut),
                                  reuse=Checkpoint())
    assert resumed.status == "succeeded", resumed.error
    assert reused(more) == []
    assert started(more) == ["call", "t16", "t17", "t18", "t19", "end"]
