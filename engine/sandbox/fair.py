"""`FairSlots`: a fixed number of slots shared fairly between tenants (the sandbox's owners).

A plain semaphore serves waiters in arrival order, so one owner who starts 300 code nodes
makes every other owner's code node wait behind all of them. Here a freed slot goes to the
waiting tenant that holds the fewest slots, and among those to the one served longest ago
(round robin; then the earliest waiter): a burst queues behind itself, and a tenant that
arrives later runs at the next free slot.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, deque


class FairSlots:
    """`size` slots for tenants named by strings; `async with slots.held(tenant): ...`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._held: Counter[str] = Counter()
        self._waiting: dict[str, deque[tuple[int, asyncio.Future[None]]]] = {}
        self._arrivals = itertools.count()
        self._turns = itertools.count()
        self._last_turn: dict[str, int] = {}  # of the tenants holding or waiting

    def held(self, tenant: str) -> _Held:
        return _Held(self, tenant)

    def holding(self, tenant: str) -> int:
        """How many slots `tenant` holds now."""
        return self._held[tenant]

    def waiting(self, tenant: str) -> int:
        """How many of `tenant`'s jobs wait for a slot now."""
        return len(self._waiting.get(tenant, ()))

    async def acquire(self, tenant: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._arrivals), future)
        self._waiting.setdefault(tenant, deque()).append(entry)
        self._hand_over()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(tenant)  # handed a slot as it was cancelled: pass it on
            else:
                self._forget(tenant, entry)
            raise

    def release(self, tenant: str) -> None:
        self._held[tenant] -= 1
        if self._held[tenant] <= 0:
            del self._held[tenant]
            if tenant not in self._waiting:
                self._last_turn.pop(tenant, None)
        self._free += 1
        self._hand_over()

    def _forget(self, tenant: str, entry: tuple[int, asyncio.Future[None]]) -> None:
        queue = self._waiting.get(tenant)
        if queue is not None and entry in queue:
            queue.remove(entry)
            if not queue:
                del self._waiting[tenant]
                if tenant not in self._held:
                    self._last_turn.pop(tenant, None)

    def _hand_over(self) -> None:
        while self._free > 0 and self._waiting:
            tenant = min(self._waiting, key=lambda name: (
                self._held[name], self._last_turn.get(name, -1), self._waiting[name][0][0]))
            queue = self._waiting[tenant]
            _, future = queue.popleft()
            if not queue:
                del self._waiting[tenant]
            self._free -= 1
            self._held[tenant] += 1
            self._last_turn[tenant] = next(self._turns)
            future.set_result(None)


class _Held:
    __slots__ = ("_slots", "_tenant")

    def __init__(self, slots: FairSlots, tenant: str) -> None:
        self._slots, self._tenant = slots, tenant

    async def __aenter__(self) -> None:
        await self._slots.acquire(self._tenant)

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release(self._tenant)
