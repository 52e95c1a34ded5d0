"""Runs executing on the platform: stored events, projections, pauses, cancels, children."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from flows import services
from flows.execution.executor import executor
from flows.models import NodeRun, Run, RunEvent

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name):
    return json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.fixture
def owner():
    return User.objects.create_user("ada")


def finish(run, seconds=10):
    executor.wait(run.pk, seconds)
    run.refresh_from_db()
    return run


def test_run_events_are_stored_in_order_and_projected_onto_the_run(owner):
    flow = services.create_flow(owner, sample("hello"))
    run, created = services.start_run(owner, flow, {"name": "Ada"})
    assert created
    run = finish(run)
    assert run.status == "succeeded"
    assert run.outputs == {"greeting": "Hello, Ada!"}
    assert run.started_at and run.finished_at
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert run.last_seq == seqs[-1]
    types = list(RunEvent.objects.filter(run=run).values_list("type", flat=True))
    assert types[0] == "run.started" and types[-1] == "run.finished"
    nodes = list(NodeRun.objects.filter(run=run).values_list("node", "type", "status"))
    assert nodes == [("start", "start", "succeeded"), ("greet", "template", "succeeded"),
                     ("end", "end", "succeeded")]


def test_a_skipped_branch_is_recorded_with_its_type(owner):
    doc = sample("approval")
    flow = services.create_flow(owner, doc)
    run = finish(services.start_run(owner, flow, {"request": "refund"})[0])
    services.answer_run(run, "fine", "yes", by="ada")
    run = finish(run)
    assert run.status == "succeeded"
    dropped = NodeRun.objects.get(run=run, node="dropped")
    assert (dropped.status, dropped.type, dropped.attempts) == ("skipped", "template", 0)


def test_a_waiting_run_releases_its_worker_and_an_answer_continues_it(owner):
    flow = services.create_flow(owner, sample("approval"))
    run = finish(services.start_run(owner, flow, {"request": "refund"})[0])
    assert run.status == "waiting"
    assert run.lease_owner == "" and run.lease_expires_at is None
    assert [q["node"] for q in run.waiting] == ["ask"]
    assert NodeRun.objects.get(run=run, node="ask").status == "waiting"
    services.answer_run(run, "go", "yes", by="ada")
    run = finish(run)
    assert run.status == "succeeded"
    assert run.outputs["result"].startswith("Sent: ")
    assert run.waiting == []
    resumed = RunEvent.objects.get(run=run, type="run.resumed")
    assert resumed.data["by"] == "ada" and resumed.data["option"] == "yes"


def test_a_question_deadline_wakes_a_waiting_run(owner, settings):
    doc = sample("approval")
    ask = doc["nodes"][2]
    ask["params"]["timeout_s"] = 0.5
    doc["edges"].append({"from": "ask", "to": "dropped", "branch": "timeout"})
    flow = services.create_flow(owner, doc)
    run = finish(services.start_run(owner, flow, {"request": "refund"})[0])
    assert run.status == "waiting" and run.wake_at is not None
    import time

    time.sleep(0.6)
    executor.recover_now(5)
    run = finish(run)
    assert run.status == "succeeded"
    assert run.outputs == {"result": "Discarded ()"}


def test_cancelling_a_running_run_interrupts_it(owner):
    doc = sample("fanout")
    for node in doc["nodes"]:
        if node["type"] == "wait":
            node["params"]["seconds"] = 30
    flow = services.create_flow(owner, doc)
    run, _ = services.start_run(owner, flow, {})
    import time

    deadline = time.monotonic() + 5
    while not RunEvent.objects.filter(run=run, type="node.started",
                                      data__node="slow_a").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    services.cancel_run(run)
    run = finish(run, 5)
    assert run.status == "cancelled"
    assert run.error["code"] == "cancelled"
    assert NodeRun.objects.get(run=run, node="slow_a").status == "cancelled"


def test_cancelling_a_waiting_run_ends_it(owner):
    flow = services.create_flow(owner, sample("approval"))
    run = finish(services.start_run(owner, flow, {"request": "refund"})[0])
    services.cancel_run(run)
    run = finish(run)
    assert run.status == "cancelled"
    assert RunEvent.objects.filter(run=run).last().type == "run.finished"


def test_subflows_run_as_linked_child_runs(owner):
    hello = services.create_flow(owner, sample("hello"), slug="hello")
    services.publish_flow(hello)
    team = services.create_flow(owner, sample("greet-team"))
    run = finish(services.start_run(owner, team, {"members": ["Ada", "Lin"]})[0])
    assert run.status == "succeeded", run.error
    assert run.outputs == {"lines": [{"line": "Hello, Ada!"}, {"line": "Hello, Lin!"}]}
    children = Run.objects.filter(parent_run=run)
    assert children.count() == 2
    assert {c.status for c in children} == {"succeeded"}
    assert {c.depth for c in children} == {1}
    assert all(c.lease_owner == "" for c in children)


def test_child_runs_spend_their_parents_max_steps(owner):
    hello = services.create_flow(owner, sample("hello"), slug="hello")
    services.publish_flow(hello)
    team = services.create_flow(owner, {**sample("greet-team"), "settings": {"max_steps": 100}})
    members = [f"m{n}" for n in range(30)]  # 93 steps of its own, 90 of its children
    run = finish(services.start_run(owner, team, {"members": members})[0])
    assert run.status == "failed"
    assert run.error["code"] == "max_steps"
    assert Run.objects.filter(parent_run=run).count() < 30


def test_a_child_of_an_unpublished_flow_fails_the_node(owner):
    services.create_flow(owner, sample("hello"), slug="hello")
    team = services.create_flow(owner, sample("greet-team"))
    run = finish(services.start_run(owner, team, {"members": ["Ada"]})[0])
    assert run.status == "failed"
    assert run.error["code"] == "not_published"


def test_editing_the_draft_does_not_change_a_started_run(owner):
    flow = services.create_flow(owner, sample("approval"))
    run = finish(services.start_run(owner, flow, {"request": "refund"})[0])
    changed = sample("approval")
    changed["nodes"][3]["params"]["template"] = "Changed: {{draft.text}}"
    services.update_flow(flow, changed)
    services.answer_run(run, "ok", "yes")
    run = finish(run)
    assert run.outputs["result"].startswith("Sent: ")


async def test_a_run_started_through_asgi_executes_after_the_response(owner):
    """Under an ASGI server the request's context must not follow the run (it outlives it)."""
    import asyncio

    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    flow = await sync_to_async(services.create_flow)(owner, sample("hello"))
    _token, key = await sync_to_async(services.create_token)(owner, "asgi")
    response = await AsyncClient().post(
        f"/api/flows/{flow.slug}/runs/", {"inputs": {"name": "Ada"}},
        content_type="application/json", headers={"Authorization": f"Token {key}"})
    assert response.status_code == 201, response.content
    run = await Run.objects.aget(pk=response.json()["id"])
    # Waited for on a thread of its own, not asgiref's one thread for sync code: with no
    # request around, the executor's database calls go to that thread too, and would queue
    # behind the wait until it gave up (the run then still "queued").
    await asyncio.to_thread(executor.wait, run.pk, 10)
    await run.arefresh_from_db()
    assert run.status == "succeeded"


