"""The pages in a real browser against a real server (daphne, the websocket, the executor):
a fan-out run whose nodes turn green live and its flow's graph laid out by level; an approval
run answered from its question form over a connection that drops and resumes; an answer sent
through the API while the socket is down, and a run cancelled from its page.

Screenshots go to test-artifacts/ (gitignored); with ASTRON_DOCS_IMAGES=1 the README's
images in docs/images/ are taken again too.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from flows import services
from flows.models import Run, RunEvent

from .browsing import PASSWORD, chromium_page, log_in, screenshot, skip_unless_ready

skip_unless_ready()

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
RUN_URL = re.compile(r".*/runs/[0-9a-f-]{36}/$")

# Every value each graph node's data-state took, in order (a MutationObserver, installed
# before the page's own scripts run).
RECORD_STATES = """
window.nodeStates = {};
new MutationObserver((records) => {
  for (const record of records) {
    const node = record.target.getAttribute("data-node");
    if (!node || !record.target.classList.contains("node")) continue;
    (window.nodeStates[node] = window.nodeStates[node] || []).push(record.oldValue);
  }
}).observe(document, { attributes: true, attributeFilter: ["data-state"], subtree: true,
  attributeOldValue: true });
"""
STATE_HISTORIES = """() => Object.fromEntries([...document.querySelectorAll("g.node")].map(
  (g) => [g.dataset.node, [...(window.nodeStates[g.dataset.node] || []), g.dataset.state]]))"""


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.fixture
def ada():
    """A user (not staff: the pages have their own sign-in) with two flows."""
    user = User.objects.create_user("ada", password=PASSWORD)
    services.create_flow(user, sample("fanout"), slug="fanout")
    services.create_flow(user, sample("approval"), slug="approval")
    return user


def run_id_of(page) -> str:
    return page.url.rstrip("/").rsplit("/", 1)[1]


def wait_until(page, predicate, seconds: float = 20) -> None:
    """Let the page work until `predicate()` holds."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(50)


def select(page, node: str) -> None:
    """Click a node of the graph, and wait for the frame that draws it selected (the graph
    and the panel are drawn together, on the next animation frame)."""
    page.click(f'g.node[data-node="{node}"]')
    page.wait_for_selector(f'g.node.selected[data-node="{node}"]', timeout=5000)


