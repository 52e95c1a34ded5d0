"""Run a flow from the command line and follow it event by event.

The run executes on this process's executor thread (services hand it over on commit), or
with RUN_EXECUTOR=celery on a worker (rung through the broker); the command reads its events
back from the database, as any other watcher would.

Exit codes: 0 succeeded, 1 failed or cancelled, 2 bad input (nothing started), 3 the run
waits for an answer (give it through the API; any Astron process then continues the run).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from engine import events as ev
from flows import services
from flows.errors import ServiceError
from flows.execution.executor import executor
from flows.management.settling import settled
from flows.models import Run, RunEvent
from flows.plans import plan_for

POLL_S = 0.1
EVENTS_PER_READ = 500
SHORT = 100  # characters of an event's data shown on its line

SUCCEEDED, FAILED, BAD_INPUT, WAITING = 0, 1, 2, 3
SERVER = "http://127.0.0.1:8000"


class Command(BaseCommand):
    help = ("Run a flow and print its events as they happen, then its status and outputs as "
            "JSON. Exit code 0 succeeded, 1 failed or cancelled, 2 bad input, 3 waiting for "
            "an answer.")

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # --version is the flow version here, not Django's: let ours replace the built-in one.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="the flow's slug")
        parser.add_argument("--input", action="append", default=[], dest="inputs",
                            metavar="KEY=VALUE",
                            help="an input; VALUE is JSON when it parses as JSON, else a string "
                                 "(n=3 is a number, name=Ada a string, tags='[\"a\"]' a list)")
        parser.add_argument("--user", help="who runs it (default: the only superuser, or admin)")
        parser.add_argument("--version", dest="version", default=None,
                            help="draft, published or a version number (default: published "
                                 "when there is one, else the draft)")

    def handle(self, *args: Any, slug: str, inputs: list[str], user: str | None,
               version: str | None, **options: Any) -> None:
        values = parse_inputs(inputs)
        owner = owner_of_runs(user)
        executor.maintenance = False  # run this flow only; leave other runs to the servers
        if transaction.get_connection().in_atomic_block:
            raise CommandError("run_flow cannot run inside a transaction: the run starts when "
                               "it commits", returncode=BAD_INPUT)
        try:
            flow = services.flow_of(owner, slug)
            run, _ = services.start_run(owner, flow, values, version=parse_version(version),
                                        trigger={"type": "command"})
        except ServiceError as error:
            raise refused(error) from error
        try:
            run = self.follow(run)
        finally:
            executor.stop()
        self.conclude(run)

    def follow(self, run: Run) -> Run:
        """Print the run's events until it finishes or waits; Ctrl-C cancels it."""
        self.stdout.write(f"Run {run.pk} of {run.flow.slug} (version {run.version_label}), "
                          f"owner {run.owner.username}")
        follower = EventPrinter(self, run)
        try:
            return follower.until_settled()
        except KeyboardInterrupt:
            self.stderr.write("Interrupted: cancelling the run (Ctrl-C again leaves it running "
                              "for another worker to continue).")
            with contextlib.suppress(ServiceError):  # it finished meanwhile
                services.cancel_run(run)
            return follower.until_settled()

    def conclude(self, run: Run) -> None:
        if run.status == Run.Status.WAITING:
            for question in run.waiting:
                options = ", ".join(f'{o["id"]} ({o.get("label", o["id"])})'
                                    for o in question.get("options") or [])
                self.stdout.write(f'The run waits for an answer to "{question["node"]}": '
                                  f'{question["question"]}')
                if options:
                    self.stdout.write(f"    options: {options}")
                if question.get("timeout_at"):
                    self.stdout.write(f"    unanswered, it times out at {question['timeout_at']}")
            example = {"answer": "your answer", "node": run.waiting[0]["node"] if run.waiting else "…"}
            if run.waiting and run.waiting[0].get("options"):
                example["option"] = run.waiting[0]["options"][0]["id"]
            self.stdout.write("Answer it through the API (a key: manage.py create_token); the "
                              "server continues the run:")
            self.stdout.write(f"    curl -X POST {SERVER}/api/runs/{run.pk}/answer/ "
                              '-H "Authorization: Token $KEY" -H "Content-Type: '
                              f"application/json\" -d '{json.dumps(example)}'")
        summary = {"run": str(run.pk), "status": run.status, "outputs": run.outputs}
        if run.answer is not None:
            summary["answer"] = run.answer
        if run.error is not None:
            summary["error"] = run.error
        self.stdout.write(json.dumps(summary, ensure_ascii=False))
        if run.status == Run.Status.WAITING:
            raise CommandError(f"the run {run.pk} waits for an answer", returncode=WAITING)
        if run.status != Run.Status.SUCCEEDED:
            message = (run.error or {}).get("message") or "no error recorded"
            raise CommandError(f"the run {run.status}: {message}", returncode=FAILED)


