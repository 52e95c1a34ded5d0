"""Properties of runs over random valid flows (docs/dsl.md §4, §6).

Random DAGs of template / if_else / aggregate / wait(0) nodes, built valid by construction:
nodes are numbered in topological order, every node has an edge from an earlier node (so it
is reachable from start) and every node without a successor gets an edge to end (so it
reaches end). if_else conditions compare literal integers, so the test knows which handle
each one chooses and which nodes must be skipped.
"""

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .runflows import aggregate, case, cond, edge, end, flow, if_else, run, start, template, wait

# if_else twice: branches are what makes nodes skip, the interesting half of the property.
KINDS = ["template", "if_else", "if_else", "aggregate", "wait"]
OPS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
OUTPUT = {"start": "v", "template": "text", "if_else": "branch", "aggregate": "value"}


@st.composite
def random_flows(draw):
    n = draw(st.integers(1, 8))
    ids = ["start"] + [f"n{i}" for i in range(1, n + 1)] + ["end"]
    kinds = ["start"] + [draw(st.sampled_from(KINDS)) for _ in range(n)] + ["end"]
    preds = {i: set() for i in range(1, n + 2)}
    for i in range(1, n + 1):
        preds[i].add(draw(st.integers(0, i - 1)))
        preds[i] |= draw(st.sets(st.integers(0, i - 1), max_size=1))
    for j in range(0, n + 1):
        if not any(j in preds[i] for i in range(j + 1, n + 1)):
            preds[n + 1].add(j)
    preds[n + 1] |= draw(st.sets(st.integers(0, n), max_size=1))

    cases_of, handles = {}, {}
    for i in range(1, n + 1):
        if kinds[i] != "if_else":
            continue
        cases = []
        for c in range(draw(st.integers(1, 2))):
            conditions = [
                (
                    draw(st.integers(0, 3)),
                    draw(st.sampled_from(sorted(OPS))),
                    draw(st.integers(0, 3)),
                )
                for _ in range(draw(st.integers(0, 2)))
            ]
            # "any" only with conditions, so the property does not hinge on how an empty
            # "any" list is read; test_operators covers that case.
            match = draw(st.sampled_from(["all", "any"])) if conditions else "all"
            cases.append((f"c{c}", match, conditions))
        cases_of[i] = cases
        handles[i] = [cid for cid, _, _ in cases] + ["else"]

    edges = []  # (src, dst, branch or None)
    for dst in range(1, n + 2):
        for src in sorted(preds[dst]):
            branch = draw(st.sampled_from(handles[src])) if kinds[src] == "if_else" else None
            edges.append((src, dst, branch))

    nodes = [start({"v": {"type": "string", "default": "v"}})]
    for i in range(1, n + 1):
        refs = [
            "{{" + f"{ids[p]}.{OUTPUT[kinds[p]]}" + "}}"
            for p in sorted(preds[i])
            if kinds[p] in OUTPUT
        ]
        if kinds[i] == "template":
            nodes.append(template(ids[i], f"{ids[i]}:" + "|".join(refs)))
        elif kinds[i] == "aggregate":
            nodes.append(aggregate(ids[i], [*refs, "fallback"]))
        elif kinds[i] == "wait":
            nodes.append(wait(ids[i], 0))
        else:
            nodes.append(
                if_else(
                    ids[i],
                    *[
                        case(cid, *[cond(a, op, b) for a, op, b in conds], match=match)
                        for cid, match, conds in cases_of[i]
                    ],
                )
            )
    outputs = {
        ids[i]: "{{" + f"{ids[i]}.text" + "}}" for i in range(1, n + 1) if kinds[i] == "template"
    }
    nodes.append(end(outputs))
    doc = flow(nodes, [edge(ids[s], ids[d], b) for s, d, b in edges])
    return doc, ids, kinds, edges, cases_of


def expected_branch(cases):
    for cid, match, conditions in cases:
        results = [OPS[op](a, b) for a, op, b in conditions]
        if any(results) if match == "any" else all(results):
            return cid
    return "else"


def expected_outcome(ids, kinds, edges, cases_of):
    """Which nodes run (True) or are skipped (False), and each if_else's handle."""
    ran, branch = {0: True}, {}
    for i in range(1, len(ids)):
        incoming = [(s, b) for s, d, b in edges if d == i]
        taken = [ran[s] and (b is None or b == branch[s]) for s, b in incoming]
        ran[i] = any(taken) or kinds[i] == "end"
        if kinds[i] == "if_else" and ran[i]:
            branch[i] = expected_branch(cases_of[i])
    return ran, branch


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(random_flows())
def test_every_node_runs_once_or_is_skipped_and_events_are_gapless(case_):
    doc, ids, kinds, edges, cases_of = case_
    result, events = asyncio.run(run(doc, {}))
    assert result.status == "succeeded", result.error

    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run.started"
    assert events[-1]["type"] == "run.finished"
    assert sum(e["type"] == "run.finished" for e in events) == 1

    ran, branch = expected_outcome(ids, kinds, edges, cases_of)
    terminal = {}
    for i, node_id in enumerate(ids):
        mine = [(k, e) for k, e in enumerate(events) if e["data"].get("node") == node_id]
        started = [k for k, e in mine if e["type"] == "node.started"]
        done = [k for k, e in mine if e["type"] == "node.finished"]
        skipped = [k for k, e in mine if e["type"] == "node.skipped"]
        if ran[i]:
            assert (len(started), len(done), len(skipped)) == (1, 1, 0), node_id
            assert events[done[0]]["data"]["status"] == "succeeded", node_id
            assert result.nodes[node_id].status == "succeeded", node_id
            assert result.nodes[node_id].attempts == 1
            first, terminal[i] = started[0], done[0]
        else:
            assert (len(started), len(done), len(skipped)) == (0, 0, 1), node_id
            assert result.nodes[node_id].status == "skipped", node_id
            assert result.nodes[node_id].attempts == 0
            first = terminal[i] = skipped[0]
        for src, dst, _ in edges:
            if dst == i:
                assert terminal[src] < first, (ids[src], node_id)
        if kinds[i] == "if_else" and ran[i]:
            assert result.nodes[node_id].outputs == {"branch": branch[i]}
        if kinds[i] == "template":
            text = result.outputs[node_id]
            assert (text is not None) == ran[i]
            if ran[i]:
                assert text.startswith(f"{node_id}:")
