"""The scheduler: joins and skips, real parallelism and concurrency limits, retries and backoff,
on_error (docs/dsl.md §4, §2; docs/engine.md)."""


import pytest

from .runflows import (
    aggregate,
    case,
    chain,
    cond,
    edge,
    end,
    events_of,
    finished,
    flow,
    if_else,
    linear,
    max_overlap,
    now,
    position,
    run,
    start,
    template,
    wait,
)
from .scheduler_support import (
    exclusive_flow,
)

pytestmark = pytest.mark.virtual_time


# --- joins and skips ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choose", "live", "dead", "text"),
    [
        ("left", "a", "b", "[A|]"),
        ("else", "b", "a", "[|B]"),
    ],
)
async def test_join_after_exclusive_branches_waits_only_for_the_live_one(choose, live, dead, text):
    doc, inputs = exclusive_flow(choose)
    result, events = await run(doc, inputs)
    assert result.status == "succeeded"
    assert result.outputs == {"join": text}
    assert result.nodes[live].status == "succeeded"
    assert result.nodes[dead].status == "skipped"
    assert result.nodes["join"].status == "succeeded"
    assert result.nodes["join"].attempts == 1
    assert position(events, "node.finished", live) < position(events, "node.started", "join")
    assert position(events, "node.skipped", dead) < position(events, "node.started", "join")


async def test_join_after_parallel_branches_waits_for_all_of_them():
    doc = flow(
        [
            start(),
            wait("fast", 0.01),
            wait("slow", 0.2),
            template("middle", "M"),
            template("join", "joined"),
            end({"join": "{{join.text}}"}),
        ],
        [
            edge("start", "fast"),
            edge("start", "slow"),
            edge("start", "middle"),
            edge("fast", "join"),
            edge("slow", "join"),
            edge("middle", "join"),
            edge("join", "end"),
        ],
    )
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert result.outputs == {"join": "joined"}
    join_started = position(events, "node.started", "join")
    for branch in ["fast", "slow", "middle"]:
        assert position(events, "node.finished", branch) < join_started
    assert len(events_of(events, "node.started", "join")) == 1