def test_a_child_that_asks_a_question_fails_its_subflow_node_and_ends(owner):
    asker = services.create_flow(owner, sample("approval"), slug="asker")
    services.publish_flow(asker)
    parent = services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Parent",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "child", "type": "subflow", "inputs": {"request": "x"},
                   "params": {"flow": "asker"}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "child"}, {"from": "child", "to": "end"}]})
    run = finish(services.start_run(owner, parent, {})[0])
    assert run.status == "failed"
    assert run.error["code"] == "invalid_param"
    child = Run.objects.get(parent_run=run)
    assert child.status == "cancelled"
    assert RunEvent.objects.filter(run=child).last().type == "run.finished"
    # Ended as the engine ends a run: its open question too, before run.finished.
    ask = NodeRun.objects.get(run=child, node="ask")
    assert ask.status == "cancelled"
    ended = list(RunEvent.objects.filter(run=child).order_by("seq").values_list("type", flat=True))
    assert ended[-2:] == ["node.finished", "run.finished"]


def slow_child_and_parent(owner, seconds=3):
    slow = services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Slow",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "pause", "type": "wait", "params": {"seconds": seconds}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "pause"}, {"from": "pause", "to": "end"}]},
        slug="slow")
    services.publish_flow(slow)
    return services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Parent",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "child", "type": "subflow", "params": {"flow": "slow"}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "child"}, {"from": "child", "to": "end"}]})


def test_cancelling_a_child_run_itself_stops_it_and_fails_its_subflow_node(owner):
    import time

    parent = slow_child_and_parent(owner)
    run = services.start_run(owner, parent, {})[0]
    deadline = time.monotonic() + 10
    while not (child := Run.objects.filter(parent_run=run).first()) or \
            not NodeRun.objects.filter(run=child, node="pause").exists():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.02)

    services.cancel_run(child)
    child = finish(child)
    run = finish(run)

    assert child.status == "cancelled"
    assert NodeRun.objects.get(run=child, node="pause").status == "cancelled"
    assert child.finished_at is not None and child.elapsed_ms < 2500  # not the 3 s wait
    assert run.status == "failed" and run.error["code"] == "cancelled"


def test_a_serving_process_starts_its_code_sandbox_before_any_code_node(monkeypatch):
    """docs/configuration.md: CODE_WORKERS pre-started sandbox processes (astron/asgi.py)."""
    import asyncio
    import time

    from engine.sandbox import ProcessSandbox
    from flows.execution import executor as executor_module
    from flows.execution.world import World

    sandbox = ProcessSandbox(workers=2)
    monkeypatch.setattr(executor_module, "shared_world", lambda: World(sandbox=sandbox))
    assert sandbox.pids == []

    executor.prestart_sandbox()

    try:
        deadline = time.monotonic() + 30
        while len(sandbox.pids) < 2:
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.05)
    finally:
        asyncio.run_coroutine_threadsafe(sandbox.close(), executor.start()).result(10)


