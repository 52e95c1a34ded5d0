"""A cancel reaches a run that is busy with CPU-bound work: an iteration whose body is pure
nodes never awaits by itself, so it gives the loop a turn every few milliseconds (without
that, the cancel waited for all of a 150,000-item iteration). On the real loop: the point is wall time."""

import asyncio

from .runflows import body, chain, end, flow, iteration, launch, start, template


def busy_flow(items):
    each = body([{"id": "item_start", "type": "start"}, template("say", "#{{index}}"),
                 end({"text": "{{say.text}}"})], chain("item_start", "say", "end"))
    return flow([start(), iteration("each", list(range(items)), each, concurrency=32),
                 end({"results": "{{each.results}}"})], chain("start", "each", "end"),
                max_steps=1_000_000)


async def test_a_cancel_stops_a_cpu_bound_iteration_at_once():
    items = 100_000  # the most an iteration takes
    run, sink, task = launch(busy_flow(items))
    loop = asyncio.get_running_loop()
    asked = []
    loop.call_later(0.05, lambda: (asked.append(loop.time()), run.cancel()))

    result = await task

    assert result.status == "cancelled"
    assert asked and loop.time() - asked[0] < 1.0  # "cancel stops every run within a second"
    said = sum(1 for e in sink.events if e["type"] == "node.started" and e["data"]["node"] == "say")
    assert said < items  # it did not run to the end first
