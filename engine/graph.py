"""Graph algorithms over node indexes, all linear in nodes + edges and free of recursion.

No path is ever enumerated: a chain of diamonds has exponentially many paths but only
linearly many nodes and edges, and every function here is linear (ancestor sets are bit sets).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

Adjacency = Sequence[Sequence[int]]


def topological_order(count: int, successors: Adjacency) -> list[int] | None:
    """Kahn's order of the nodes, or None when the graph has a cycle."""
    indegree = [0] * count
    for targets in successors:
        for target in targets:
            indegree[target] += 1
    queue = deque(i for i in range(count) if indegree[i] == 0)
    order: list[int] = []
    while queue:
        node = queue.popleft()
        order.append(node)
        for target in successors[node]:
            indegree[target] -= 1
            if indegree[target] == 0:
                queue.append(target)
    return order if len(order) == count else None


def cycles(count: int, successors: Adjacency) -> list[list[int]]:
    """The strongly connected components that hold a cycle (Tarjan, iterative)."""
    index_of = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    stack: list[int] = []
    found: list[list[int]] = []
    counter = 0
    for root in range(count):
        if index_of[root] != -1:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            targets = successors[node]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if index_of[target] == -1:
                    work.append((target, 0))
                elif on_stack[target]:
                    low[node] = min(low[node], index_of[target])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in successors[node]:
                    found.append(sorted(component))
    return found


def reachable(count: int, roots: Sequence[int], successors: Adjacency) -> list[bool]:
    seen = [False] * count
    queue = deque(roots)
    for root in roots:
        seen[root] = True
    while queue:
        node = queue.popleft()
        for target in successors[node]:
            if not seen[target]:
                seen[target] = True
                queue.append(target)
    return seen


def ancestor_sets(order: Sequence[int], predecessors: Adjacency) -> list[int]:
    """For each node, a bit set (an int) of the nodes from which a path leads to it."""
    ancestors = [0] * len(order)
    for node in order:
        bits = 0
        for source in predecessors[node]:
            bits |= ancestors[source] | (1 << source)
        ancestors[node] = bits
    return ancestors
