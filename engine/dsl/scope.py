"""What a reference may name from a given node: its graph, then enclosing graphs (docs/dsl.md §3, §5.9)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.references import ParsedReference

SYS_FIELDS = ("run_id", "flow", "flow_version", "started_at")
SECRETS = "secrets"  # `{{secrets.NAME}}`: the run owner's secret NAME (docs/dsl.md §3)
SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")


class ReferenceProblem(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class GraphScope:
    """The names one graph offers: node ids, their declared outputs and ancestor bit sets.

    A body graph of an iteration has a `parent` scope and knows the index of its iteration
    node there (`owner`), whose ancestors it may also reference.
    """

    ids: dict[str, int]
    outputs: list[dict[str, Any] | None]
    ancestors: list[int] | None = None  # None while unknown (a cycle)
    parent: GraphScope | None = None
    owner: int | None = None

    def is_ancestor(self, source: int, target: int) -> bool | None:
        if self.ancestors is None:
            return None
        return bool((self.ancestors[target] >> source) & 1)

    def visible_anywhere(self, name: str) -> bool:
        scope: GraphScope | None = self
        while scope is not None:
            if name in scope.ids:
                return True
            scope = scope.parent
        return False

    def outer_ancestor(self, name: str) -> bool:
        """Whether `name` is an ancestor of this body's iteration node in an enclosing graph."""
        scope, owner = self.parent, self.owner
        while scope is not None and owner is not None:
            if name in scope.ids and scope.is_ancestor(scope.ids[name], owner):
                return True
            scope, owner = scope.parent, scope.owner
        return False

    def classify(self, ref: ParsedReference, node: int | None, input_names: frozenset[str],
                 template: bool) -> tuple[str, int]:
        """(kind, depth) of a reference made by node `node`; raise ReferenceProblem if invalid.

        With `node` None (a node that has no place in the graph) ancestry is not checked.
        """
        head, path = ref.head, ref.path
        if head == "sys":
            if not path:
                raise ReferenceProblem("bad_reference", f"{ref} names no field of sys")
            if path[0] not in SYS_FIELDS:
                raise ReferenceProblem("unknown_output",
                                       f"{ref}: sys has {', '.join(SYS_FIELDS)}")
            return "sys", 0
        if head == SECRETS and not self.visible_anywhere(head):
            # A node may be called "secrets" (only sys, item and index are reserved): its
            # outputs keep their name, and such a flow cannot reference secrets.
            if len(path) != 1 or not isinstance(path[0], str) or not SECRET_NAME.match(path[0]):
                raise ReferenceProblem(
                    "bad_reference", f"{ref}: a secret is named as {{{{secrets.NAME}}}}, NAME "
                                     "in capitals, digits and _ (at most 64), starting with a letter")
            return "secret", 0
        if head in ("item", "index"):
            if self.parent is None:
                raise ReferenceProblem("unknown_reference",
                                       f"{ref}: {head} exists only inside an iteration body")
            return head, 0
        if template and head in input_names:
            if self.visible_anywhere(head):
                raise ReferenceProblem(
                    "ambiguous_reference",
                    f'{ref}: "{head}" is both an input of this node and a node id')
            return "input", 0
        scope: GraphScope | None = self
        at, depth = node, 0
        while scope is not None:
            if head in scope.ids:
                return self._node_reference(ref, scope, at, depth)
            at, scope, depth = scope.owner, scope.parent, depth + 1
        raise ReferenceProblem("unknown_reference", f'{ref}: there is no node "{head}"')

    def _node_reference(self, ref: ParsedReference, scope: GraphScope, at: int | None,
                        depth: int) -> tuple[str, int]:
        head = ref.head
        target = scope.ids[head]
        if depth == 0 and self.outer_ancestor(head):
            raise ReferenceProblem(
                "ambiguous_reference",
                f'{ref}: "{head}" names a node of this body and one outside it')
        if not ref.path:
            raise ReferenceProblem("bad_reference", f"{ref} names no output of {head}")
        if at is not None and scope.is_ancestor(target, at) is False:
            raise ReferenceProblem("not_an_ancestor",
                                   f'{ref}: no path leads from "{head}" to this node')
        declared = scope.outputs[target]
        output = ref.path[0]
        if declared is not None and output not in declared:
            names = ", ".join(sorted(declared)) or "no outputs"
            raise ReferenceProblem("unknown_output",
                                   f'{ref}: "{head}" has {names}, not "{output}"')
        return "node", depth
