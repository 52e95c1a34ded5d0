"""The compiled plan of a stored document: the one entry point, over the tiered cache.

Documents are immutable and keyed by content hash, so nothing here ever needs invalidating
(flows/cache.py: L1 process memory → L2 Redis → L3 `Document.plan` → compile).
"""

from __future__ import annotations

from engine import Plan
from flows.cache import plan_cache
from flows.models import Document


def plan_for(document: Document | str) -> Plan:
    """The plan of a document, given as a row or as its hash (`run.document_id`, …).

    Pass the hash when the row is not loaded yet: a cached plan then costs no query at all.
    A row's loaded columns spare the queries of L3.
    """
    if isinstance(document, str):
        return plan_cache.get(document)
    loaded = document.__dict__  # never trigger the load of a deferred column
    return plan_cache.get(document.hash, plan=loaded.get("plan"), dsl=loaded.get("dsl"))
