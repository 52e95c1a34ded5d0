"""if_else: operators, cases, handles (docs/dsl.md §5.4, edge states of §4)."""

import pytest

from .runflows import (
    case,
    cond,
    edge,
    end,
    events_of,
    finished,
    flow,
    if_else,
    run,
    start,
    template,
)

YES, NO, MISMATCH = "yes", "else", "type_mismatch"
_NO_RIGHT = object()


def _decision_flow(*cases):
    """start(left, right: any) -> check(cases) -> one template per handle -> end."""
    handles = [c["id"] for c in cases] + ["else"]
    nodes = [
        start({"left": "any", "right": "any"}),
        if_else("check", *cases),
        *[template(f"on_{h}", h) for h in handles],
        end({"branch": "{{check.branch}}"}),
    ]
    edges = [edge("start", "check")]
    for h in handles:
        edges += [edge("check", f"on_{h}", h), edge(f"on_{h}", "end")]
    return flow(nodes, edges)


async def decide(op, left, right=_NO_RIGHT):
    """The handle chosen by one condition `left op right`, or the node error code."""
    condition = (
        cond("{{start.left}}", op)
        if right is _NO_RIGHT
        else cond("{{start.left}}", op, "{{start.right}}")
    )
    inputs = {"left": left, "right": None if right is _NO_RIGHT else right}
    result, _ = await run(_decision_flow(case("yes", condition)), inputs)
    if result.status == "failed":
        assert result.nodes["check"].status == "failed"
        assert result.error["node"] == "check"
        return result.error["code"]
    assert result.status == "succeeded", result.error
    return result.outputs["branch"]


def _negated(expected):
    return {YES: NO, NO: YES}.get(expected, expected)


# --- eq / ne -----------------------------------------------------------------------------

EQUALITY = [
    (1, 1, YES),
    (1, 1.0, YES),
    (2.5, 2.5, YES),
    (1, 2, NO),
    ("a", "a", YES),
    ("a", "A", NO),
    ("", "", YES),
    ("1", 1, NO),
    (True, True, YES),
    (True, 1, NO),
    (1, True, NO),
    (False, 0, NO),
    (0, False, NO),
    (True, False, NO),
    (None, None, YES),
    (None, 0, NO),
    (None, "", NO),
    (None, False, NO),
    (None, [], NO),
    (None, {}, NO),
    ({}, None, NO),
    ([], [], YES),
    ({}, {}, YES),
    ([1, 2], [1, 2], YES),
    ([1, 2], [2, 1], NO),
    ([1], [1.0], YES),
    ([True], [1], NO),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, YES),
    ({"a": [1, {"b": [2, None]}]}, {"a": [1, {"b": [2, None]}]}, YES),
    ({"a": [1, {"b": [2, None]}]}, {"a": [1, {"b": [2]}]}, NO),
    ({"a": 1}, {"a": 1, "b": None}, NO),
    ({"a": {"x": 1}}, {"a": {"x": 1.0}}, YES),
    ({"a": {"x": 0}}, {"a": {"x": False}}, NO),
    ([1, 2], {"0": 1, "1": 2}, NO),
]


@pytest.mark.parametrize(("left", "right", "expected"), EQUALITY)
async def test_eq_is_json_equality(left, right, expected):
    assert await decide("eq", left, right) == expected


@pytest.mark.parametrize(("left", "right", "expected"), EQUALITY)
async def test_ne_is_the_negation_of_eq(left, right, expected):
    assert await decide("ne", left, right) == _negated(expected)


# --- gt / ge / lt / le -----------------------------------------------------------------

ORDERING = [
    # (left, right, gt, ge, lt, le)
    (2, 1, YES, YES, NO, NO),
    (1, 2, NO, NO, YES, YES),
    (1, 1, NO, YES, NO, YES),
    (1, 1.0, NO, YES, NO, YES),
    (1.5, 1, YES, YES, NO, NO),
    (-3, 0, NO, NO, YES, YES),
    ("b", "a", YES, YES, NO, NO),
    ("a", "a", NO, YES, NO, YES),
    ("ab", "abc", NO, NO, YES, YES),
    ("B", "a", NO, NO, YES, YES),  # 'B' (66) comes before 'a' (97) by code point
    ("é", "z", YES, YES, NO, NO),  # U+00E9 after U+007A
    ("\U0001f600", "\uff61", YES, YES, NO, NO),  # code points, not UTF-16 units
    ("10", "9", NO, NO, YES, YES),  # strings compare as text, not numbers
    ("", "a", NO, NO, YES, YES),
]


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
@pytest.mark.parametrize(("left", "right", "gt", "ge", "lt", "le"), ORDERING)
async def test_ordering_compares_numbers_and_strings(op, left, right, gt, ge, lt, le):
    expected = {"gt": gt, "ge": ge, "lt": lt, "le": le}[op]
    assert await decide(op, left, right) == expected