def test_a_waiting_run_shows_its_executing_time_and_recovered_nodes(owner):
    """docs/api.md: elapsed_ms is time spent executing, recovered the nodes that ended recovered:
    a run paused on a question shows both, not 0 until it finishes."""
    flow = services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Pause after a recovery",
        "nodes": [{"id": "start", "type": "start", "params": {"inputs": {"s": {"type": "any"}}}},
                  {"id": "pause", "type": "wait", "params": {"seconds": 0.3}},
                  {"id": "bad", "type": "template", "params": {"template": "{{start.s.x}}"},
                   "on_error": "default", "default": {"text": "fallback"}},
                  {"id": "ask", "type": "question", "params": {"question": "Go on?"}},
                  {"id": "end", "type": "end", "inputs": {"text": "{{bad.text}}"}}],
        "edges": [{"from": "start", "to": "pause"}, {"from": "pause", "to": "bad"},
                  {"from": "bad", "to": "ask"}, {"from": "ask", "to": "end"}]})

    run = finish(services.start_run(owner, flow, {"s": 1})[0])

    assert run.status == "waiting"
    assert NodeRun.objects.get(run=run, node="bad").status == "recovered"
    assert run.recovered == 1
    assert run.elapsed_ms >= 300


def test_an_answer_after_the_deadline_is_refused_and_the_timeout_is_taken(owner):
    """docs/dsl.md 5.10: when the timeout passes the node finishes with option "timeout", also
    while no worker holds the run and before the next maintenance pass notices."""
    import time

    from flows.errors import ServiceError

    flow = services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Quick question",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "ask", "type": "question",
                   "params": {"question": "Ship?", "options": [{"id": "yes", "label": "Yes"}],
                              "timeout_s": 0.3}},
                  {"id": "shipped", "type": "template", "params": {"template": "shipped"}},
                  {"id": "late", "type": "template", "params": {"template": "too late"}},
                  {"id": "end", "type": "end", "inputs": {"option": "{{ask.option}}"}}],
        "edges": [{"from": "start", "to": "ask"},
                  {"from": "ask", "to": "shipped", "branch": "yes"},
                  {"from": "ask", "to": "late", "branch": "timeout"},
                  {"from": "shipped", "to": "end"}, {"from": "late", "to": "end"}]})
    run = finish(services.start_run(owner, flow, {})[0])
    assert run.status == "waiting"
    time.sleep(0.5)  # past the deadline; the maintenance pass (every 5 s) has not come

    with pytest.raises(ServiceError) as refused:
        services.answer_run(run, "now", "yes")
    run = finish(run, seconds=3)

    assert refused.value.status == 409 and refused.value.code == "not_waiting"
    assert "timed out" in refused.value.message
    assert run.status == "succeeded" and run.outputs == {"option": "timeout"}
    assert NodeRun.objects.get(run=run, node="late").status == "succeeded"


def wait_flow(owner, seconds):
    return services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Wait",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "pause", "type": "wait", "params": {"seconds": seconds}},
                  {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "pause"}, {"from": "pause", "to": "end"}]})


def test_a_long_run_renews_its_lease_while_it_executes(owner, settings):
    """Else another worker would take it over as if its worker had died."""
    import time

    settings.RUN_LEASE_S = 1.0  # renewed every third of a second
    run = services.start_run(owner, wait_flow(owner, 1.5), {})[0]
    expiries = set()
    deadline = time.monotonic() + 10
    # Until it finished and its worker let go (the lease is released just after the last
    # batch of events, which sets the status, commits).
    while (row := Run.objects.get(pk=run.pk)).status != "succeeded" or row.lease_owner:
        assert time.monotonic() < deadline, "the run did not finish"
        expiry = Run.objects.values_list("lease_expires_at", flat=True).get(pk=run.pk)
        if expiry is not None:
            expiries.add(expiry)
        time.sleep(0.05)

    run.refresh_from_db()
    assert len(expiries) >= 3  # claimed, then renewed at least twice
    assert run.resumed_after_crash == 0 and run.lease_owner == ""


def test_a_serving_process_takes_up_orphaned_runs_on_its_own(owner, settings, monkeypatch):
    """Without anyone calling recover: the executor's maintenance loop (every few seconds)
    finds a run its worker never picked up, e.g. the process died right after the insert."""
    from datetime import timedelta

    from django.utils import timezone

    from flows.execution import executor as executor_module
    from flows.models import Document

    monkeypatch.setattr(executor_module, "MAINTENANCE_INTERVAL_S", 0.1)
    settings.RUN_LEASE_S = 1.0
    flow = services.create_flow(owner, sample("hello"))
    document = Document.objects.get_or_create(hash=flow.draft_hash,
                                              defaults={"dsl": flow.draft})[0]
    orphan = Run.objects.create(owner=owner, flow=flow, document=document,
                                inputs={"name": "Ada"})
    Run.objects.filter(pk=orphan.pk).update(created_at=timezone.now() - timedelta(minutes=1))

    executor.start()

    assert finish(orphan).status == "succeeded"
    assert orphan.outputs == {"greeting": "Hello, Ada!"}
