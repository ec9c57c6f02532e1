"""The summary of `make bench`: duetime's latest results beside the peers' reference run.

Reads .bench/results/*.json (written by the benches) and the peer harness's reference results
(../shared/peer-bench/reference-results, or $PEER_RESULTS), and writes the sections "Side by
side with the peers" and "Machine" of docs/benchmarks.md. Nothing here measures anything.
A bench shows in the table by saving its result under the name and keys a row reads, e.g.
bench.kafka_ingest: `results.save("kafka_ingest", {"persisted_per_s": ...})`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import results
from bench.common import stamp, write_section
from bench.stack_state import ROOT

PEER_RESULTS = Path(os.environ.get("PEER_RESULTS") or
                    ROOT.parent / "shared" / "peer-bench" / "reference-results")
PEERS = {"aps-mem": "APScheduler memory (not durable)", "aps-sql": "APScheduler SQL (Postgres)",
         "celery-prefork": "Celery prefork (Redis)"}
Result = dict[str, Any]


def load_peers(directory: Path = PEER_RESULTS) -> dict[tuple[str, str], Result]:
    """(driver, workload slug) -> the peer's result JSON (the newest per pair, warm-ups skipped)."""
    found: dict[tuple[str, str], Result] = {}
    for path in sorted(directory.glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("tag") or r.get("driver") not in PEERS:
            continue
        p = r["params"]
        size = {"W1": p.get("n"), "W2": p.get("rate"), "W3": p.get("m")}[r["workload"]]
        found[(r["driver"], f"{r['workload'].lower()}-{size}")] = r
    return found


def peer_cell(r: Result | None, delivered_by: bool = False) -> str:
    if r is None:
        return "not run"
    res = r["result"]
    p99 = res["lateness_ms"]["p99"]
    if delivered_by or res["missing"]:
        return f"{res['delivered']:,} of {res['expected']:,}, p99 {p99:,}"
    return f"{p99:,}"


def ours_cell(name: str, delivered_by: bool = False, best: bool = False) -> str:
    r = results.load(name)
    if r is None:
        return "not run"
    d = r["delivery"]
    text = f"{d['p99_ms']:,}" if d["p99_ms"] is not None else "-"
    if delivered_by or d["lost"]:
        text = f"{d['delivered']:,} of {d['expected']:,}, p99 {text}"
    if best:
        text += f" (best second {d['best_second']:,})"
    return text


@dataclass(frozen=True)
class Row:
    what: str
    peer_key: str | None  # the workload slug in the peers' results; None: no peer figure
    ours: Callable[[], str]
    goal: str
    met: Callable[[], bool | None]  # None: not measured


def _delivery(name: str) -> dict[str, Any] | None:
    r = results.load(name)
    return None if r is None else dict(r["delivery"])


def _p99_within(name: str, limit: float) -> bool | None:
    d = _delivery(name)
    return None if d is None else bool(d["lost"] == 0 and d["p99_ms"] is not None
                                       and d["p99_ms"] <= limit)


def _value(name: str, *keys: str) -> Any:
    r: Any = results.load(name)
    for k in keys:
        if r is None:
            return None
        r = r.get(k)
    return r


def _cmp(value: Any, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(float(value))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "not run"
    return f"{value:,.1f}{unit}" if isinstance(value, float) else f"{value:,}{unit}"


def _cpu_per_job() -> float | None:
    r = results.load("w1-10000")
    return None if r is None else round(r["stack_cpu_s"] * 1000 / r["delivery"]["expected"], 2)


ROWS = [
    Row("W2 steady 200/s x 20 s: p99 ms", "w2-200", lambda: ours_cell("w2-200"), "≤ 3",
        lambda: _p99_within("w2-200", 3)),
    Row("W2 steady 1,000/s x 20 s (created 10 s ahead): p99 ms", "w2-1000",
        lambda: ours_cell("w2-1000", best=True), "≤ 20", lambda: _p99_within("w2-1000", 20)),
    Row("W2 steady 3,000/s x 20 s: delivered by t0+80 s", "w2-3000",
        lambda: ours_cell("w2-3000", delivered_by=True, best=True), "all, p99 ≤ 100",
        lambda: _p99_within("w2-3000", 100)),
    Row("W1 burst 10,000 due at one instant: p99 ms", "w1-10000",
        lambda: ours_cell("w1-10000", best=True), "≤ 1,500", lambda: _p99_within("w1-10000", 1500)),
    Row("W3 200 recurring every 1 s x 20 s: p99 ms", "w3-200", lambda: ours_cell("w3-200"), "≤ 30",
        lambda: _p99_within("w3-200", 30)),
    Row("REST creates/s through the gateway (64 clients)", None,
        lambda: _fmt(_value("rest_creates", "rate_per_s")), "≥ 5,000",
        lambda: _cmp(_value("rest_creates", "rate_per_s"), lambda v: v >= 5000)),
    Row("Kafka create commands persisted/s", None,
        lambda: _fmt(_value("kafka_ingest", "persisted_per_s")), "≥ 20,000",
        lambda: _cmp(_value("kafka_ingest", "persisted_per_s"), lambda v: v >= 20000)),
    Row("GET /jobs/{id} on 1,000,000 jobs at 200/s: p99 ms", None,
        lambda: _fmt(_value("reads", "by_id", "p99_ms")), "≤ 10",
        lambda: _cmp(_value("reads", "by_id", "p99_ms"), lambda v: v <= 10)),
    Row("filtered GET /jobs on 1,000,000 jobs at 200/s: p99 ms", None,
        lambda: _fmt(_value("reads", "list", "p99_ms")), "≤ 10",
        lambda: _cmp(_value("reads", "list", "p99_ms"), lambda v: v <= 10)),
    Row("watcher CPU, 1,000,000 / 10,000 active jobs", None,
        lambda: _fmt(_value("watcher_cost", "ratio"), "x"), "≤ 2",
        lambda: _cmp(_value("watcher_cost", "ratio"), lambda v: v <= 2)),
    Row("stack CPU per created-and-fired job (W1), ms", None, lambda: _fmt(_cpu_per_job()), "≤ 0.6",
        lambda: _cmp(_cpu_per_job(), lambda v: v <= 0.6)),
]

RESULT_NAMES = ["w2-200", "w2-1000", "w2-3000", "w1-10000", "w3-200", "rest_creates",
                "kafka_ingest", "reads", "watcher_cost"]


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def table(peers: dict[tuple[str, str], Result]) -> str:
    head = ("| measure | " + " | ".join(PEERS.values()) + " | duetime (latest `make bench`) | goal | |\n"
            "|---|" + "---|" * len(PEERS) + "---|---|---|\n")
    lines = []
    for row in ROWS:
        cells = [("-" if row.peer_key is None else
                  peer_cell(peers.get((d, row.peer_key)), delivered_by="3000" in row.peer_key))
                 for d in PEERS]
        lines.append(f"| {row.what} | " + " | ".join(cells) +
                     f" | {row.ours()} | {row.goal} | {verdict(row.met())} |")
    return head + "\n".join(lines)


def provenance(peers: dict[tuple[str, str], Result]) -> str:
    dates = sorted(r["started_at"][:10] for r in peers.values())
    peer_when = f"{dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") if dates \
        else "no reference results found"
    by_conditions: dict[str, list[str]] = {}
    for name in RESULT_NAMES:
        r = results.load(name)
        if r is not None:
            unwiped = ", stack not wiped first" if r.get("wiped") is False else ""
            speed = f", box {r['box_speed']['best_ms']} ms" if "box_speed" in r else ""
            by_conditions.setdefault(r["conditions"], []).append(
                f"`{name}` {r['at']} (load {r['loadavg'][0]}{speed}{unwiped})")
    runs = [f"{', '.join(names)}: {conditions}" for conditions, names in by_conditions.items()]
    where = PEER_RESULTS.relative_to(ROOT.parent) if PEER_RESULTS.is_relative_to(ROOT.parent) \
        else PEER_RESULTS
    return (f"Peer columns: the peer harness's reference run of {peer_when} (`../{where}`), "
            "not re-run by `make bench`; `make bench-peers` re-runs peers and duetime in one pass. "
            "duetime column: the latest result of each bench, written by the bench itself — "
            + ("; ".join(runs) if runs else "none yet") + ".")


def main() -> None:
    peers = load_peers()
    write_section("Side by side with the peers",
                  f"Built {stamp()} by `python -m bench.side_by_side` (`make bench`) from the "
                  "benches' results; lateness in ms (sink receive - due). Read the conditions "
                  f"first.\n\n{provenance(peers)}\n\n{table(peers)}")
    write_section("Machine", f"{results.machine()}. Written by `make bench` on the box it ran on. "
                  "The box is shared: its speed moves between machines and within minutes, so "
                  "each result above carries `box` (bench.box_speed: a fixed Python workload, "
                  "best of 5, in ms; lower is faster) from when it was saved.")


if __name__ == "__main__":
    main()