async def test_skips_propagate_through_several_levels():
    nodes = [
        start(),
        if_else("check", case("yes")),
        template("y", "Y"),
        template("x1", "1"),
        template("x2", "{{x1.text}}2"),
        wait("x3", 0),
        template("x4", "{{x2.text}}4"),
        end({"y": "{{y.text}}", "x4": "{{x4.text}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "y", "yes"),
        edge("check", "x1", "else"),
        *chain("x1", "x2", "x3", "x4", "end"),
        edge("y", "end"),
    ]
    result, events = await run(flow(nodes, edges))
    assert result.status == "succeeded"
    assert result.outputs == {"y": "Y", "x4": None}
    skipped = ["x1", "x2", "x3", "x4"]
    for n in skipped:
        assert result.nodes[n].status == "skipped"
        assert result.nodes[n].attempts == 0
        assert len(events_of(events, "node.skipped", n)) == 1
        assert not events_of(events, "node.started", n)
        assert not events_of(events, "node.finished", n)
    order = [e["data"]["node"] for e in events if e["type"] == "node.skipped"]
    assert order == skipped
    assert position(events, "node.skipped", "x4") < position(events, "node.started", "end")


async def test_node_with_one_live_and_one_skipped_input_runs():
    nodes = [
        start(),
        if_else("check", case("yes")),
        template("live", "L"),
        template("dead", "D"),
        template("after_dead", "{{dead.text}}"),
        template("join", "{{live.text}}+{{after_dead.text}}"),
        end({"join": "{{join.text}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "live", "yes"),
        edge("check", "dead", "else"),
        edge("dead", "after_dead"),
        edge("live", "join"),
        edge("after_dead", "join"),
        edge("join", "end"),
    ]
    result, _ = await run(flow(nodes, edges))
    assert result.outputs == {"join": "L+"}
    assert result.nodes["after_dead"].status == "skipped"
    assert result.nodes["join"].status == "succeeded"


async def test_end_runs_even_when_all_its_incoming_edges_are_skipped():
    nodes = [
        start(),
        if_else("check", case("nowhere")),
        template("x", "X"),
        end({"out": "{{x.text}}", "from_start": "ok"}, answer="x=[{{x.text}}]"),
    ]
    edges = [edge("start", "check"), edge("check", "x", "else"), edge("x", "end")]
    result, events = await run(flow(nodes, edges))
    assert result.status == "succeeded"
    assert result.nodes["x"].status == "skipped"
    assert result.nodes["end"].status == "succeeded"
    assert result.nodes["end"].attempts == 1
    assert result.outputs == {"out": None, "from_start": "ok"}
    assert result.answer == "x=[]"
    assert finished(events, "end")["data"]["status"] == "succeeded"
    assert not events_of(events, "node.skipped", "end")


# --- parallelism and concurrency ---------------------------------------------------------


def three_waits(seconds, **settings):
    names = ["w1", "w2", "w3"]
    nodes = [start(), *[wait(n, seconds) for n in names], end({"done": True})]
    edges = [edge("start", n) for n in names] + [edge(n, "end") for n in names]
    return flow(nodes, edges, **settings), names


async def test_parallel_waits_really_overlap():
    doc, names = three_waits(0.3)
    began = now()
    result, events = await run(doc)
    took = now() - began
    assert result.status == "succeeded"
    last_start = max(position(events, "node.started", n) for n in names)
    first_finish = min(position(events, "node.finished", n) for n in names)
    assert last_start < first_finish
    assert took == pytest.approx(0.3)  # the three 0.3 s waits overlapped completely


async def test_concurrency_one_runs_waits_one_at_a_time():
    doc, names = three_waits(0.05, concurrency=1)
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert max_overlap(events, set(names)) == 1
    assert max_overlap(events, {"start", "end", *names}) == 1


async def test_concurrency_two_runs_at_most_two_waits_at_once():
    doc, names = three_waits(0.1, concurrency=2)
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert max_overlap(events, set(names)) == 2


# --- retries -----------------------------------------------------------------------------


def timing_out(retry, **kw):
    """A wait that always outlives its own timeout."""
    return linear(wait("w", 2, timeout_s=0.05, retry=retry, **kw), outputs={"done": True})


async def test_timeout_with_retries_makes_every_attempt_then_fails():
    retry = {"max_attempts": 3, "backoff_ms": 10, "multiplier": 2, "jitter": False}
    began = now()
    result, events = await run(timing_out(retry))
    took = now() - began
    assert result.status == "failed"
    assert result.error["code"] == "timeout"
    assert result.error["node"] == "w"
    assert result.error["attempt"] == 3
    assert result.nodes["w"].status == "failed"
    assert result.nodes["w"].attempts == 3
    started = events_of(events, "node.started", "w")
    assert [e["data"]["attempt"] for e in started] == [1, 2, 3]
    retrying = events_of(events, "node.retrying", "w")
    assert [e["data"]["attempt"] for e in retrying] == [1, 2]
    assert [e["data"]["delay_ms"] for e in retrying] == [10, 20]
    for i, e in enumerate(retrying, start=1):
        assert e["data"]["error"]["code"] == "timeout"
        assert e["data"]["error"]["node"] == "w"
        assert e["data"]["error"]["attempt"] == i
    kinds = [e["type"] for e in events if e["data"].get("node") == "w"]
    assert kinds == [
        "node.started",
        "node.retrying",
        "node.started",
        "node.retrying",
        "node.started",
        "node.finished",
    ]
    assert finished(events, "w")["data"]["attempts"] == 3
    # Each attempt stopped at its 0.05 s timeout (not the 2 s wait), with 10 + 20 ms between.
    assert took == pytest.approx(3 * 0.05 + 0.010 + 0.020)


async def test_backoff_grows_by_the_multiplier_up_to_the_cap():
    retry = {
        "max_attempts": 4,
        "backoff_ms": 10,
        "multiplier": 3,
        "max_backoff_ms": 25,
        "jitter": False,
    }
    _, events = await run(timing_out(retry))
    delays = [e["data"]["delay_ms"] for e in events_of(events, "node.retrying", "w")]
    assert delays == [10, 25, 25]


async def test_jittered_backoff_stays_within_the_bound():
    retry = {"max_attempts": 3, "backoff_ms": 40, "multiplier": 2, "jitter": True}
    for _ in range(3):
        result, events = await run(timing_out(retry))
        assert result.nodes["w"].attempts == 3
        delays = [e["data"]["delay_ms"] for e in events_of(events, "node.retrying", "w")]
        assert len(delays) == 2
        assert 0 <= delays[0] <= 40
        assert 0 <= delays[1] <= 80


async def test_jitter_is_on_by_default():
    retry = {"max_attempts": 3, "backoff_ms": 30}
    seen = []
    for _ in range(4):
        _, events = await run(timing_out(retry))
        delays = [e["data"]["delay_ms"] for e in events_of(events, "node.retrying", "w")]
        assert 0 <= delays[0] <= 30 and 0 <= delays[1] <= 60
        seen += delays
    assert seen != [30, 60] * 4  # drawn at random, not the plain formula every time


async def test_bad_path_is_not_retried():
    doc = linear(
        template("t", "{{start.v.x}}", retry={"max_attempts": 3, "backoff_ms": 1}),
        inputs={"v": "any"},
    )
    result, events = await run(doc, {"v": "a string"})
    assert result.status == "failed"
    assert result.error["code"] == "bad_path"
    assert result.error["attempt"] == 1
    assert result.nodes["t"].attempts == 1
    assert not events_of(events, "node.retrying")
    assert len(events_of(events, "node.started", "t")) <= 1


async def test_type_mismatch_is_not_retried():
    nodes = [
        start(),
        if_else(
            "check",
            case("yes", cond(1, "gt", "1")),
            retry={"max_attempts": 3, "backoff_ms": 1},
        ),
        template("y", "Y"),
        end({"y": "{{y.text}}"}),
    ]
    edges = [edge("start", "check"), edge("check", "y", "yes"), edge("y", "end")]
    result, events = await run(flow(nodes, edges))
    assert result.status == "failed"
    assert result.error["code"] == "type_mismatch"
    assert result.error["attempt"] == 1
    assert result.nodes["check"].attempts == 1
    assert not events_of(events, "node.retrying")
    assert len(events_of(events, "node.started", "check")) <= 1


async def test_bad_path_in_a_wait_is_not_retried():
    doc = linear(
        wait("w", "{{start.cfg.seconds}}", retry={"max_attempts": 3, "backoff_ms": 1}),
        inputs={"cfg": "any"},
    )
    result, events = await run(doc, {"cfg": "not an object"})
    assert result.status == "failed"
    assert result.error["code"] == "bad_path"
    assert result.error["node"] == "w"
    assert result.nodes["w"].attempts == 1
    assert not events_of(events, "node.retrying")
    assert len(events_of(events, "node.started", "w")) <= 1


async def test_wait_seconds_may_be_a_whole_reference():
    doc = linear(wait("w", "{{start.cfg.seconds}}"), inputs={"cfg": "any"}, outputs={"ok": 1})
    result, events = await run(doc, {"cfg": {"seconds": 0.05}})
    assert result.status == "succeeded"
    assert finished(events, "w")["data"]["elapsed_ms"] >= 40


async def test_max_attempts_one_means_no_retry():
    result, events = await run(timing_out({"max_attempts": 1, "backoff_ms": 1}))
    assert result.error["code"] == "timeout"
    assert result.nodes["w"].attempts == 1
    assert not events_of(events, "node.retrying")


# --- on_error ----------------------------------------------------------------------------


async def test_on_error_default_recovers_with_the_default_outputs():
    doc = linear(
        template("t", "{{start.v.x}}", on_error="default", default={"text": "fallback"}),
        template("after", "got {{t.text}}"),
        inputs={"v": "any"},
        outputs={"t": "{{t.text}}", "after": "{{after.text}}"},
    )
    result, events = await run(doc, {"v": 5})
    assert result.status == "succeeded"
    assert result.error is None
    assert result.recovered == 1
    assert result.outputs == {"t": "fallback", "after": "got fallback"}
    t = result.nodes["t"]
    assert t.status == "recovered"
    assert t.outputs == {"text": "fallback"}
    assert t.error["code"] == "bad_path"
    assert t.error["node"] == "t"
    data = finished(events, "t")["data"]
    assert data["status"] == "recovered"
    assert data["outputs"] == {"text": "fallback"}
    assert data["error"]["code"] == "bad_path"
    assert events[-1]["data"]["recovered"] == 1
    assert events[-1]["data"]["status"] == "succeeded"


async def test_on_error_default_after_retries_are_exhausted():
    doc = linear(
        wait(
            "w",
            2,
            timeout_s=0.05,
            retry={"max_attempts": 2, "backoff_ms": 5},
            on_error="default",
            default={},
        ),
        outputs={"done": True},
    )
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert result.outputs == {"done": True}
    assert result.recovered == 1
    assert result.nodes["w"].status == "recovered"
    assert result.nodes["w"].attempts == 2
    assert result.nodes["w"].error["code"] == "timeout"
    assert len(events_of(events, "node.retrying", "w")) == 1


def error_branch_flow(value_type="any"):
    nodes = [
        start({"v": value_type}),
        template("t", "x={{start.v.x}}", on_error="branch"),
        template("ok", "ok: {{t.text}}"),
        template("explain", "failed: {{t.error.code}} at {{t.error.node}}"),
        aggregate("merge", ["{{ok.text}}", "{{explain.text}}"]),
        end({"message": "{{merge.value}}", "error": "{{t.error}}", "text": "{{t.text}}"}),
    ]
    edges = [
        edge("start", "t"),
        edge("t", "ok"),
        edge("t", "explain", "error"),
        edge("ok", "merge"),
        edge("explain", "merge"),
        edge("merge", "end"),
    ]
    return flow(nodes, edges)


async def test_on_error_branch_takes_only_error_edges():
    result, events = await run(error_branch_flow(), {"v": "not an object"})
    assert result.status == "succeeded"
    assert result.recovered == 1
    assert result.outputs["message"] == "failed: bad_path at t"
    assert result.outputs["text"] is None
    assert result.outputs["error"]["code"] == "bad_path"
    assert result.nodes["ok"].status == "skipped"
    assert result.nodes["explain"].status == "succeeded"
    t = result.nodes["t"]
    assert t.status == "recovered"
    assert t.outputs["text"] is None
    assert t.outputs["error"]["code"] == "bad_path"
    assert t.error["code"] == "bad_path"
    assert events_of(events, "node.skipped", "ok")


async def test_on_error_branch_on_success_takes_plain_edges_and_error_is_null():
    result, _ = await run(error_branch_flow(), {"v": {"x": 1}})
    assert result.status == "succeeded"
    assert result.recovered == 0
    assert result.outputs == {"message": "ok: x=1", "error": None, "text": "x=1"}
    assert result.nodes["explain"].status == "skipped"
    assert result.nodes["t"].status == "succeeded"
    assert result.nodes["t"].outputs == {"text": "x=1", "error": None}


@pytest.mark.parametrize("explicit", [True, False])
async def test_on_error_fail_fails_the_run_with_the_node_error(explicit):
    extra = {"on_error": "fail"} if explicit else {}
    doc = linear(
        template("t", "{{start.v.x}}", **extra),
        template("after", "after"),
        inputs={"v": "any"},
    )
    result, events = await run(doc, {"v": 1})
    assert result.status == "failed"
    assert result.nodes["t"].status == "failed"
    assert result.error == result.nodes["t"].error
    assert result.error["code"] == "bad_path"
    assert result.recovered == 0
    assert finished(events, "t")["data"]["status"] == "failed"
    assert not events_of(events, "node.started", "after")
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["error"] == result.error
