"""The stack's Prometheus: the rules pass promtool, every service is scraped, and a firing made
through the gateway shows up in the series the alerts and the dashboard read."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.sink import Sink
from tests.support.stack import ROOT
from tests.support.waiting import eventually

PROM_DIR = ROOT / "deploy" / "prometheus"
SERVICES = {"job_service", "search_service", "writer", "watcher", "dispatcher", "executor"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=PROM_DIR)


def test_rules_are_valid() -> None:
    rules = sorted(str(p) for p in (PROM_DIR / "rules").glob("*.yml"))
    assert rules, "no rule files"
    done = promtool("check", "rules", *rules)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alerts_fire_on_the_histories_that_should_raise_them() -> None:
    done = promtool("test", "rules", "tests/alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_a_broken_threshold_fails_the_rule_tests(tmp_path: Path) -> None:
    """The rule tests are not vacuous: a lateness alert that no longer fires at 30 s fails them."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    for f in (PROM_DIR / "rules").glob("*.yml"):
        text = f.read_text().replace("duetime:lateness_seconds:p99_5m > 5\n",
                                     "duetime:lateness_seconds:p99_5m > 50\n")
        (tmp_path / "rules" / f.name).write_text(text)
    (tmp_path / "tests" / "alerts.test.yml").write_text(
        (PROM_DIR / "tests" / "alerts.test.yml").read_text())
    done = subprocess.run(["promtool", "test", "rules", "tests/alerts.test.yml"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert "DuetimeFiringLate" in done.stdout + done.stderr


@pytest.fixture
async def prometheus(env: dict[str, str]) -> Any:
    # A stack started before Prometheus joined it has no URL in its env file yet.
    url = env.get("DUETIME_PROMETHEUS_URL", "http://127.0.0.1:18090")
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def query(prometheus: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    resp = await prometheus.get("/api/v1/query", params={"query": expr})
    assert resp.status_code == 200, resp.text
    result: list[dict[str, Any]] = resp.json()["data"]["result"]
    return result


async def total(prometheus: httpx.AsyncClient, expr: str) -> float:
    rows = await query(prometheus, f"sum({expr})")
    return float(rows[0]["value"][1]) if rows else 0.0


CREATES_TIMED = ('duetime_http_request_duration_seconds_count{service="job_service",'
                 ' route="/jobs", method="POST", status="202"}')


async def test_every_service_is_scraped(prometheus: httpx.AsyncClient) -> None:
    async def all_up() -> set[str] | None:
        rows = await query(prometheus, 'up{job="duetime"} == 1')
        found = {r["metric"]["service"] for r in rows}
        return found if found >= SERVICES else None

    assert await eventually(all_up, timeout=30) >= SERVICES


async def test_a_firing_shows_up_in_the_recorded_series(
    prometheus: httpx.AsyncClient, api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    """Through the gateway: a job fires, and Prometheus sees the run counted, the request timed
    by route, the lateness recorded and both consumer groups' lag measured."""
    start = await total(prometheus, 'duetime_executor_runs_total{status="succeeded"}')
    timed_before = await total(prometheus, CREATES_TIMED)
    resp = await api.post("/jobs", json={"name": "prom", "schedule": {"type": "now"},
                                         "target": {"type": "http", "url": sink.url(path)}})
    assert resp.status_code == 202, resp.text
    await sink.wait_for(path, 1, timeout=20)

    async def grown(expr: str, than: float) -> float | None:
        value = await total(prometheus, expr)
        return value if value > than else None

    assert await eventually(lambda: grown('duetime_executor_runs_total{status="succeeded"}',
                                          start), timeout=30) >= start + 1
    assert await eventually(lambda: grown(CREATES_TIMED, timed_before), timeout=30)

    async def series(expr: str) -> list[dict[str, Any]] | None:
        return await query(prometheus, expr) or None

    late = await eventually(lambda: series("duetime:lateness_seconds:p99_5m >= 0"), timeout=30)
    assert late
    lag = await eventually(lambda: series("duetime:consumer_lag:max"), timeout=30)
    assert {r["metric"]["group"] for r in lag} == {"duetime-writer", "duetime-executor"}


def test_grafana_panels_are_valid_promql_on_documented_series(tmp_path: Path) -> None:
    """Every query of the Grafana dashboard parses (checked by promtool as a recording rule)
    and reads only series docs/metrics.md documents or the rules record."""
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "duetime.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    assert len(exprs) >= 10
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yml").write_text(json.dumps(rules))
    done = subprocess.run(["promtool", "check", "rules", "dashboard.yml"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    known = set(re.findall(r"`(duetime[:_][a-z0-9_:]+)`", (ROOT / "docs" / "metrics.md").read_text()))
    known |= {"up", "ALERTS"}
    for expr in exprs:
        for name in re.findall(r"\b((?:duetime[:_]|up\b|ALERTS\b)[a-z0-9_:]*)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in known or base in known, f"{name} in {expr!r} is not documented"
