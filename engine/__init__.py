"""Astron's workflow engine: DSL validation, compilation and an asyncio scheduler.

Pure Python with no Django: the platform reaches it through this package's public names and
gives it the world through the ports of `engine.ports`.
"""

from engine.checkpoint import Checkpoint
from engine.compile import compile_plan, document_digest
from engine.dsl.schema import document_json_schema
from engine.dsl.validate import validate_document
from engine.errors import DocumentInvalid, InputsInvalid, NodeError, Problem
from engine.nodes import NodeCall, NodeStrategy, Registry, default_registry
from engine.plan import Plan
from engine.ports import EventSink, Services
from engine.results import NodeResult, RunResult
from engine.run import Run

__all__ = [
    "Checkpoint",
    "DocumentInvalid",
    "EventSink",
    "InputsInvalid",
    "NodeCall",
    "NodeError",
    "NodeResult",
    "NodeStrategy",
    "Plan",
    "Problem",
    "Registry",
    "Run",
    "RunResult",
    "Services",
    "compile_plan",
    "default_registry",
    "document_digest",
    "document_json_schema",
    "validate_document",
]
