"""Questions to a person (docs/dsl.md §5.10): open, answered, timed out, resumed after a pause.

A question's branch waits while the rest of the run goes on; when nothing else is executing
the run stops with status `waiting` and its state lives in its events (a checkpoint). An
answer, or the deadline passing, continues it — in this process or any other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine import events as ev

if TYPE_CHECKING:
    from engine.attempts import AwaitAnswer
    from engine.plan import Plan


@dataclass(slots=True)
class OpenQuestion:
    node: str
    question: str
    options: list[dict[str, Any]]
    timeout_at: str | None  # ISO 8601, UTC: the absolute deadline
    attempts: int = 1
    inputs: dict[str, Any] | None = None

    def to_dict(self) -> ev.RunWaiting:
        return {"node": self.node, "question": self.question, "options": self.options,
                "timeout_at": self.timeout_at}

    def seconds_left(self, now: float) -> float | None:
        """Seconds from `now` (epoch seconds) to the deadline; None without one."""
        if self.timeout_at is None:
            return None
        deadline = datetime.fromisoformat(self.timeout_at.replace("Z", "+00:00")).timestamp()
        return deadline - now


@dataclass(frozen=True, slots=True)
class Answer:
    node: str
    answer: str | None
    option: str | None = None
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Answered:
    answer: Answer


class Deadline:
    """A timer's report that a question's deadline passed."""


class AnswerRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def check_answer(plan: Plan, node: str, answer: Any, option: Any) -> None:
    """Refuse an answer that does not fit the question (`invalid_answer`)."""
    index = plan.graph.ids.get(node)
    if index is None or plan.graph.nodes[index].type != "question":
        raise AnswerRefused("invalid_answer", f'"{node}" is not a question of this flow')
    if answer is not None and not isinstance(answer, str):
        raise AnswerRefused("invalid_answer", "the answer must be a string")
    options = [o["id"] for o in plan.graph.nodes[index].params.get("options") or []]
    if options:
        if option not in options:
            raise AnswerRefused("invalid_answer",
                                f'the answer must name one of the options: {", ".join(options)}')
    elif option is not None:
        raise AnswerRefused("invalid_answer", "this question has no options")


def deadline_after(now: float, seconds: float | None) -> str | None:
    """The ISO 8601 moment `seconds` after `now` (epoch seconds); None without a limit."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(now + seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class QuestionsMixin:
    """The question-handling part of a graph execution (see engine/scheduler.py)."""

    def init_questions(self, reopened: dict[str, OpenQuestion],
                       answers: dict[str, Answer]) -> None:
        self.waiting: dict[int, OpenQuestion] = {}
        self._reopened = dict(reopened)
        self._answers = dict(answers)
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def open_question(self: Any, index: int, signal: AwaitAnswer, attempts: int,
                      inputs: dict[str, Any]) -> None:
        node = self.graph.nodes[index]
        deadline = deadline_after(self.context.wall_time(), signal.timeout_s)
        question = OpenQuestion(node.id, signal.question, signal.options, deadline, attempts,
                                inputs)
        self.waiting[index] = question
        self.emit(ev.RUN_WAITING, question.to_dict())
        self._arm(index, question)

    def reopen_question(self: Any, index: int) -> bool:
        """When resuming: a question that was open takes its answer, times out, or waits on."""
        question = self._reopened.pop(self.graph.nodes[index].id, None)
        if question is None:
            return False
        self.started[index] = self.context.monotonic()
        self.attempts[index] = question.attempts
        answer = self._answers.pop(question.node, None)
        left = question.seconds_left(self.context.wall_time())
        if answer is not None:
            self._resume(index, question, answer)
        elif left is not None and left <= 0:
            self._resume(index, question, Answer(question.node, None, "timeout"))
        else:
            self.waiting[index] = question
            self._arm(index, question)
        return True

    def deliver(self: Any, answer: Answer) -> None:
        """An answer for an open question of this running execution."""
        self.mailbox().put_nowait((self.graph.ids[answer.node], Answered(answer)))

    def on_question_report(self, index: int, report: Any) -> None:
        question = self.waiting.get(index)
        if question is None:
            return  # answered already; a late timer or a second answer changes nothing
        if isinstance(report, Deadline):
            self._resume(index, question, Answer(question.node, None, "timeout"))
        else:
            self._resume(index, question, report.answer)

    def close_questions(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _arm(self: Any, index: int, question: OpenQuestion) -> None:
        left = question.seconds_left(self.context.wall_time())
        if left is None:
            return
        loop = asyncio.get_running_loop()
        self._timers[index] = loop.call_later(
            max(left, 0), self.mailbox().put_nowait, (index, Deadline()))

    def _resume(self: Any, index: int, question: OpenQuestion, answer: Answer) -> None:
        self.waiting.pop(index, None)
        timer = self._timers.pop(index, None)
        if timer is not None:
            timer.cancel()
        self.emit(ev.RUN_RESUMED, {"node": question.node, "answer": answer.answer,
                                  "option": answer.option, "by": answer.by,
                                  "elapsed_ms": self.context.elapsed_ms()})
        self._complete(index, {"answer": answer.answer, "option": answer.option}, None,
                       question.attempts, question.inputs or {})
