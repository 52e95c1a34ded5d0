"""Node types: one strategy per type, gathered in a registry."""

from functools import cache

from engine.nodes.base import NodeCall, NodeStrategy, Registry
from engine.nodes.code import CodeNode
from engine.nodes.http import HttpNode
from engine.nodes.iteration import IterationNode
from engine.nodes.llm import LlmNode
from engine.nodes.pure import AggregateNode, EndNode, IfElseNode, StartNode, TemplateNode
from engine.nodes.question import QuestionNode
from engine.nodes.subflow import SubflowNode
from engine.nodes.wait import WaitNode


def default_registry() -> Registry:
    """A registry of every built-in node type."""
    return Registry([StartNode(), EndNode(), TemplateNode(), IfElseNode(), AggregateNode(),
                     WaitNode(), CodeNode(), HttpNode(), LlmNode(), QuestionNode(),
                     IterationNode(), SubflowNode()])


__all__ = ["NodeCall", "NodeStrategy", "Registry", "default_registry", "shared_default_registry"]


@cache
def shared_default_registry() -> Registry:
    """One default registry for the process, for callers that do not bring their own.

    Strategies are stateless, so sharing is safe; never `register` into this one.
    """
    return default_registry()