class EventPrinter:
    """Prints a run's stored events in order (seq > the last printed), with progress."""

    def __init__(self, command: BaseCommand, run: Run):
        self.command = command
        self.run_id = run.pk
        self.last_seq = 0
        self.nodes_done = 0
        self.node_count = len(plan_for(run.document_id).graph.nodes)

    def until_settled(self) -> Run:
        while True:
            # The row first: a status it shows was written with the events it implies.
            row = settled(self.run_id)
            printed = self.print_new_events()
            if row is not None and self.last_seq >= row.last_seq:
                return Run.objects.select_related("flow").get(pk=self.run_id)
            if printed < EVENTS_PER_READ:
                time.sleep(POLL_S)

    def print_new_events(self) -> int:
        events = list(RunEvent.objects.filter(run_id=self.run_id, seq__gt=self.last_seq)
                      .order_by("seq")[:EVENTS_PER_READ])
        for event in events:
            if event.scope is None and event.type in (ev.NODE_FINISHED, ev.NODE_SKIPPED):
                self.nodes_done += 1
            self.command.stdout.write(self.line(event))
            self.last_seq = event.seq
        return len(events)

    def line(self, event: RunEvent) -> str:
        data = dict(event.data)
        node = data.pop("node", None) or ""
        if event.scope is not None:
            node = f"{event.scope}[{event.item}].{node}"
        if event.type in (ev.NODE_FINISHED, ev.RUN_FINISHED):
            status = data.pop("status", "")
            data = {k: v for k, v in data.items() if v is not None and k != "elapsed_ms"}
            short = f"{status} {compact(data)}" if data else status
        elif event.type == ev.NODE_STARTED:
            data.pop("type", None)
            short = compact(data)
        else:
            short = compact(data) if data else ""
        progress = f"[{self.nodes_done}/{self.node_count}]"
        return f"{progress:>7} {event.seq:>4} {event.type:<14} {node:<16} {short}".rstrip()


def compact(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= SHORT else text[:SHORT - 1] + "…"


def parse_inputs(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a value is JSON when it parses as JSON, else the string itself."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise CommandError(f"--input {pair!r}: write it as KEY=VALUE", returncode=BAD_INPUT)
        if key in inputs:
            raise CommandError(f"--input {key} is given twice", returncode=BAD_INPUT)
        inputs[key] = json_or_text(text)
    return inputs


def json_or_text(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(constant)  # NaN and Infinity are not JSON: keep them as text

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        return text


def parse_version(version: str | None) -> Any:
    if version is None or version in ("draft", "published"):
        return version
    if version.isdigit():
        return int(version)
    raise CommandError(f'--version {version!r}: say draft, published or a version number',
                       returncode=BAD_INPUT)


def owner_of_runs(username: str | None) -> Any:
    """The --user, else the only active superuser, else the user `admin`."""
    users = get_user_model().objects.filter(is_active=True)
    if username is not None:
        owner = users.filter(username=username).first()
        if owner is None:
            raise CommandError(f'there is no active user "{username}"', returncode=BAD_INPUT)
        return owner
    superusers = list(users.filter(is_superuser=True)[:2])
    if len(superusers) == 1:
        return superusers[0]
    owner = users.filter(username="admin").first()
    if owner is None:
        raise CommandError("say whose flow to run with --user (there is no single superuser "
                           "and no user admin)", returncode=BAD_INPUT)
    return owner


def refused(error: ServiceError) -> CommandError:
    """A service's refusal as the command's error, every problem on its own line."""
    lines = [error.message]
    for problem in error.details:
        if isinstance(problem, dict):
            where = problem.get("path") or "/"
            lines.append(f"    {where}: {problem.get('code')}: {problem.get('message')}")
        else:
            lines.append(f"    {problem}")
    return CommandError("\n".join(lines), returncode=BAD_INPUT)
