"""Workers on Celery and a broker (docs/scaling.md): the serving process executes nothing,
a doorbell is only a doorbell, and the crash suite of issue 13 — a worker killed, stopped on
purpose, paused past its lease; every doorbell doubled; doorbells lost; the broker
restarted. What must hold each time: every run finishes; its events have no gap; no node
that had finished runs again (a request is sent again only for a node in flight when its run
changed hands, counted by the Idempotency-Key each http node sends)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pytest
from celery import current_app
from kombu import Connection

from flows import services
from flows.execution.doorbell import LOOK_AT_RUN
from flows.models import Run, RunEvent, Worker
from tests.platform.factories import holding, most_at_once, sample

from .conftest import BROKER, api, requests_in_a_row, wait_for

FINAL = ("succeeded", "failed", "cancelled")


def start_runs(base: str, key: str, slug: str, count: int) -> list[str]:
    with api(base, key) as client:
        answers = [client.post(f"/api/flows/{slug}/runs/", json={"inputs": {}})
                   for _ in range(count)]
    assert {answer.status_code for answer in answers} == {201}, answers[0].text
    return [answer.json()["id"] for answer in answers]


def all_final(run_ids: list[str]) -> bool:
    return not Run.objects.filter(pk__in=run_ids).exclude(status__in=FINAL).exists()


def assert_each_executed_once(run_ids: list[str], nodes: list[str]) -> None:
    for run in Run.objects.filter(pk__in=run_ids):
        assert run.status == "succeeded", (run.pk, run.status, run.error)
        seqs = list(RunEvent.objects.filter(run=run).order_by("seq")
                    .values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)), f"gaps in {run.pk}"
        finished = list(RunEvent.objects.filter(run=run, type="node.finished")
                        .values_list("data__node", flat=True))
        assert sorted(finished) == sorted(nodes), run.pk  # each node finished once
        assert RunEvent.objects.filter(run=run, type="run.finished").count() == 1


def assert_repeats_only_at_takeovers(run_ids: list[str], counted) -> dict[str, int]:
    """A request is sent again only for the node a run had in flight when it changed hands:
    at most once per takeover of the run (a worker that lost its lease under load may have
    been taken over before it was killed)."""
    repeated = counted.repeated()
    assert all(n == 2 for n in repeated.values()), repeated
    for run in Run.objects.filter(pk__in=run_ids):
        again = [key for key in repeated if key.startswith(f"{run.pk}/")]
        assert len(again) <= run.resumed_after_crash, (run.pk, again)
    return repeated


def in_flight_when(run_ids: list[str], node_prefix: str = "h") -> set[str]:
    """The http nodes started and not finished now, as their Idempotency-Keys (run/node)."""
    started = set(RunEvent.objects.filter(run_id__in=run_ids, type="node.started",
                                          data__node__startswith=node_prefix)
                  .values_list("run_id", "data__node"))
    finished = set(RunEvent.objects.filter(run_id__in=run_ids, type="node.finished",
                                           data__node__startswith=node_prefix)
                   .values_list("run_id", "data__node"))
    return {f"{run}/{node}" for run, node in started - finished}


STEPS = ["start", "h1", "h2", "h3", "end"]
LONG = 16  # requests in a row: runs still in flight once a second worker has started


def test_workers_execute_runs_and_the_serving_process_none(stack, owner):
    user, key = owner
    services.create_flow(user, holding(0.1), slug="hold")
    services.create_flow(user, sample("approval"), slug="approval")
    stack.serve()
    stack.worker("a")
    with api(stack.base, key) as client:
        done = client.post("/api/flows/hold/runs/", json={"inputs": {}, "wait": 20}).json()
        assert done["status"] == "succeeded" and done["outputs"] == {"done": "yes"}

        asking = client.post("/api/flows/approval/runs/",
                             json={"inputs": {"request": "refund"}, "wait": 20}).json()
        assert asking["status"] == "waiting"
        answered = client.post(f"/api/runs/{asking['id']}/answer/",
                               json={"answer": "fine", "option": "yes"})
        assert answered.status_code == 202, answered.text
        wait_for(lambda: Run.objects.get(pk=asking["id"]).status == "succeeded", 20,
                 "the answered run to finish")

    workers = list(Worker.objects.values_list("name", flat=True))
    assert len(workers) == 1  # the worker beats; the serving process executes nothing
    assert Run.objects.get(pk=done["id"]).lease_owner == ""
    assert f":{stack.workers['a'].pid}:" in workers[0]


def test_a_worker_killed_holding_200_runs_loses_none_and_repeats_only_nodes_in_flight(
        stack, owner, counting_server):
    url, counted = counting_server
    user, key = owner
    services.create_flow(user, requests_in_a_row(url, steps=LONG), slug="chain")
    stack.serve()
    doomed = stack.worker("doomed")
    runs = start_runs(stack.base, key, "chain", 200)
    wait_for(lambda: RunEvent.objects.filter(run_id__in=runs, type="node.finished",
                                             data__node="h1").count() == 200,
             60, "every run to finish its first request")  # the others take 6 s more
    mine = f":{doomed.pid}:"
    stack.worker("survivor")
    held_at_kill = Run.objects.filter(pk__in=runs, lease_owner__contains=mine).count()
    doomed.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    in_flight = in_flight_when(runs)
    wait_for(lambda: not Run.objects.filter(pk__in=runs, status__in=["queued", "running"],
                                            lease_owner__contains=mine).exists(),
             60, "the survivor to take every run over")
    takeover_s = time.monotonic() - killed_at
    wait_for(lambda: all_final(runs), 120, "every run to finish")

    assert_each_executed_once(runs, ["start", *(f"h{i}" for i in range(1, LONG + 1)), "end"])
    assert counted.total() == 200 * LONG
    # The kill caught most runs mid-flight (how many depends on how long the survivor took
    # to start: its start is the window in which the doomed worker finishes some alone).
    assert held_at_kill >= 100, held_at_kill
    repeated = assert_repeats_only_at_takeovers(runs, counted)
    print(f"takeover of the {held_at_kill} runs it held after kill -9: {takeover_s:.1f} s; "
          f"{len(repeated)} "
          f"requests sent again (in flight when stored events were read at the kill: "
          f"{len(in_flight)})")
    assert takeover_s < 3 + 6 + 5 + 5  # lease, a gone worker's silence, a sweep, margin


def test_a_worker_stopped_on_purpose_hands_its_runs_over_at_once(stack, owner):
    user, key = owner
    # The hold outlasts the second worker's start, so runs are still executing at SIGTERM.
    services.create_flow(user, holding(10), slug="hold")
    stack.environment["RUN_LEASE_S"] = "60"  # a run waiting out a lease would take a minute
    stack.serve()
    leaving = stack.worker("leaving")
    runs = start_runs(stack.base, key, "hold", 20)
    wait_for(lambda: RunEvent.objects.filter(run_id__in=runs, type="node.started",
                                             data__node="hold").count() == 20,
             30, "every run to start holding")
    stack.worker("staying")
    leaving.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    wait_for(lambda: all_final(runs), 30, "every run to finish")
    took = time.monotonic() - stopped_at
    assert leaving.wait(30) == 0
    assert_each_executed_once(runs, ["start", "hold", "end"])
    assert took < 30, took  # drain 1 s, then the 10 s hold again elsewhere: no 60 s lease
    assert "handed over" in stack.log("leaving")


def test_a_worker_paused_past_its_lease_cannot_write_when_it_wakes(stack, owner,
                                                                    counting_server):
    url, counted = counting_server
    user, key = owner
    services.create_flow(user, requests_in_a_row(url), slug="chain")
    stack.serve()
    paused = stack.worker("paused")
    runs = start_runs(stack.base, key, "chain", 10)
    wait_for(lambda: RunEvent.objects.filter(run_id__in=runs, type="node.started",
                                             data__node="h2").count() == 10,
             30, "every run to reach its second request")
    stack.worker("other")
    paused.send_signal(signal.SIGSTOP)
    mine = f":{paused.pid}:"
    wait_for(lambda: not Run.objects.filter(pk__in=runs, status__in=["queued", "running"],
                                            lease_owner__contains=mine).exists(),
             60, "the other worker to take the paused one's runs over")
    paused.send_signal(signal.SIGCONT)
    wait_for(lambda: all_final(runs), 60, "every run to finish")
    time.sleep(1)  # what the woken worker still tried to write, it tried by now

    assert_each_executed_once(runs, STEPS)
    assert_repeats_only_at_takeovers(runs, counted)  # the woken worker wrote nothing more


def test_every_doorbell_delivered_twice_executes_each_run_once(stack, owner, counting_server):
    url, counted = counting_server
    user, key = owner
    services.create_flow(user, requests_in_a_row(url), slug="chain")
    stack.serve()
    stack.worker("a")
    stack.worker("b")
    runs = start_runs(stack.base, key, "chain", 30)
    with Connection(BROKER) as broker:
        for run_id in runs:
            current_app.send_task(LOOK_AT_RUN, (run_id, "start"), queue=stack.queue,
                                  connection=broker)
    wait_for(lambda: all_final(runs), 60, "every run to finish")

    assert_each_executed_once(runs, STEPS)
    assert counted.total() == 30 * 3 and counted.repeated() == {}
    for run_id in runs:
        assert RunEvent.objects.filter(run_id=run_id, type="run.started").count() == 1


def test_runs_whose_doorbell_was_lost_are_started_by_the_sweep(stack, owner):
    user, key = owner
    flow = services.create_flow(user, holding(0.1), slug="hold")
    stack.serve()
    stack.worker("a")
    rung = start_runs(stack.base, key, "hold", 18)
    document = services.documents.store_document(flow.draft)
    lost = [str(Run.objects.create(owner=user, flow=flow, document=document, inputs={}).pk)
            for _ in range(2)]  # inserted, never rung: 10 % of the doorbells lost
    wait_for(lambda: all_final(rung + lost), 40, "every run to finish")
    assert_each_executed_once(rung + lost, ["start", "hold", "end"])


@pytest.mark.skipif(not shutil.which("rabbitmqctl") or not BROKER.startswith("amqp://"),
                    reason="restarts the machine's own RabbitMQ (rabbitmqctl)")
def test_the_broker_stopped_and_started_mid_run_loses_no_run(stack, owner, counting_server):
    url, counted = counting_server
    user, key = owner
    services.create_flow(user, requests_in_a_row(url), slug="chain")
    stack.serve()
    stack.worker("a")
    before = start_runs(stack.base, key, "chain", 10)
    wait_for(lambda: RunEvent.objects.filter(run_id__in=before, type="node.started",
                                             data__node="h1").count() == 10,
             30, "every run to start")
    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        during = start_runs(stack.base, key, "chain", 5)  # stored; their doorbells fail
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True,
                       timeout=60)
    after = start_runs(stack.base, key, "chain", 5)
    runs = before + during + after
    wait_for(lambda: all_final(runs), 90, "every run to finish")
    assert_each_executed_once(runs, STEPS)
    assert counted.repeated() == {}


def spans(log: str) -> list[dict]:
    """The spans OTEL_TRACES_EXPORTER=console printed (one JSON object each) in a log."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := log.find('{\n    "name"', at)) >= 0:
        span, end = decoder.raw_decode(log, at)
        found.append(span)
        at = end
    return found