def test_a_fanout_run_turns_green_live_and_its_flow_page_shows_it(ada, server):
    with chromium_page() as page:
        page.add_init_script(RECORD_STATES)
        log_in(page, server, "/flows/fanout/run/", "ada")
        assert page.input_value("#id_input-topic") == "rivers"  # the default, filled in
        page.click("#start-form button[type=submit]")
        page.wait_for_url(RUN_URL)
        run_id = run_id_of(page)

        page.wait_for_selector('#run-page[data-run-status="succeeded"]')
        page.wait_for_selector('[data-connection="closed"]')  # closed by the server (1000)
        histories = page.evaluate(STATE_HISTORIES)
        for node in ("slow_a", "slow_b", "slow_c"):
            seen = histories[node]
            assert "running" in seen and seen[-1] == "succeeded", (node, seen)
            assert seen.index("running") < seen.index("succeeded"), (node, seen)
        assert {states[-1] for states in histories.values()} == {"succeeded"}, histories
        assert page.text_content('[data-output="all"]') == "A on rivers | B on rivers | C on rivers"
        assert page.text_content("[data-progress-text]") == "9 / 9 nodes finished"
        assert "width: 100%" in page.get_attribute("[data-progress-bar]", "style")
        assert page.text_content("[data-run-elapsed]").endswith(" executing")
        # Each node's status line says how long it took (slow_a waits ~1 s).
        status = page.text_content('g.node[data-node="slow_a"] .node-status')
        assert status.startswith("succeeded") and status.rstrip("…").endswith((" s", " ms")), \
            status
        assert page.get_attribute('g.node[data-node="slow_b"]', "data-attempts") == "1"

        select(page, "join")
        panel = page.text_content("[data-panel]")
        assert "A on rivers | B on rivers | C on rivers" in panel and "attempts" in panel
        screenshot(page, "run-page-fanout.png", "run-page.png",
                   clip={"x": 0, "y": 0, "width": 1360, "height": 790})

        # The flow's page: the graph in columns by level, the run among the recent ones.
        page.click("text=Fan-out")
        page.wait_for_url(f"{server}/flows/fanout/")
        page.wait_for_selector("svg[data-graph] g.node")
        levels = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
            "g.node")].map((g) => [g.dataset.node, Number(g.dataset.level)]))""")
        assert levels == {"start": 0, "slow_a": 1, "slow_b": 1, "slow_c": 1, "a": 2, "b": 2,
                          "c": 2, "join": 3, "end": 4}
        lefts = {node: page.locator(f'g.node[data-node="{node}"]').bounding_box()["x"]
                 for node in levels}
        for node, level in levels.items():
            same = [lefts[other] for other, at in levels.items() if at == level]
            assert max(same) - min(same) < 1  # one column per level
            if level:
                assert lefts[node] > max(x for o, x in lefts.items() if levels[o] < level)
        row = page.locator(f'tr[data-run="{run_id}"]')
        assert row.locator(".badge").text_content() == "succeeded"
        assert row.locator("a").get_attribute("href") == f"/runs/{run_id}/"

        page.goto(f"{server}/flows/approval/")
        labels = page.locator("g.edge-label text").all_text_contents()
        assert sorted(labels) == ["no", "yes"]
        select(page, "ask")
        assert '"id": "ask"' in page.text_content("[data-node-definition]")
        problems = page.problems
    assert problems == []
    assert Run.objects.get(pk=run_id).status == "succeeded"


def test_an_approval_run_is_answered_from_its_page_across_a_dropped_connection(ada, server):
    with chromium_page() as page:
        sockets = []

        def proxy(route):
            route.connect_to_server()
            sockets.append(route)

        page.route_web_socket(re.compile(r"/ws/runs/"), proxy)
        log_in(page, server, "/flows/approval/run/", "ada")
        page.fill("#id_input-request", "refund")
        page.click("#start-form button[type=submit]")
        page.wait_for_url(RUN_URL)
        run_id = run_id_of(page)

        question = page.wait_for_selector('form[data-question="ask"]')
        assert "Send this reply? Reply to: refund" in question.text_content()
        assert page.get_attribute('g.node[data-node="ask"]', "data-state") == "waiting"
        page.wait_for_selector('#run-page[data-run-status="waiting"]')
        page.wait_for_function("""() => document.querySelector('[data-stream="draft"]')
            ?.textContent === "Reply to: refund" """)
        select(page, "draft")
        screenshot(page, "run-page-approval-question.png", "question.png",
                   clip={"x": 0, "y": 0, "width": 1360, "height": 860})

        # The connection drops: the page reconnects by itself, asking for what it has not seen.
        events = page.request.get(f"{server}/api/runs/{run_id}/events/?after=0").json()
        last_seq = events["results"][-1]["seq"]
        assert sockets[0].url.endswith("?after=0")
        sockets[0].close(code=4000, reason="dropped by the test")
        wait_until(page, lambda: len(sockets) == 2)
        assert sockets[1].url.endswith(f"?after={last_seq}"), sockets[1].url
        page.wait_for_selector('[data-connection="live"]')

        page.click('form[data-question="ask"] button[data-option="yes"]')
        page.wait_for_selector('#run-page[data-run-status="succeeded"]')
        result = page.text_content('[data-output="result"]')
        assert result.startswith("Sent: "), result
        assert page.locator("form[data-question]").count() == 0
        # Nothing was applied twice: the streamed text is there once.
        assert page.text_content('[data-stream="draft"]') == "Reply to: refund"
        assert page.get_attribute('g.node[data-node="dropped"]', "data-state") == "skipped"
        assert page.get_attribute('path.edge[data-branch="yes"]', "data-state") == "taken"
        assert page.get_attribute('path.edge[data-branch="no"]', "data-state") == "skipped"
        screenshot(page, "run-page-approval.png")
        problems = page.problems
    assert problems == []
    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.outputs["result"] == result
    resumed = RunEvent.objects.get(run=run, type="run.resumed")
    assert (resumed.data["node"], resumed.data["option"]) == ("ask", "yes")


def start_approval(page, server: str) -> str:
    log_in(page, server, "/flows/approval/run/", "ada")
    page.fill("#id_input-request", "refund")
    page.click("#start-form button[type=submit]")
    page.wait_for_url(RUN_URL)
    page.wait_for_selector('form[data-question="ask"]')
    return run_id_of(page)


def test_answers_go_through_the_api_while_the_socket_is_down_and_cancel_works(ada, server):
    with chromium_page() as page:
        run_id = start_approval(page, server)
        down = {"now": True}

        def flaky(route):
            if down["now"]:
                route.close(code=4000, reason="the test keeps the socket down")
            else:
                route.connect_to_server()

        page.route_web_socket(re.compile(r"/ws/runs/"), flaky)
        page.reload()
        page.wait_for_selector('form[data-question="ask"]')  # drawn from the page's snapshot
        assert page.get_attribute('g.node[data-node="ask"]', "data-state") == "waiting"
        page.wait_for_selector('[data-connection="waiting"]')
        page.fill('form[data-question="ask"] textarea', "not now")
        with page.expect_response(f"**/api/runs/{run_id}/answer/") as answered:
            page.click('form[data-question="ask"] button[data-option="no"]')
        assert answered.value.status == 202
        wait_until(page, lambda: page.request.get(f"{server}/api/runs/{run_id}/").json()[
            "status"] == "succeeded")

        down["now"] = False  # the socket comes back: the page catches up by itself
        page.wait_for_selector('#run-page[data-run-status="succeeded"]', timeout=40_000)
        assert page.text_content('[data-output="result"]') == "Discarded (not now)"

        # Another run, cancelled from its page (two clicks: a run cannot be un-cancelled).
        page.goto(f"{server}/flows/approval/run/")
        page.fill("#id_input-request", "refund")
        page.click("#start-form button[type=submit]")
        page.wait_for_url(RUN_URL)
        cancelled_id = run_id_of(page)
        page.wait_for_selector('form[data-question="ask"]')
        page.wait_for_selector('[data-connection="live"]')
        page.click("[data-cancel]")
        assert page.text_content("[data-cancel]") == "Click again to cancel"
        page.click("[data-cancel]")
        page.wait_for_selector('#run-page[data-run-status="cancelled"]')
        assert page.locator("form[data-question]").count() == 0
        assert page.is_hidden("[data-cancel]")
        assert "cancelled" in page.text_content("[data-result]")
        problems = page.problems
    assert problems == []
    assert Run.objects.get(pk=run_id).status == "succeeded"
    assert Run.objects.get(pk=cancelled_id).status == "cancelled"


def test_a_page_opened_after_the_run_paused_shows_its_streamed_text(ada, server):
    """The page paints the server's snapshot first (it holds no streamed text), then the
    events replayed over the socket replace it. Opened once the run is waiting, the replay
    ends at the snapshot's own seq: every part is drawn again from the replayed state all
    the same (the parts are keyed by seq, and the seq is the same)."""
    with chromium_page() as page:
        start_approval(page, server)
        page.wait_for_selector('#run-page[data-run-status="waiting"]')
        page.reload()
        page.wait_for_selector('[data-connection="live"]')
        page.wait_for_function("""() => document.querySelector('[data-stream="draft"]')
            ?.textContent === "Reply to: refund" """, timeout=10000)
        select(page, "draft")
        assert page.text_content('section [data-stream="draft"], [data-stream="draft"]') \
            == "Reply to: refund"
        problems = page.problems
    assert problems == []
