"""Catch-up: which firings were missed because the system was down, and which still fire.

Shared by the loaders (writer, watcher) and the dispatcher (ADR 0011). A firing is *missed*
only when its instant fell inside an outage — a gap in the dispatching path's heartbeat (or in
the watcher's loading) recorded per due-set shard — never because it was handled late while
the system was busy. A missed recurring firing then follows the job's policy:

- `none`: not made;
- `latest`: only the job's newest firing of that outage is made (the one whose next instant is
  at or after the outage's end), wherever it is judged (loader or dispatcher, any chunk or pop);
- `all`: every firing due within `catchup_window_seconds` before the outage ended is made (the
  window, at most 7 days, is the bound).

One-shot jobs, run-now requests and retries always fire.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["fire", "skip"]


@dataclass(frozen=True)
class Outage:
    """(start_ms, end_ms): the system was down. One still going on ends, for now, at the
    moment it is judged: a firing is only ever made when the path works again, which is then."""

    start_ms: int
    end_ms: int

    def holds(self, t_ms: int) -> bool:
        return self.start_ms < t_ms < self.end_ms


def merged(outages: Iterable[Outage]) -> list[Outage]:
    """One outage for every overlapping run of them: `latest` judges a firing by the end of the
    outage it fell into, so two overlapping ones would each make their own newest firing."""
    out: list[Outage] = []
    for o in sorted(outages, key=lambda o: o.start_ms):
        if out and o.start_ms <= out[-1].end_ms:
            out[-1] = Outage(out[-1].start_ms, max(out[-1].end_ms, o.end_ms))
        else:
            out.append(o)
    return out


def outage_of(t_ms: int, outages: Iterable[Outage]) -> Outage | None:
    """The outage an instant fell into, if any."""
    return next((o for o in outages if o.holds(t_ms)), None)


def decide(policy: str, window_s: int, t_ms: int, next_ms: int | None, outage: Outage) -> Verdict:
    """What becomes of a recurring firing at `t_ms` missed in `outage`.

    `next_ms` is the job's next instant after this one (None: there is none, or it is not known
    any more, e.g. for an attempt requeued after its run request reached Kafka: it fires).
    """
    if policy == "none":
        return "skip"
    if policy == "all":
        return "fire" if t_ms >= outage.end_ms - 1000 * window_s else "skip"
    return "fire" if next_ms is None or next_ms >= outage.end_ms else "skip"
