"""The reference clock: the due-set Redis server's clock decides "due" and leases (ADR 0012).

A process measures its offset to the reference the way NTP does: read the local clock, ask
Redis for `TIME`, read the local clock again. The server read its clock somewhere between the
two local readings, so the reference at the midpoint is the server's answer, uncertain by half
the round trip. Of a few such samples the one with the shortest round trip wins. Between
samples the estimate is carried forward on the monotonic clock, so a step of this machine's
wall clock changes nothing, and its uncertainty grows by the drift two clocks may have.

Firing uses the lower bound: `wait_until(t)` returns only once the reference time is at least
`t` whatever the error of the estimate, so a skewed local clock is never early, only later by
the uncertainty (a millisecond or two against a local Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Gauge
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
OFFSET = Gauge("duetime_clock_offset_seconds", "Reference (Redis TIME) minus this machine's clock")
UNCERTAINTY = Gauge("duetime_clock_uncertainty_seconds",
                    "Half the round trip of the sample the reference estimate rests on")

# How fast two clocks may drift apart between samples: NTP slews a clock by at most 500 ppm,
# and a free-running oscillator is far better than that.
DRIFT = 500e-6
# An estimate older than this is refreshed before it is used (the background sync keeps it
# fresher; this covers a process that does not run it).
MAX_AGE_SECONDS = 5.0
SAMPLES = 3
# The uncertainty above which a sample is reported: firing stays never-early, but late by this.
WARN_UNCERTAINTY_MS = 50.0

RemoteClock = Callable[[], Awaitable[float]]  # the reference instant, epoch ms


def wall_ms() -> float:
    return time.time_ns() / 1e6


@dataclass(frozen=True)
class Sample:
    """The reference at one local monotonic instant, and the error it may have then."""

    reference_ms: float
    monotonic: float  # local monotonic seconds at the midpoint of the round trip
    offset_ms: float  # reference minus local wall clock
    error_ms: float  # half the round trip

    @classmethod
    def measure(cls, before: tuple[float, float], remote_ms: float,
                after: tuple[float, float]) -> Sample:
        """From (wall ms, monotonic s) read before and after asking the reference."""
        (wall0, mono0), (wall1, mono1) = before, after
        return cls(reference_ms=remote_ms, monotonic=(mono0 + mono1) / 2,
                   offset_ms=remote_ms - (wall0 + wall1) / 2,
                   error_ms=max(0.0, (mono1 - mono0) * 1000 / 2))

    def at(self, monotonic: float) -> tuple[float, float]:
        """The reference estimate at a later monotonic instant and its error then."""
        elapsed = monotonic - self.monotonic
        return self.reference_ms + elapsed * 1000, self.error_ms + abs(elapsed) * 1000 * DRIFT


class ReferenceClock:
    """This process's view of the reference clock (see the module docstring)."""

    def __init__(self, remote: RemoteClock, local: Callable[[], float] = wall_ms,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.remote, self.local, self.monotonic = remote, local, monotonic
        self.sample: Sample | None = None
        self._syncing = asyncio.Lock()  # hundreds of runs finding it stale share one sync

    async def measure(self) -> Sample:
        before = (self.local(), self.monotonic())
        remote_ms = await self.remote()
        return Sample.measure(before, remote_ms, (self.local(), self.monotonic()))

    async def sync(self) -> Sample:
        """Take a few samples and keep the one with the shortest round trip.

        The estimate in use stays if, carried forward to now, it is still the surer one (the
        new samples' replies waited behind a busy event loop) and is young enough not to be
        found stale before the next sync.
        """
        samples = [await self.measure() for _ in range(SAMPLES)]
        best = min(samples, key=lambda s: s.error_ms)
        kept = self.sample
        if kept is not None and self.monotonic() - kept.monotonic < MAX_AGE_SECONDS / 2:
            _, carried_error = kept.at(best.monotonic)
            if carried_error < best.error_ms:
                return kept
        self.sample = best
        OFFSET.set(best.offset_ms / 1000)
        UNCERTAINTY.set(best.error_ms / 1000)
        if best.error_ms > WARN_UNCERTAINTY_MS:
            log.warning("reference clock uncertain", extra={"error_ms": best.error_ms,
                                                            "offset_ms": best.offset_ms})
        return best

    def _stale(self) -> bool:
        return self.sample is None or self.monotonic() - self.sample.monotonic > MAX_AGE_SECONDS

    async def current(self) -> Sample:
        if self._stale():
            async with self._syncing:
                if self._stale():
                    try:
                        await self.sync()
                    except (RedisError, OSError):
                        if self.sample is None:
                            raise
                        # An old estimate is still sound: its error has grown with its age.
        assert self.sample is not None
        return self.sample

    async def now_ms(self) -> int:
        """The best estimate of the reference time now (for leases and timestamps)."""
        estimate, _ = (await self.current()).at(self.monotonic())
        return int(estimate)

    async def earliest_ms(self) -> float:
        """A time the reference has certainly reached."""
        estimate, error = (await self.current()).at(self.monotonic())
        return estimate - error

    async def wait_until(self, instant_ms: float) -> None:
        """Return once the reference time is certainly at or past `instant_ms`."""
        while (left := instant_ms - await self.earliest_ms()) > 0:
            # The error grows while we sleep, hence the drift allowance on top.
            await asyncio.sleep(left * (1 + DRIFT) / 1000)

    async def keep_synced(self, until: asyncio.Event, every_seconds: float = 0.25) -> None:
        """Refresh the estimate until `until` is set; a failed sample keeps the last one.

        Every wait for a due instant adds the drift allowance grown since the last sample
        (500 ppm: 0.5 ms a second later, 0.25 ms on average at one sync a second); syncing four
        times a second takes that to ~0.06 ms for 12 `TIME` calls a second."""
        while not until.is_set():
            try:
                await self.sync()
            except (RedisError, OSError) as exc:
                log.warning("reference clock not sampled", extra={"error": repr(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), timeout=every_seconds)
