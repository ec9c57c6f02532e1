"""Every metric the services export has a row in docs/metrics.md, and every row names one."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from prometheus_client import REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# Every module that defines metrics at import (a new one must be added here, or its metrics go
# unchecked: test_every_metric_module_is_listed catches that).
MODULES = ("duetime.attempts", "duetime.clock", "duetime.kafka", "duetime.http_metrics",
           "job_service.publisher", "job_service.quotas", "writer.service", "watcher.integrity",
           "watcher.service",
           "watcher.consumer_lag", "dispatcher.service", "executor.service", "executor.signing",
           "executor.notifications", "writer.alerts", "executor.command.runner",
           "executor.command.lanes", "executor.offsets", "duetime.objects.retention",
           "duetime.loops")
ROOT = DOC.parents[1]
PACKAGES = ("duetime", "job_service", "search_service", "writer", "watcher", "dispatcher",
            "executor")


def exported() -> set[str]:
    for name in MODULES:
        importlib.import_module(name)
    names = set()
    for metric in REGISTRY.collect():
        if metric.name.startswith("duetime_"):
            names.add(f"{metric.name}_total" if metric.type == "counter" else metric.name)
    return names


def documented() -> set[str]:
    return set(re.findall(r"^\| `(duetime_[a-z_]+)` \|", DOC.read_text(), re.MULTILINE))


def test_every_exported_metric_is_documented() -> None:
    missing = exported() - documented()
    assert not missing, f"add a row to docs/metrics.md for: {sorted(missing)}"


def test_every_documented_metric_exists() -> None:
    gone = documented() - exported()
    assert not gone, f"docs/metrics.md names metrics no service exports: {sorted(gone)}"


def test_every_metric_module_is_listed() -> None:
    defining = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if re.search(r"^\w+ = (Counter|Gauge|Histogram)\(", path.read_text(), re.MULTILINE):
                defining.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert defining <= set(MODULES), f"list in MODULES: {sorted(defining - set(MODULES))}"
