"""duetime.loops: the ready-wait probe measures how long queued work holds a callback back."""

from __future__ import annotations

import asyncio
import time

from duetime.loops import READY_WAIT, watch_ready_wait


def _samples() -> dict[str, float]:
    return {s.labels.get("le", s.name): s.value for metric in READY_WAIT.collect()
            for s in metric.samples if s.name.endswith(("_bucket", "_count"))}


def test_a_busy_loop_shows_as_ready_wait() -> None:
    """While other work holds the loop 30 ms at a time, the probe's callback waits that long;
    on an idle loop it runs at once."""
    loop = asyncio.new_event_loop()
    try:
        before = _samples()
        watch_ready_wait(loop, every=0.001)

        def hog(left: int) -> None:
            # Work that keeps the loop from everything else, queued again each time: whatever
            # is made ready meanwhile runs only after the next 30 ms of it.
            time.sleep(0.03)
            if left:
                loop.call_soon(hog, left - 1)

        async def main() -> None:
            await asyncio.sleep(0.02)  # a few idle probes
            loop.call_soon(hog, 3)
            await asyncio.sleep(0.2)

        loop.run_until_complete(main())
        after = _samples()
    finally:
        loop.close()
    grew = {key: after[key] - before.get(key, 0.0) for key in after}
    assert grew["0.001"] >= 1  # idle: the probe ran within a millisecond
    assert grew["+Inf"] - grew["0.025"] >= 1  # behind the hog: held at least 25 ms
