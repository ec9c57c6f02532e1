"""Fair sharing of the executor between tenants and between target hosts (issue 7, hole 6).

One tenant aiming many runs at a target that never answers must not hold every slot of the
executor, nor every connection: each tenant has a cap on its runs in flight, and a run of a
tenant at its cap is set aside without holding a shared slot, so the runs of other tenants
behind it in the partition still start on time. Connections to one host are capped the same
way, and a call's timeout starts only once it has its connection slot.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import orjson
from aiokafka import ConsumerRecord

T = TypeVar("T")


def tenant_of(msg: ConsumerRecord[bytes, bytes]) -> str:
    """The tenant of a run request or an alert, read before it is handled ("" when
    unreadable: such a message is dead-lettered or skipped by its handler)."""
    try:
        value = orjson.loads(msg.value or b"")
    except orjson.JSONDecodeError:
        return ""
    tenant = value.get("tenant") if isinstance(value, dict) else None
    return tenant if isinstance(tenant, str) else ""


class TenantShare(Generic[T]):
    """Counts each tenant's runs in flight; a run past its tenant's cap waits aside.

    A waiting run is handed the place of the next run of its tenant to finish (`handover`),
    so it never competes for a shared slot while it waits. At most `max_waiting` runs wait
    in all; past that, `wait_aside` blocks the caller (back-pressure on the intake).
    """

    def __init__(self, cap: int, max_waiting: int) -> None:
        self.cap = cap
        self.running: dict[str, int] = {}
        self.waiting: dict[str, deque[T]] = {}
        self.room = asyncio.Semaphore(max_waiting)

    def admit(self, tenant: str) -> bool:
        """Take a place for `tenant` if it is below its cap."""
        if self.running.get(tenant, 0) >= self.cap:
            return False
        self.running[tenant] = self.running.get(tenant, 0) + 1
        return True

    async def wait_aside(self, tenant: str, item: T) -> bool:
        """Set `item` aside until a run of `tenant` ends; False if it was admitted meanwhile
        (the caller runs it now)."""
        await self.room.acquire()
        # No await between the check and the append: a tenant whose last run ended while we
        # waited for room must not leave the item waiting for a handover that never comes.
        if self.admit(tenant):
            self.room.release()
            return False
        self.waiting.setdefault(tenant, deque()).append(item)
        return True

    def handover(self, tenant: str) -> T | None:
        """A run of `tenant` ended: its place goes to the tenant's next waiting item, if any."""
        queue = self.waiting.get(tenant)
        if queue:
            item = queue.popleft()
            if not queue:
                del self.waiting[tenant]
            self.room.release()
            return item
        self.leave(tenant)
        return None

    def leave(self, tenant: str) -> None:
        """A run of `tenant` ended and nothing takes its place."""
        left = self.running.get(tenant, 0) - 1
        if left > 0:
            self.running[tenant] = left
        else:
            self.running.pop(tenant, None)

    def waiting_count(self) -> int:
        return sum(len(q) for q in self.waiting.values())


class ConnectionSlots:
    """At most `total` calls at once, at most `per_host` of them to one host (an address, the
    caller's key: ADR 0062).

    The same limits as the connection pool's, taken before a call starts: a call waiting for
    a busy host holds no shared slot, and the pool never makes a call wait on its clock.
    `report` is told how many calls wait for a slot each time that changes (a gauge's `set`).
    """

    def __init__(self, total: int, per_host: int,
                 report: Callable[[int], None] | None = None) -> None:
        self.total = asyncio.Semaphore(total)
        self.per_host = per_host
        self.hosts: dict[tuple[str, str, int], tuple[asyncio.Semaphore, int]] = {}
        self.waiting = 0  # calls that want a slot and have none yet (a host's or the pool's)
        self.report = report

    def _waiting(self, change: int) -> None:
        self.waiting += change
        if self.report is not None:
            self.report(self.waiting)

    @asynccontextmanager
    async def slot(self, key: tuple[str, str, int]) -> AsyncIterator[None]:
        host, users = self.hosts.get(key, (asyncio.Semaphore(self.per_host), 0))
        self.hosts[key] = (host, users + 1)
        self._waiting(+1)
        holding = False
        try:
            async with host, self.total:
                self._waiting(-1)
                holding = True
                yield
        finally:
            if not holding:  # cancelled while it waited
                self._waiting(-1)
            sem, users = self.hosts[key]
            if users > 1:
                self.hosts[key] = (sem, users - 1)
            else:
                del self.hosts[key]  # bounded by the hosts in use, not every host ever called
