"""bench.side_by_side: the summary table is built from saved results, never typed in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import results, side_by_side


def delivery(p99: int | None, lost: int = 0, expected: int = 4000) -> dict[str, Any]:
    return {"expected": expected, "delivered": expected - lost, "lost": lost, "p99_ms": p99,
            "best_second": 1234}


def peer(tmp: Path, driver: str, workload: str, params: dict[str, Any], p99: int,
         delivered: int, expected: int, tag: str = "") -> None:
    size = {"W1": params.get("n"), "W2": params.get("rate"), "W3": params.get("m")}[workload]
    (tmp / f"20261125-1200_{driver}{tag}_{workload}-{size}.json").write_text(json.dumps({
        "driver": driver, "tag": tag, "workload": workload, "params": params,
        "started_at": "2026-11-25T19:38:02",
        "result": {"delivered": delivered, "expected": expected, "missing": expected - delivered,
                   "lateness_ms": {"p99": p99}}}))


@pytest.fixture
def saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    monkeypatch.setenv("BENCH_CONDITIONS", "unit test")
    return tmp_path


def line(table: str, start: str) -> str:
    (found,) = [row for row in table.splitlines() if row.startswith(f"| {start}")]
    return found


def test_goals_are_judged_from_the_saved_results(saved: Path) -> None:
    results.save("w2-200", {"delivery": delivery(2)})
    results.save("w2-1000", {"delivery": delivery(15_620, expected=20_000)})
    results.save("w2-3000", {"delivery": delivery(90, lost=19_263, expected=60_000)})
    results.save("reads", {"by_id": {"p99_ms": 4.2}, "list": {"p99_ms": 12.5}})
    table = side_by_side.table({})
    assert line(table, "W2 steady 200/s").endswith("| 2 | ≤ 3 | met |")
    assert "15,620 (best second 1,234)" in line(table, "W2 steady 1,000/s")
    assert line(table, "W2 steady 1,000/s").endswith("**missed** |")
    # Lost firings miss the goal whatever the p99 of those that came.
    assert "40,737 of 60,000, p99 90" in line(table, "W2 steady 3,000/s")
    assert line(table, "W2 steady 3,000/s").endswith("**missed** |")
    assert line(table, "GET /jobs/{id}").endswith("| 4.2 | ≤ 10 | met |")
    results.save("rest_creates", {"rate_per_s": 211.26})
    assert line(side_by_side.table({}), "REST creates").endswith("| 211.3 | ≥ 5,000 | **missed** |")
    assert line(table, "filtered GET").endswith("**missed** |")
    assert line(table, "W1 burst").endswith("| not run | ≤ 1,500 | not measured |")


def test_peer_columns_come_from_the_reference_results(saved: Path) -> None:
    peers_dir = saved / "peers"
    peers_dir.mkdir()
    peer(peers_dir, "aps-mem", "W2", {"rate": 1000}, 1, 20_000, 20_000)
    peer(peers_dir, "celery-prefork", "W2", {"rate": 3000}, 35_605, 60_000, 60_000)
    peer(peers_dir, "duetime", "W2", {"rate": 1000}, 15_620, 20_000, 20_000)   # not a peer
    peer(peers_dir, "aps-mem", "W2", {"rate": 500}, 9, 5000, 5000, tag="-warmup")
    peers = side_by_side.load_peers(peers_dir)
    assert set(peers) == {("aps-mem", "w2-1000"), ("celery-prefork", "w2-3000")}
    table = side_by_side.table(peers)
    assert line(table, "W2 steady 1,000/s").startswith("| W2 steady 1,000/s x 20 s (created 10 s "
                                                       "ahead): p99 ms | 1 | not run | not run |")
    assert "| 60,000 of 60,000, p99 35,605 |" in line(table, "W2 steady 3,000/s")
    assert "2026-11-25" in side_by_side.provenance(peers)


def test_each_result_says_how_fast_the_box_was(saved: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The box's speed moves from day to day (bench.box_speed): a figure without it cannot be
    # set beside another day's.
    monkeypatch.setattr(results, "probe", lambda: {"best_ms": 66.2, "median_ms": 68.0})
    results.save("w2-200", {"delivery": delivery(4)})
    saved_result = results.load("w2-200")
    assert saved_result is not None
    assert saved_result["box_speed"] == {"best_ms": 66.2, "median_ms": 68.0}
    assert "`w2-200` " in side_by_side.provenance({})
    assert "(load " in side_by_side.provenance({})
    assert ", box 66.2 ms)" in side_by_side.provenance({})
