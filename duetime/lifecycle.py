"""Process lifecycle: a stop event set by SIGTERM/SIGINT, supervised tasks, a grace period.

Workers watch `stop` and finish or hand back their in-flight work themselves; only after the
grace period are they cancelled. A task that dies stops the whole service loudly rather than
leaving it half-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, name: str, grace_seconds: float = 15.0) -> None:
        self.name = name
        self.grace_seconds = grace_seconds
        self.stop = asyncio.Event()
        self.ready = False
        self.checks: dict[str, Callable[[], Awaitable[bool]]] = {}

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("stop requested", extra={"signal": sig.name})
        self.stop.set()

    async def readiness(self) -> dict[str, bool]:
        results = {"started": self.ready}
        for name, check in self.checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), timeout=2)
            except Exception:
                results[name] = False
        return results

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True when the service should stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        return self.stop.is_set()

    async def supervise(self, tasks: dict[str, Coroutine[Any, Any, None]]) -> None:
        """Run tasks until all end; if one fails, stop the rest and re-raise."""
        running = {asyncio.create_task(coro, name=name): name for name, coro in tasks.items()}
        failure: BaseException | None = None
        try:
            pending = set(running)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.cancelled():
                        continue
                    exc = task.exception()
                    if exc is not None and failure is None:
                        failure = exc
                        log.error("task failed, stopping", exc_info=exc,
                                  extra={"task": running[task]})
                        self.stop.set()
                if self.stop.is_set() and pending:
                    _, pending = await asyncio.wait(pending, timeout=self.grace_seconds)
                    for task in pending:
                        log.warning("task did not stop in time, cancelling",
                                    extra={"task": running[task]})
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    pending = set()
        finally:
            for task in running:
                task.cancel()
        if failure is not None:
            raise failure
