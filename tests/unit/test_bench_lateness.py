"""bench.lateness: the peer harness's delivery metrics over what an nginx sink logged."""

from __future__ import annotations

import pytest

from bench.lateness import analyze, best_second, count_delivered, percentile
from bench.sink import Arrival, parse_line
from bench.workloads import Recurring, Spec

SINK = "http://127.0.0.1:28001"


def oneshot(spec: Spec, key: str, due: int, recv: int, run_id: str = "r") -> Arrival:
    return Arrival(recv, f"{spec.uri_prefix}{key}?due={due}", 204, run_id)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7], 99) == 7
    assert percentile([1, 2, 3], 50) == 2
    assert percentile([], 99) is None


def test_best_second_counts_the_busiest_one_second_window() -> None:
    # 100, 999 and 1000 fit in (0, 1000]; 0 is one full second before 1000 and does not.
    assert best_second([0, 100, 999, 1000, 1999, 5000]) == 3
    assert best_second([5, 5, 5, 5]) == 4
    assert best_second([0, 1000, 2000]) == 1
    assert best_second([]) == 0


def test_one_shots_delivered_lost_duplicated_early() -> None:
    spec = Spec("ab12", "W2", {"rate": 2}, SINK, t0_ms=10_000,
                oneshots=[("0", 10_000), ("1", 10_500), ("2", 11_000)])
    arrivals = [
        oneshot(spec, "0", 10_000, 10_030),
        oneshot(spec, "0", 10_000, 10_900),      # the same firing again: a duplicate
        oneshot(spec, "1", 10_500, 10_498),      # 2 ms early
        Arrival(10_600, f"{spec.uri_prefix}9?due=1", 204, "x"),   # not one of ours
    ]                                            # "2" never arrives: lost
    got = analyze(spec, arrivals).summary()
    assert (got["expected"], got["delivered"], got["lost"]) == (3, 2, 1)
    assert (got["duplicates"], got["early"], got["unexpected"]) == (1, 1, 1)
    assert (got["p50_ms"], got["p99_ms"], got["max_ms"]) == (-2, 30, 30)
    assert got["first_after_t0_ms"] == 30 and got["last_after_t0_ms"] == 498
    assert count_delivered(spec, arrivals) == 2


def test_recurring_firings_match_grid_slots_and_run_ids_expose_duplicates() -> None:
    spec = Spec("cd34", "W3", {"m": 2}, SINK, t0_ms=0, recurring=Recurring(2, 1000, 3, 0))
    uri = [f"{spec.uri_prefix}r{j}?t0=0&every=1000&n=3" for j in range(2)]
    arrivals = [
        Arrival(10, uri[0], 204, "a"), Arrival(1020, uri[0], 204, "b"),
        Arrival(2005, uri[0], 204, "c"), Arrival(3001, uri[0], 204, "d"),  # 4th of 3: extra
        Arrival(40, uri[1], 204, "e"),
        Arrival(900, uri[1], 204, "e"),     # run "e" again: a duplicate, not slot 1
        Arrival(1100, uri[1], 204, "f"),
    ]                                       # job 1's third firing never comes: lost
    delivery = analyze(spec, arrivals)
    got = delivery.summary()
    assert (got["expected"], got["delivered"], got["lost"]) == (6, 5, 1)
    assert (got["duplicates"], got["extra"], got["early"]) == (1, 1, 0)
    assert sorted(late for _, late in delivery.points) == [5, 10, 20, 40, 100]
    assert count_delivered(spec, arrivals) == 5


def test_sink_log_lines_parse_like_the_peer_harness() -> None:
    line = "1764120000.123\t204\tPOST\t/hook/duetime/ab-1?due=5\tdt_run_1\n"
    assert parse_line(line) == Arrival(1764120000123, "/hook/duetime/ab-1?due=5", 204, "dt_run_1")
    unlabelled = parse_line("1.0005\t204\tPOST\t/hook/x\t-\n")
    assert unlabelled is not None and unlabelled.key == ""
    assert parse_line("1764120000.1\t204\tPO") is None   # torn by a flush
    assert parse_line("soon\t204\tPOST\t/hook/x\t-") is None


@pytest.mark.parametrize("arrivals", [[], [Arrival(1, "/elsewhere", 204, "")]])
def test_nothing_delivered_is_all_lost(arrivals: list[Arrival]) -> None:
    spec = Spec("ef56", "W1", {"n": 2}, SINK, t0_ms=0, oneshots=[("0", 0), ("1", 0)])
    got = analyze(spec, arrivals).summary()
    assert (got["delivered"], got["lost"], got["p99_ms"], got["best_second"]) == (0, 2, None, 0)
