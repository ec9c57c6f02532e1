"""The workloads of ../shared/peer-bench, for duetime: definitions, job URLs and REST bodies.

W1 burst: n one-shots all due at t0. W2 steady: `rate` a second for `duration_s`, job i due at
t0 + int(i * 1000 / rate). W3 recurring: m jobs every second from t0, `duration_s` firings each.
t0 = now + lead (10 s): every job is created during the lead, as for every peer.

URLs are the peer harness's, so its analysis and ours read the same thing:
one-shot `{sink}/hook/duetime/{run_id}-{key}?due={ms}`,
recurring `{sink}/hook/duetime/{run_id}-r{j}?t0={ms}&every={ms}&n={firings}`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.pacing import steady_offsets_ms

SYSTEM = "duetime"
LEAD_S = 10.0
GRACE_S = 60.0  # the run's bound: last due + 60 s (t0 + 80 s for W2's 20 s)


@dataclass(frozen=True)
class Recurring:
    count: int
    every_ms: int
    firings: int
    t0_ms: int


@dataclass(frozen=True)
class Spec:
    run_id: str
    workload: str  # W1 | W2 | W3
    params: dict[str, float]
    sink: str
    t0_ms: int
    oneshots: list[tuple[str, int]] = field(default_factory=list)  # (key, due ms), by due
    recurring: Recurring | None = None
    lead_s: float = LEAD_S

    @property
    def last_due_ms(self) -> int:
        if self.recurring:
            r = self.recurring
            return r.t0_ms + (r.firings - 1) * r.every_ms
        return self.oneshots[-1][1] if self.oneshots else self.t0_ms

    @property
    def bound_s(self) -> float:
        """Epoch seconds after which the run stops waiting (delivered-by deadline)."""
        return self.last_due_ms / 1000 + GRACE_S

    @property
    def expected(self) -> int:
        n = len(self.oneshots)
        if self.recurring:
            n += self.recurring.count * self.recurring.firings
        return n

    @property
    def uri_prefix(self) -> str:
        return f"/hook/{SYSTEM}/{self.run_id}-"

    def oneshot_url(self, key: str, due_ms: int) -> str:
        return f"{self.sink}{self.uri_prefix}{key}?due={due_ms}"

    def recurring_url(self, j: int) -> str:
        r = self.recurring
        assert r is not None
        return (f"{self.sink}{self.uri_prefix}r{j}?t0={r.t0_ms}&every={r.every_ms}"
                f"&n={r.firings}")


def make_spec(workload: str, sink: str, *, n: int = 10_000, rate: int = 200,
              duration_s: float = 20.0, m: int = 200, every_s: float = 1.0,
              lead_s: float = LEAD_S, now_ms: int | None = None, run_id: str = "") -> Spec:
    run_id = run_id or secrets.token_hex(4)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    t0 = now_ms + int(lead_s * 1000)
    if workload == "W1":
        return Spec(run_id, "W1", {"n": n}, sink, t0, [(str(i), t0) for i in range(n)],
                    lead_s=lead_s)
    if workload == "W2":
        shots = [(str(i), t0 + off) for i, off in enumerate(steady_offsets_ms(rate, duration_s))]
        return Spec(run_id, "W2", {"rate": rate, "duration_s": duration_s, "n": len(shots)}, sink,
                    t0, shots, lead_s=lead_s)
    if workload == "W3":
        every_ms = int(every_s * 1000)
        firings = int(duration_s / every_s)
        return Spec(run_id, "W3", {"m": m, "every_s": every_s, "duration_s": duration_s}, sink, t0,
                    recurring=Recurring(m, every_ms, firings, t0), lead_s=lead_s)
    raise ValueError(f"unknown workload {workload!r}")


def label(spec: Spec) -> str:
    p = spec.params
    if spec.workload == "W1":
        return f"W1 burst {int(p['n']):,} due at one instant"
    if spec.workload == "W2":
        return f"W2 steady {int(p['rate']):,}/s x {p['duration_s']:g} s"
    return f"W3 {int(p['m'])} recurring every {p['every_s']:g} s x {p['duration_s']:g} s"


def slug(spec: Spec) -> str:
    """A file-name key of the workload: w1-10000, w2-1000, w3-200."""
    p = spec.params
    size = {"W1": p.get("n"), "W2": p.get("rate"), "W3": p.get("m")}[spec.workload]
    return f"{spec.workload.lower()}-{int(size or 0)}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def job_bodies(spec: Spec) -> list[dict[str, Any]]:
    """POST /jobs bodies: what the peer harness's REST driver sends for the same spec."""
    bodies: list[dict[str, Any]] = [
        {"name": f"bench-{spec.run_id}-{key}", "schedule": {"type": "once", "at": _iso(due)},
         "target": {"type": "http", "url": spec.oneshot_url(key, due), "method": "POST"}}
        for key, due in spec.oneshots]
    if spec.recurring:
        r = spec.recurring
        every: float = r.every_ms // 1000 if r.every_ms % 1000 == 0 else r.every_ms / 1000
        bodies += [
            {"name": f"bench-{spec.run_id}-r{j}",
             "schedule": {"type": "interval", "every_seconds": every, "start_at": _iso(r.t0_ms)},
             "max_runs": r.firings,
             "target": {"type": "http", "url": spec.recurring_url(j), "method": "POST"}}
            for j in range(r.count)]
    return bodies
