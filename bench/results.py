"""Benchmark results between `make bench` steps: one JSON per measurement under .bench/results.

Each bench saves what it measured; bench.side_by_side builds the summary table from them, so
no figure in docs/benchmarks.md is typed by hand. BENCH_CONDITIONS (free text) says what else ran
on the box; every saved result carries it, with the load average and the box's speed
(bench.box_speed) when it was saved.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from bench.box_speed import probe
from bench.common import stamp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / ".bench" / "results"
NO_CONDITIONS = "conditions not stated (set BENCH_CONDITIONS: what else ran on the box)"


def conditions() -> str:
    return os.environ.get("BENCH_CONDITIONS", "").strip() or NO_CONDITIONS


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "at": stamp(), "conditions": conditions(),
              "loadavg": [round(x, 2) for x in os.getloadavg()], "box_speed": probe(), **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(record, indent=2))
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def machine() -> str:
    """The box in one line: CPU model and count, memory, kernel, Python."""
    model, mem_kb = "unknown CPU", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return (f"{os.cpu_count()} x {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM, Linux "
            f"{platform.release()}, Python {platform.python_version()}; every stack process, "
            "the sink and the load generator on the same box")
