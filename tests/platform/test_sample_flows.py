"""Every sample flow gives the results samples/README.md lists, run on the platform: stored,
executed by the executor, code in the sandbox, subflows as child runs."""

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from flows import services
from flows.execution.executor import executor
from flows.models import NodeRun, Run, RunEvent

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def published():
    owner = User.objects.create_user("samples")
    flows = {}
    for name in ["hello", "router", "fanout", "resilient", "approval", "batch", "greet-team"]:
        dsl = json.loads((SAMPLES / f"{name}.json").read_text())
        flow = services.create_flow(owner, dsl, slug=name)
        services.publish_flow(flow)
        flows[name] = flow
    return owner, flows


def run(published, name, inputs):
    owner, flows = published
    started, _ = services.start_run(owner, flows[name], inputs)
    executor.wait(started.pk, 20)
    started.refresh_from_db()
    return started


def events(run_row, kind, node=None):
    found = RunEvent.objects.filter(run=run_row, type=kind).order_by("seq")
    return [e for e in found if node is None or e.data.get("node") == node]


def test_hello(published):
    assert run(published, "hello", {"name": "Ada"}).outputs == {"greeting": "Hello, Ada!"}


def test_router_short_text(published):
    result = run(published, "router", {"text": "hi"})
    assert result.outputs == {"answer": "Short: hi", "length": 2}


def test_router_long_text_is_summarised_and_the_echo_branch_skipped(published):
    text = "a long text that is certainly longer than the forty character limit"
    result = run(published, "router", {"text": text})
    assert result.status == "succeeded", result.error
    assert result.outputs["answer"] == f"Summary: {text}"
    assert NodeRun.objects.get(run=result, node="echo").status == "skipped"


def test_fanout_branches_overlap(published):
    result = run(published, "fanout", {})
    assert result.outputs == {"all": "A on rivers | B on rivers | C on rivers"}
    starts = [events(result, "node.started", n)[0].seq for n in ("slow_a", "slow_b", "slow_c")]
    ends = [events(result, "node.finished", n)[0].seq for n in ("slow_a", "slow_b", "slow_c")]
    assert max(starts) < min(ends)
    assert result.elapsed_ms < 2500


def test_resilient_divides(published):
    assert run(published, "resilient", {"a": 6, "b": 3}).outputs == {"message": "6 / 3 = 2.0"}


def test_resilient_recovers_from_division_by_zero_after_two_attempts(published):
    result = run(published, "resilient", {"a": 1, "b": 0})
    assert result.status == "succeeded", result.error
    assert result.outputs["message"].startswith("Cannot divide: ")
    divide = NodeRun.objects.get(run=result, node="divide")
    assert (divide.status, divide.attempts) == ("recovered", 2)
    assert result.recovered == 1


def test_approval_waits_then_sends(published):
    waiting = run(published, "approval", {"request": "refund"})
    assert waiting.status == "waiting"
    services.answer_run(waiting, "ok", "yes")
    executor.wait(waiting.pk, 20)
    waiting.refresh_from_db()
    assert waiting.outputs["result"].startswith("Sent: ")


def test_batch_shouts_in_order(published):
    result = run(published, "batch", {"words": ["a", "b", "c"]})
    assert result.outputs == {"results": [{"word": "0:A"}, {"word": "1:B"}, {"word": "2:C"}]}


def test_greet_team_runs_hello_as_child_runs(published):
    result = run(published, "greet-team", {"members": ["Ada", "Lin"]})
    assert result.outputs == {"lines": [{"line": "Hello, Ada!"}, {"line": "Hello, Lin!"}]}
    children = Run.objects.filter(parent_run=result)
    assert children.count() == 2
    assert {c.flow.slug for c in children} == {"hello"}
