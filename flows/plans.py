"""Compiled plans of stored documents: compiled once, kept in the database and in memory.

Documents are immutable and keyed by content hash, so nothing here ever needs invalidating.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from engine import Plan, compile_plan
from flows.models import Document

_MEMORY_LIMIT = 256


class PlanMemory:
    """A small LRU of plans by document hash, safe to share between threads."""

    def __init__(self, limit: int = _MEMORY_LIMIT):
        self.limit = limit
        self._plans: OrderedDict[str, Plan] = OrderedDict()
        self._lock = Lock()

    def get(self, key: str) -> Plan | None:
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
            return plan

    def put(self, key: str, plan: Plan) -> None:
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self.limit:
                self._plans.popitem(last=False)


memory = PlanMemory()


def plan_for(document: Document) -> Plan:
    """The plan of a stored document: from memory, the document's row, or compiled now."""
    plan = memory.get(document.hash)
    if plan is not None:
        return plan
    if document.plan is not None:
        plan = Plan.from_dict(document.plan)
    else:
        plan = compile_plan(document.dsl)
        Document.objects.filter(hash=document.hash, plan__isnull=True).update(plan=plan.to_dict())
    memory.put(document.hash, plan)
    return plan