@pytest.mark.parametrize("op", ["gt", "ge", "lt", "le"])
@pytest.mark.parametrize(
    ("left", "right"),
    [
        (1, "1"),
        ("2", 3),
        (None, 1),
        (1, None),
        (None, None),
        ("a", None),
        (True, False),
        (True, 0),
        (1, False),
        ([1], [2]),
        ({"a": 1}, {"a": 2}),
        ([1], 1),
    ],
)
async def test_ordering_of_mixed_types_or_null_is_type_mismatch(op, left, right):
    assert await decide(op, left, right) == MISMATCH


# --- contains / not_contains -------------------------------------------------------------

CONTAINMENT = [
    ("hello", "ell", YES),
    ("hello", "hello", YES),
    ("hello", "xyz", NO),
    ("hello", "Hell", NO),
    ("hello", "", YES),
    ("", "a", NO),
    (["a", "b"], "a", YES),
    (["ab"], "a", NO),
    ([1, 2], 1.0, YES),
    ([1, 2], 3, NO),
    ([[1, 2]], [1, 2], YES),
    ([[1, 2]], 1, NO),
    ([{"a": 1, "b": [2]}], {"b": [2], "a": 1}, YES),
    ([True], 1, NO),
    ([1], True, NO),
    ([None], None, YES),
    ([], None, NO),
    ([], "a", NO),
    (None, "x", NO),
    (None, None, NO),
    (None, 1, NO),
]


@pytest.mark.parametrize(("left", "right", "expected"), CONTAINMENT)
async def test_contains_string_or_array_item(left, right, expected):
    assert await decide("contains", left, right) == expected


@pytest.mark.parametrize(("left", "right", "expected"), CONTAINMENT)
async def test_not_contains_is_the_negation_of_contains(left, right, expected):
    assert await decide("not_contains", left, right) == _negated(expected)


@pytest.mark.parametrize("op", ["contains", "not_contains"])
@pytest.mark.parametrize(
    ("left", "right"),
    [(5, 5), (5, "5"), (True, True), ({"a": 1}, "a"), ({"a": 1}, {"a": 1}), ("abc", 1)],
)
async def test_contains_on_other_types_is_type_mismatch(op, left, right):
    assert await decide(op, left, right) == MISMATCH


# --- starts_with / ends_with -------------------------------------------------------------

AFFIXES = [
    # (left, right, starts_with, ends_with)
    ("hello", "he", YES, NO),
    ("hello", "lo", NO, YES),
    ("hello", "hello", YES, YES),
    ("hello", "", YES, YES),
    ("hello", "hello!", NO, NO),
    ("hello", "He", NO, NO),
    ("", "", YES, YES),
    ("", "a", NO, NO),
    (None, "he", NO, NO),
    (None, "", NO, NO),
]


@pytest.mark.parametrize("op", ["starts_with", "ends_with"])
@pytest.mark.parametrize(("left", "right", "starts", "ends"), AFFIXES)
async def test_starts_with_and_ends_with_on_strings_and_null(op, left, right, starts, ends):
    expected = starts if op == "starts_with" else ends
    assert await decide(op, left, right) == expected


@pytest.mark.parametrize("op", ["starts_with", "ends_with"])
@pytest.mark.parametrize(
    ("left", "right"),
    [(["a", "b"], "a"), (12, 1), (12, "1"), ("12", 1), (True, "t"), ({"a": 1}, "a")],
)
async def test_starts_with_on_other_types_is_type_mismatch(op, left, right):
    assert await decide(op, left, right) == MISMATCH


# --- is_empty / not_empty ----------------------------------------------------------------

EMPTINESS = [
    (None, YES),
    ("", YES),
    ([], YES),
    ({}, YES),
    (" ", NO),
    ("0", NO),
    (0, NO),
    (0.0, NO),
    (False, NO),
    ([None], NO),
    ([[]], NO),
    ({"a": None}, NO),
    ("text", NO),
]


@pytest.mark.parametrize(("value", "expected"), EMPTINESS)
async def test_is_empty_holds_for_null_empty_string_array_and_object(value, expected):
    assert await decide("is_empty", value) == expected


@pytest.mark.parametrize(("value", "expected"), EMPTINESS)
async def test_not_empty_is_the_negation_of_is_empty(value, expected):
    assert await decide("not_empty", value) == _negated(expected)


# --- in / not_in -------------------------------------------------------------------------

MEMBERSHIP = [
    (1, [1, 2], YES),
    (1.0, [1], YES),
    (3, [1, 2], NO),
    ("a", ["a", "b"], YES),
    ("a", ["ab"], NO),
    (True, [1], NO),
    (1, [True], NO),
    (None, [None], YES),
    (None, [], NO),
    (None, [0, "", False], NO),
    ({"a": 1}, [{"a": 1.0}], YES),
    ([1], [[1], [2]], YES),
    ([1], [1], NO),
    ("x", [], NO),
]


@pytest.mark.parametrize(("left", "right", "expected"), MEMBERSHIP)
async def test_in_holds_when_right_array_has_an_equal_item(left, right, expected):
    assert await decide("in", left, right) == expected


