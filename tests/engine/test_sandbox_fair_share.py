"""Owners share the code sandbox fairly: one owner's burst of code nodes queues behind
itself, and another owner's node runs at the next free process (engine/sandbox/fair.py)."""

from __future__ import annotations

import asyncio

import pytest

from engine.sandbox.fair import FairSlots

from .sandboxes import SMALL, make_sandbox


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_freed_slot_goes_to_the_tenant_holding_the_fewest():
    slots = FairSlots(2)
    order: list[str] = []
    gates = {}

    async def job(tenant: str, name: str) -> None:
        async with slots.held(tenant):
            order.append(name)
            gates[name] = asyncio.Event()
            await gates[name].wait()

    tasks = [asyncio.create_task(job("a", f"a{i}")) for i in range(6)]
    await settle()
    tasks.append(asyncio.create_task(job("b", "b0")))
    tasks.append(asyncio.create_task(job("c", "c0")))
    await settle()
    assert order == ["a0", "a1"]  # a holds both slots; four of a's and b, c wait
    assert slots.waiting("a") == 4

    gates["a0"].set()
    await settle()
    assert order[-1] == "b0"  # not a2, which had waited longer
    gates["a1"].set()
    await settle()
    assert order[-1] == "c0"  # a and c hold none now; c was never served
    gates["b0"].set()
    await settle()
    assert order[-1] == "a2"  # nobody else waits: a's queue goes on, in its order
    for name in ("c0", "a2", "a3", "a4", "a5"):
        gates[name].set()
        await settle()
    await asyncio.gather(*tasks)
    assert order == ["a0", "a1", "b0", "c0", "a2", "a3", "a4", "a5"]
    assert slots.holding("a") == 0


async def test_among_tenants_holding_as_many_the_earliest_waiter_goes_first():
    """None was served yet, so arrival decides."""
    slots = FairSlots(1)
    await slots.acquire("x")
    waiters = [asyncio.create_task(slots.acquire(t)) for t in ("b", "c", "d")]
    await settle()
    slots.release("x")
    await settle()
    assert [w.done() for w in waiters] == [True, False, False]
    slots.release("b")
    await settle()
    assert [w.done() for w in waiters] == [True, True, False]
    slots.release("c")
    await asyncio.gather(*waiters)


async def test_a_cancelled_waiter_gives_up_its_place_and_never_leaks_a_slot():
    slots = FairSlots(1)
    await slots.acquire("a")
    cancelled = asyncio.create_task(slots.acquire("b"))
    await settle()
    cancelled.cancel()
    await settle()
    assert cancelled.cancelled() and slots.waiting("b") == 0

    # Cancelled in the moment it was handed the slot: the slot passes on.
    handed = asyncio.create_task(slots.acquire("c"))
    await settle()
    slots.release("a")
    handed.cancel()
    await settle()
    assert handed.cancelled() and slots.holding("c") == 0
    await asyncio.wait_for(slots.acquire("d"), 1)  # the slot is free again
    assert slots.holding("d") == 1


@pytest.mark.parametrize("isolation", ["process"])
async def test_one_owners_burst_does_not_queue_another_owners_code_node(isolation):
    """A pool of one process: owner a starts five nodes, then owner b one. b's runs second,
    not sixth."""
    sandbox = await make_sandbox(isolation, workers=1)
    finished: list[str] = []
    code = "import time\ndef main(name):\n    time.sleep(0.1)\n    return {'name': name}"

    async def node(tenant: str, name: str) -> None:
        outcome = await sandbox.for_tenant(tenant).run(code, {"name": name}, SMALL)
        assert outcome.error is None, outcome.error
        finished.append(outcome.result["name"])

    try:
        burst = [asyncio.create_task(node("a", f"a{i}")) for i in range(5)]
        await settle()
        other = asyncio.create_task(node("b", "b0"))
        await asyncio.gather(*burst, other)
    finally:
        await sandbox.close()
    assert finished == ["a0", "b0", "a1", "a2", "a3", "a4"]
