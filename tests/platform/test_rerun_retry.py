"""Re-running and retrying runs (docs/api.md, "Re-running and retrying"), through the API,
executed by the in-process executor against a local server that fails on purpose."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from itertools import pairwise

import pytest

from flows import services
from flows.execution.executor import executor
from flows.models import Run

from .factories import api_client, assert_error, no_rows_change, reachable_server, user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def failing_server(settings):
    """`/fail/<n>` answers 500 to its first n requests, then 200; the http node may reach it."""
    counts: dict[str, int] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            _, _, name, failures = self.path.split("/", 3)
            with lock:
                counts[name] = seen = counts.get(name, 0) + 1
            status = 500 if seen <= int(failures) else 200
            body = b'{"ok": true}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with reachable_server(settings, Handler) as base:
        yield base, counts


def twenty_nodes(url: str) -> dict:
    """start, t2…t14, `call` (node 15), t16…t19, end; each template waits for nothing."""
    ids = [f"t{i}" for i in range(2, 15)] + ["call"] + [f"t{i}" for i in range(16, 20)]
    nodes = [{"id": "start", "type": "start"}]
    for node_id in ids:
        if node_id == "call":
            nodes.append({"id": "call", "type": "http", "params": {"url": url}})
        else:
            nodes.append({"id": node_id, "type": "template", "params": {"template": node_id}})
    nodes.append({"id": "end", "type": "end", "inputs": {"last": "{{t19.text}}"}})
    chain = ["start", *ids, "end"]
    return {"dsl": "astron/v1", "name": "Twenty", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(chain)]}


def finished(run_id, seconds=20) -> dict:
    executor.wait(run_id, seconds)
    return Run.objects.get(pk=run_id)


@pytest.fixture
def failed(api, owner, failing_server):
    """A run of the 20-node flow that failed at node 15 (its server fails once)."""
    base, _counts = failing_server
    services.create_flow(owner, twenty_nodes(f"{base}/fail/once/1"), slug="twenty")
    started = api.post("/api/flows/twenty/runs/", {"inputs": {}}, format="json").json()
    run = finished(started["id"])
    assert run.status == "failed" and run.error["node"] == "call"
    return run


def test_a_retry_takes_over_what_succeeded_and_executes_the_failed_node_and_the_rest(api,
                                                                                    failed):
    answer = api.post(f"/api/runs/{failed.pk}/retry/", {}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["retry_of"] == str(failed.pk)
    assert body["trigger"] == {"type": "retry", "run": str(failed.pk)}
    assert body["dsl_hash"] == failed.document_id and body["inputs"] == failed.inputs
    retry = finished(body["id"])
    assert retry.status == "succeeded", retry.error

    shown = api.get(f"/api/runs/{retry.pk}/").json()
    executed = [n["node"] for n in shown["nodes"] if not n["reused"]]
    taken = [n for n in shown["nodes"] if n["reused"]]
    assert executed == ["call", "t16", "t17", "t18", "t19", "end"]  # 6 nodes, not 20
    assert [n["node"] for n in taken] == ["start", *[f"t{i}" for i in range(2, 15)]]
    assert all(n["attempts"] == 0 and n["elapsed_ms"] == 0 and n["status"] == "succeeded"
               for n in taken)
    events = api.get(f"/api/runs/{retry.pk}/events/").json()["results"]
    started = [e["data"]["node"] for e in events if e["type"] == "node.started"]
    assert started == executed
    assert api.get("/api/runs/", {"trigger": "retry"}).json()["results"][0]["id"] == str(retry.pk)


def test_a_retry_of_a_retry_continues_from_the_latest(api, owner, failing_server):
    base, _counts = failing_server
    services.create_flow(owner, twenty_nodes(f"{base}/fail/twice/2"), slug="twenty")
    first = finished(api.post("/api/flows/twenty/runs/", {"inputs": {}},
                              format="json").json()["id"])
    second = finished(api.post(f"/api/runs/{first.pk}/retry/", {}, format="json").json()["id"])
    assert second.status == "failed"
    third = finished(api.post(f"/api/runs/{second.pk}/retry/", {}, format="json").json()["id"])
    assert third.status == "succeeded" and third.retry_of_id == second.pk
    assert second.retry_of_id == first.pk
    assert third.node_runs.filter(reused=False).count() == 6


def test_a_rerun_runs_the_same_snapshot_and_inputs_again_from_the_start(api, owner, failed):
    services.update_flow(failed.flow, dsl={**twenty_nodes("http://127.0.0.1:9/"),
                                           "name": "Changed since"})
    answer = api.post(f"/api/runs/{failed.pk}/rerun/", {}, format="json")
    assert answer.status_code == 201, answer.content
    rerun = finished(answer.json()["id"])
    assert rerun.document_id == failed.document_id  # the snapshot, not today's draft
    assert rerun.trigger == {"type": "rerun", "run": str(failed.pk)} and rerun.retry_of is None
    assert rerun.status == "succeeded"  # the server has stopped failing
    assert rerun.node_runs.filter(reused=True).count() == 0
    assert rerun.node_runs.count() == 20


def test_repeats_with_an_idempotency_key_start_one_run(api, failed):
    first = api.post(f"/api/runs/{failed.pk}/retry/", {}, format="json",
                     HTTP_IDEMPOTENCY_KEY="retry-1")
    again = api.post(f"/api/runs/{failed.pk}/retry/", {}, format="json",
                     HTTP_IDEMPOTENCY_KEY="retry-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert_error(api.post(f"/api/runs/{failed.pk}/rerun/", {}, format="json",
                          HTTP_IDEMPOTENCY_KEY="retry-1"), 409, "idempotency_conflict")


def test_what_cannot_be_retried_or_rerun_is_refused_and_starts_nothing(api, owner):
    flow = services.create_flow(owner, {"dsl": "astron/v1", "name": "Hold", "nodes": [
        {"id": "start", "type": "start"}, {"id": "hold", "type": "wait", "params": {"seconds": 30}},
        {"id": "end", "type": "end"}], "edges": [{"from": "start", "to": "hold"},
                                                {"from": "hold", "to": "end"}]})
    running, _ = services.start_run(owner, flow, {})
    assert_error(api.post(f"/api/runs/{running.pk}/rerun/", {}, format="json"), 409,
                 "not_finished")
    assert_error(api.post(f"/api/runs/{running.pk}/retry/", {}, format="json"), 409,
                 "not_finished")
    assert Run.objects.count() == 1
    services.cancel_run(running)
    cancelled = finished(running.pk)
    assert cancelled.status == "cancelled"
    assert api.post(f"/api/runs/{cancelled.pk}/retry/", {}, format="json").status_code == 201

    hello = services.create_flow(owner, {"dsl": "astron/v1", "name": "Hi", "nodes": [
        {"id": "start", "type": "start"}, {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "end"}]})
    done = finished(services.start_run(owner, hello, {})[0].pk)
    with no_rows_change():
        assert_error(api.post(f"/api/runs/{done.pk}/retry/", {}, format="json"), 409,
                     "succeeded")
        assert_error(api.post(f"/api/runs/{done.pk}/retry/", {"x": 1}, format="json"), 400,
                     "invalid_request")
        stranger = api_client(user("eve"))
        assert_error(stranger.post(f"/api/runs/{done.pk}/rerun/", {}, format="json"), 404,
                     "not_found")
        assert_error(api.post("/api/runs/not-a-run/retry/", {}, format="json"), 404,
                     "not_found")


def test_the_run_page_offers_both_and_links_a_retry_to_its_original(browser, failed):
    page = browser.get(f"/runs/{failed.pk}/").content.decode()
    assert "Re-run" in page and "Retry from the failed node" in page
    assert 'data-when-failed hidden' not in page

    moved = browser.post(f"/runs/{failed.pk}/retry/")
    assert moved.status_code == 302
    retry = Run.objects.get(retry_of=failed)
    assert moved["Location"] == f"/runs/{retry.pk}/"
    finished(retry.pk)
    shown = browser.get(f"/runs/{retry.pk}/").content.decode()
    assert f"/runs/{failed.pk}/" in shown and "reused (taken over" in shown
    assert "started by retry" in shown
    assert 'data-when-failed hidden' in shown  # it succeeded: re-run only
    assert f"/runs/{retry.pk}/" in browser.get(f"/runs/{failed.pk}/").content.decode()

    rerun = browser.post(f"/runs/{retry.pk}/rerun/")
    assert rerun.status_code == 302
    assert browser.post(f"/runs/{retry.pk}/retry/").status_code == 400  # it succeeded


def test_the_admin_filters_runs_by_trigger_and_shows_what_a_retry_continues(staff_client,
                                                                            api, failed):
    retry = finished(api.post(f"/api/runs/{failed.pk}/retry/", {}, format="json").json()["id"])
    listing = staff_client.get("/admin/flows/run/", {"trigger": "retry"}).content.decode()
    assert str(retry.pk) in listing and str(failed.pk) not in listing
    page = staff_client.get(f"/admin/flows/run/{retry.pk}/change/").content.decode()
    assert f"/admin/flows/run/{failed.pk}/change/" in page