@pytest.mark.parametrize(("left", "right", "expected"), MEMBERSHIP)
async def test_not_in_is_the_negation_of_in(left, right, expected):
    assert await decide("not_in", left, right) == _negated(expected)


@pytest.mark.parametrize("op", ["in", "not_in"])
@pytest.mark.parametrize(
    ("left", "right"),
    [("a", "abc"), (1, {"1": 1}), ("a", {"a": 1}), (1, 1), (1, None), (None, None), (True, True)],
)
async def test_in_with_right_not_an_array_is_type_mismatch(op, left, right):
    assert await decide(op, left, right) == MISMATCH


# --- literal operands --------------------------------------------------------------------


async def test_conditions_accept_literal_operands():
    cases = [
        case("a", cond(1, "eq", 1.0), cond("x", "in", ["x", "y"]), cond([], "is_empty")),
    ]
    result, _ = await run(_decision_flow(*cases), {"left": None, "right": None})
    assert result.outputs == {"branch": "a"}


# --- match, cases and handles ------------------------------------------------------------

TRUE = cond(1, "eq", 1)
FALSE = cond(1, "eq", 2)


@pytest.mark.parametrize(
    ("match", "conditions", "expected"),
    [
        (None, [TRUE, TRUE], YES),
        (None, [TRUE, FALSE], NO),
        ("all", [TRUE, TRUE], YES),
        ("all", [FALSE, TRUE], NO),
        ("all", [FALSE, FALSE], NO),
        ("any", [FALSE, TRUE], YES),
        ("any", [TRUE, FALSE], YES),
        ("any", [FALSE, FALSE], NO),
        ("any", [TRUE], YES),
        ("all", [FALSE], NO),
    ],
)
async def test_match_all_and_any(match, conditions, expected):
    result, _ = await run(_decision_flow(case("yes", *conditions, match=match)), {})
    assert result.outputs == {"branch": expected}


@pytest.mark.parametrize("match", [None, "all", "any"])
async def test_empty_condition_list_holds(match):
    result, _ = await run(_decision_flow(case("yes", match=match)), {})
    assert result.outputs == {"branch": "yes"}


async def test_first_matching_case_wins_and_only_its_edges_are_taken():
    doc = _decision_flow(
        case("first", FALSE),
        case("second", TRUE),
        case("third", TRUE),
        case("fourth"),
    )
    result, events = await run(doc, {})
    assert result.status == "succeeded"
    assert result.outputs == {"branch": "second"}
    assert result.nodes["check"].outputs == {"branch": "second"}
    assert finished(events, "check")["data"]["outputs"] == {"branch": "second"}
    assert result.nodes["on_second"].status == "succeeded"
    for other in ["on_first", "on_third", "on_fourth", "on_else"]:
        assert result.nodes[other].status == "skipped"
        assert result.nodes[other].attempts == 0
        assert len(events_of(events, "node.skipped", other)) == 1
        assert not events_of(events, "node.started", other)
    assert len(events_of(events, "node.started", "on_second")) == 1


async def test_no_matching_case_chooses_else():
    result, events = await run(_decision_flow(case("one", FALSE), case("two", FALSE)), {})
    assert result.outputs == {"branch": "else"}
    assert result.nodes["on_else"].status == "succeeded"
    assert result.nodes["on_one"].status == "skipped"
    assert result.nodes["on_two"].status == "skipped"
    assert events_of(events, "node.skipped", "on_one")


async def test_several_edges_on_one_handle_are_all_taken():
    nodes = [
        start(),
        if_else("check", case("go", TRUE)),
        template("x", "X"),
        template("y", "Y"),
        template("z", "Z"),
        end({"x": "{{x.text}}", "y": "{{y.text}}", "z": "{{z.text}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "x", "go"),
        edge("check", "y", "go"),
        edge("check", "z", "else"),
        edge("x", "end"),
        edge("y", "end"),
        edge("z", "end"),
    ]
    result, _ = await run(flow(nodes, edges), {})
    assert result.outputs == {"x": "X", "y": "Y", "z": None}


async def test_chosen_handle_without_edges_skips_every_outgoing_edge():
    nodes = [
        start(),
        if_else("check", case("quiet", TRUE)),
        template("x", "X"),
        end({"x": "{{x.text}}", "branch": "{{check.branch}}"}),
    ]
    edges = [edge("start", "check"), edge("check", "x", "else"), edge("x", "end")]
    result, _ = await run(flow(nodes, edges), {})
    assert result.status == "succeeded"
    assert result.outputs == {"x": None, "branch": "quiet"}
    assert result.nodes["x"].status == "skipped"


async def test_type_mismatch_fails_the_run_with_the_if_else_error():
    result, events = await run(
        _decision_flow(case("yes", cond("{{start.left}}", "gt", "{{start.right}}"))),
        {"left": 1, "right": "1"},
    )
    assert result.status == "failed"
    assert result.error["code"] == "type_mismatch"
    assert result.error["node"] == "check"
    assert result.error["attempt"] == 1
    assert result.error == result.nodes["check"].error
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["error"]["code"] == "type_mismatch"
    assert not events_of(events, "node.started", "end")