def test_a_runs_trace_goes_from_the_request_through_the_broker_into_the_worker(stack, owner):
    user, key = owner
    services.create_flow(user, holding(0.1), slug="hold")
    stack.environment.update(OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="200")
    stack.serve()
    stack.worker("a")
    with api(stack.base, key) as client:
        run = client.post("/api/flows/hold/runs/", json={"inputs": {}, "wait": 20}).json()
    assert run["status"] == "succeeded"

    def traced() -> tuple[list[dict], list[dict]]:
        served = spans((stack.folder / "daphne.log").read_text(errors="replace"))
        worked = spans(stack.log("a"))
        publishes = [s for s in served if s["name"] == f"apply_async/{LOOK_AT_RUN}"]
        runs = [s for s in worked if s["name"] == "run hold"]
        return (publishes, runs) if publishes and runs else None

    publishes, runs = wait_for(traced, 20, "the spans to be written")
    tasks = [s for s in spans(stack.log("a")) if s["name"] == f"run/{LOOK_AT_RUN}"]
    trace_id = publishes[0]["context"]["trace_id"]
    assert [task["context"]["trace_id"] for task in tasks] == [trace_id]
    assert runs[0]["context"]["trace_id"] == trace_id  # the run's span, in the worker


def test_capacity_holds_across_workers_and_runs_start_in_creation_order(stack, owner):
    user, key = owner
    services.update_flow(services.create_flow(user, holding(0.4), slug="hold"),
                         max_active_runs=2)
    stack.serve()
    stack.worker("a")
    stack.worker("b")
    runs = start_runs(stack.base, key, "hold", 8)
    wait_for(lambda: all_final(runs), 60, "every run to finish")

    rows = list(Run.objects.filter(pk__in=runs).order_by("created_at"))
    assert {row.status for row in rows} == {"succeeded"}
    assert most_at_once(rows) == 2
    # Two slots free together and two workers start their runs in either order within a
    # millisecond; what creation order means is that no run starts before the run created
    # two places ahead of it.
    starts = [row.started_at for row in rows]
    assert all(earlier <= later for earlier, later in zip(starts, starts[2:], strict=False)), \
        starts
