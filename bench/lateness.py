"""What the sink saw of one run, against what was due: the peer harness's metrics.

lateness = sink receive - due (ms). One-shots: the first arrival of a URI is the delivery, every
further one a duplicate. Recurring: the i-th firing of job j (by receive time) is matched to the
grid slot t0 + i * every; firings beyond the n expected are "extra". duetime labels every firing
with its run id (`Idempotency-Key`), so, as with Celery's firing id in the peer harness, a firing
received twice is a duplicate rather than a slot.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.sink import Arrival
from bench.workloads import Spec


def percentile(ordered: list[int], p: float) -> int | None:
    """Nearest-rank percentile of an ascending list (the peer harness's definition)."""
    if not ordered:
        return None
    k = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(k, len(ordered)) - 1]


def best_second(times_ms: list[int], window_ms: int = 1000) -> int:
    """The most deliveries inside any window of `window_ms` (times ascending)."""
    best, j = 0, 0
    for i, t in enumerate(times_ms):
        while times_ms[j] <= t - window_ms:
            j += 1
        best = max(best, i - j + 1)
    return best


@dataclass
class Delivery:
    """The deliveries of one run: (receive ms, lateness ms) of each, and what went wrong."""

    expected: int
    t0_ms: int
    points: list[tuple[int, int]] = field(default_factory=list)
    duplicates: int = 0
    extra: int = 0
    unexpected: int = 0

    def summary(self) -> dict[str, Any]:
        late = sorted(lateness for _, lateness in self.points)
        received = sorted(recv for recv, _ in self.points)
        return {
            "expected": self.expected,
            "delivered": len(late),
            "lost": self.expected - len(late),
            "duplicates": self.duplicates,
            "extra": self.extra,
            "unexpected": self.unexpected,
            "early": sum(1 for v in late if v < 0),
            "p50_ms": percentile(late, 50),
            "p95_ms": percentile(late, 95),
            "p99_ms": percentile(late, 99),
            "max_ms": late[-1] if late else None,
            "best_second": best_second(received),
            "first_after_t0_ms": received[0] - self.t0_ms if received else None,
            "last_after_t0_ms": received[-1] - self.t0_ms if received else None,
        }


def analyze(spec: Spec, arrivals: list[Arrival]) -> Delivery:
    out = Delivery(spec.expected, spec.t0_ms)
    due_of = {f"{spec.uri_prefix}{key}?due={due}": due for key, due in spec.oneshots}
    seen: set[str] = set()
    fired: set[tuple[str, str]] = set()
    by_job: dict[str, list[int]] = defaultdict(list)
    for a in sorted(arrivals, key=lambda a: a.recv_ms):
        if a.uri in due_of:
            if a.uri in seen:
                out.duplicates += 1
            else:
                seen.add(a.uri)
                out.points.append((a.recv_ms, a.recv_ms - due_of[a.uri]))
        elif spec.recurring and "?t0=" in a.uri:
            if a.key:  # unlabelled (no run id): every arrival counts as a firing
                if (a.uri, a.key) in fired:
                    out.duplicates += 1
                    continue
                fired.add((a.uri, a.key))
            by_job[a.uri].append(a.recv_ms)
        else:
            out.unexpected += 1
    for uri, received in by_job.items():
        q = parse_qs(urlsplit(uri).query)
        t0, every, n = int(q["t0"][0]), int(q["every"][0]), int(q["n"][0])
        for i, recv in enumerate(received):
            if i < n:
                out.points.append((recv, recv - (t0 + i * every)))
            else:
                out.extra += 1
    return out


def count_delivered(spec: Spec, arrivals: list[Arrival]) -> int:
    """Progress while a run is in flight (the same count as `analyze`, cheaper)."""
    due = {f"{spec.uri_prefix}{key}?due={ms}" for key, ms in spec.oneshots}
    oneshots = {a.uri for a in arrivals if a.uri in due}
    firings: dict[str, set[str]] = defaultdict(set)
    for a in arrivals:
        if "?t0=" in a.uri:
            firings[a.uri].add(a.key or str(a.recv_ms))
    n = spec.recurring.firings if spec.recurring else 0
    return len(oneshots) + sum(min(len(f), n) for f in firings.values())
