"""Benchmark: the workloads of ../shared/peer-bench on duetime, with the same semantics.

    python -m bench.peer_workloads                      # w1, w2 (200, 1000, 3000/s), w3
    python -m bench.peer_workloads --select w2-1000,w3  # some of them
    python -m bench.peer_workloads --no-wipe            # on the running stack as it is

Before each workload, like ../shared/peer-bench/side_by_side.sh: the stack is wiped and started
afresh, then warmed with W2 at 500/s for 10 s (not measured), then 5 s of rest. Each run: an
nginx sink (bench.sink), jobs created through the gateway by 64 concurrent clients during the
10 s lead, then the sink watched until every firing arrived (+3 s for late duplicates) or the
bound, last due + 60 s. Results go to .bench/results/<workload>.json, a lateness-over-time plot
to docs/img/bench/<workload>.png, and the section "Peer workloads on duetime" of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import results
from bench.common import env, stamp, write_section
from bench.cpu_per_job import stack_cpu_seconds
from bench.creates import create_jobs
from bench.lateness import analyze, count_delivered
from bench.plots import lateness_png
from bench.sink import NginxSink, read_arrivals
from bench.stack_state import ROOT, wipe_and_start
from bench.workloads import Spec, job_bodies, label, make_spec, slug

IMG = ROOT / "docs" / "img" / "bench"
QUIET_S = 3.0  # after the last expected firing: late duplicates would arrive now
# name -> (workload, parameters), in the order of the peer harness's side-by-side pass.
WORKLOADS: dict[str, tuple[str, dict[str, int]]] = {
    "w2-200": ("W2", {"rate": 200}),
    "w2-1000": ("W2", {"rate": 1000}),
    "w2-3000": ("W2", {"rate": 3000}),
    "w1-10000": ("W1", {"n": 10_000}),
    "w3-200": ("W3", {"m": 200}),
}


def selected(select: str) -> list[str]:
    """The workloads a `make bench BENCH=...` selection names, in run order: "all" is every one,
    "w2" every W2 rate, "w2-1000" one; names of other benches are not ours and are skipped."""
    wanted = [s.strip().lower() for s in select.split(",") if s.strip()]
    if "all" in wanted:
        return list(WORKLOADS)
    ours = [w for w in wanted if re.fullmatch(r"w\d(-\d+)?", w)]
    unknown = [w for w in ours if not any(n == w or n.startswith(w + "-") for n in WORKLOADS)]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    return [n for n in WORKLOADS if any(n == w or n.startswith(w + "-") for w in ours)]


async def wait_for_deliveries(spec: Spec, sink: NginxSink) -> bool:
    """Until every firing arrived (and the quiet period passed) or the bound; True at the bound."""
    settle_ms = spec.last_due_ms + (spec.recurring.every_ms // 2 if spec.recurring else 0)
    done_at: float | None = None
    while True:
        now = time.time()
        if now >= spec.bound_s:
            return True
        if done_at is None:
            delivered = count_delivered(spec, read_arrivals(sink.log, spec.uri_prefix))
            if delivered >= spec.expected and now * 1000 >= settle_ms:
                done_at = now
            print(f"\r  t0{(now * 1000 - spec.t0_ms) / 1000:+.0f}s delivered "
                  f"{delivered:,}/{spec.expected:,}", end="", file=sys.stderr, flush=True)
        elif now - done_at >= QUIET_S:
            print(file=sys.stderr)
            return False
        await asyncio.sleep(1.0)


async def run_one(workload: str, params: dict[str, Any], directory: Path) -> dict[str, Any]:
    values = env()
    sink = NginxSink(directory).start()
    try:
        spec = make_spec(workload, sink.url, **params)
        print(f"[{label(spec)}] run {spec.run_id}: {spec.expected:,} firings, t0 in "
              f"{spec.lead_s:g} s", file=sys.stderr)
        cpu_before = stack_cpu_seconds()
        created = await create_jobs(values["DUETIME_URL"], values["DUETIME_API_KEY"],
                                    job_bodies(spec), concurrency=64, deadline=spec.bound_s)
        hit_bound = await wait_for_deliveries(spec, sink)
        cpu_after = stack_cpu_seconds()
    finally:
        sink.stop()
    delivery = analyze(spec, read_arrivals(sink.log, spec.uri_prefix))
    cpu = {k: round(cpu_after.get(k, 0.0) - cpu_before.get(k, 0.0), 2) for k in cpu_after}
    return {"workload": slug(spec), "label": label(spec), "params": spec.params,
            "run_id": spec.run_id, "t0_ms": spec.t0_ms,
            "bound_after_t0_s": round(spec.bound_s - spec.t0_ms / 1000, 1),
            "hit_bound": hit_bound, "created": created.summary(), "delivery": delivery.summary(),
            "stack_cpu_s": round(sum(cpu.values()), 2), "stack_cpu_by_component_s": cpu,
            "points": delivery.points}


async def run_workload(name: str, wipe: bool) -> dict[str, Any]:
    workload, params = WORKLOADS[name]
    if wipe:
        print(f"[{name}] wiping the stack and starting a fresh one", file=sys.stderr)
        wipe_and_start()
    with tempfile.TemporaryDirectory(prefix="duetime-bench-") as tmp:
        warm = await run_one("W2", {"rate": 500, "duration_s": 10.0}, Path(tmp) / "warmup")
        await asyncio.sleep(5)
        result = await run_one(workload, params, Path(tmp) / "run")
    result["warmup"] = {k: warm["delivery"][k] for k in ("delivered", "expected", "p99_ms")}
    result["wiped"] = wipe
    points = result.pop("points")
    bound = result["bound_after_t0_s"] if result["hit_bound"] else None
    lateness_png(points, result["t0_ms"], f"duetime, {result['label']}: lateness over time",
                 IMG / f"{name}.png", bound_s=bound, note=f"{stamp()}: {results.conditions()}")
    results.save(name, result)
    return result


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) \
        else str(value)


def table() -> str:
    rows = []
    for name in WORKLOADS:
        r = results.load(name)
        if r is None:
            continue
        d, c = r["delivery"], r["created"]
        bound = f" (bound t0+{r['bound_after_t0_s']:g} s hit)" if r["hit_bound"] else ""
        fresh = "" if r["wiped"] else " (stack not wiped first)"
        rows.append(
            f"| {r['label']}{fresh} | {fmt(d['expected'])} | {fmt(d['delivered'])}{bound} | {fmt(d['lost'])} "
            f"| {fmt(d['duplicates'])} | {fmt(d['early'])} | {fmt(d['p50_ms'])} | {fmt(d['p95_ms'])} "
            f"| {fmt(d['p99_ms'])} | {fmt(d['max_ms'])} | {fmt(d['best_second'])} "
            f"| {fmt(c['rate_per_s'])} | {r['stack_cpu_s'] * 1000 / max(d['expected'], 1):.2f} "
            f"| {r['at']} | {r['conditions']} |")
    head = ("| workload | expected | delivered | lost | duplicates | early | p50 ms | p95 ms | p99 ms "
            "| max ms | best second | creates/s | stack CPU ms/job | run | conditions |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
    plots = "\n".join(f"![lateness over time, {n}](img/bench/{n}.png)" for n in WORKLOADS
                      if results.load(n) is not None)
    return head + "\n".join(rows) + "\n\nLateness over time (each delivery, and the p99 of each " \
        "second of receive time):\n\n" + plots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", default="all", help="e.g. w1,w2-1000,w3 (default: all)")
    parser.add_argument("--no-wipe", action="store_true",
                        help="run on the stack as it is (not the peer harness's semantics)")
    args = parser.parse_args()
    names = selected(args.select)
    if not names:
        return
    for name in names:
        r = asyncio.run(run_workload(name, wipe=not args.no_wipe))
        d = r["delivery"]
        print(f"[{name}] delivered {d['delivered']:,}/{d['expected']:,} lost {d['lost']} dup "
              f"{d['duplicates']} early {d['early']} p50/p95/p99/max {d['p50_ms']}/{d['p95_ms']}/"
              f"{d['p99_ms']}/{d['max_ms']} ms, best second {d['best_second']}, creates "
              f"{r['created']['rate_per_s']}/s")
    write_section(
        "Peer workloads on duetime",
        "`python -m bench.peer_workloads` (`make bench`): the workloads of `../shared/peer-bench` "
        "with its semantics — lateness = sink receive - due (nginx `$msec`, 1 ms), jobs created "
        "through the gateway by 64 clients during a 10 s lead, a wiped and freshly started stack "
        "warmed with 500/s for 10 s before each workload, each run bounded at last due + 60 s "
        "(t0 + 80 s for the steady ones). Stack CPU = user + system time of every stack process "
        "during the run (creates and firings), per expected job.\n\n" + table())


if __name__ == "__main__":
    main()
