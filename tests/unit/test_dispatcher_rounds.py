"""How long the dispatcher sleeps between rounds (dispatcher.service.Dispatcher.idle_ms)."""

from __future__ import annotations

from typing import Any

import pytest

from dispatcher import service
from dispatcher.service import Dispatcher, Settings


def dispatcher(**settings: Any) -> Dispatcher:
    return Dispatcher(due_set=None, producer=None, settings=Settings(**settings))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "now_ms", lambda: 1_000_000)


def test_an_entry_entering_the_lookahead_at_once_still_waits_one_round() -> None:
    # At a steady rate the next entry is due just past the lookahead: popping it at once was a
    # round (Redis trip, Kafka request, executor fetch) per firing.
    d = dispatcher(lookahead_ms=100, min_round_ms=10, max_idle_ms=25)
    assert d.idle_ms(1_000_000 + 101) == 10


def test_a_far_entry_is_waited_for_until_it_enters_the_lookahead_capped_at_max_idle() -> None:
    d = dispatcher(lookahead_ms=100, min_round_ms=10, max_idle_ms=25)
    assert d.idle_ms(1_000_000 + 100 + 17) == 17
    assert d.idle_ms(1_000_000 + 100 + 5_000) == 25
    assert d.idle_ms(None) == 25


def test_the_floor_never_exceeds_the_lookahead_so_no_entry_is_popped_after_its_instant() -> None:
    assert dispatcher(lookahead_ms=0, min_round_ms=10).idle_ms(1_000_000) == 0
    assert dispatcher(lookahead_ms=4, min_round_ms=10).idle_ms(1_000_000) == 4


def test_by_default_every_entry_is_popped_well_ahead_of_its_instant() -> None:
    # Under load a run request's trip through Kafka took over 100 ms (ADR 0042): the rounds'
    # spacing must leave the executor most of the lookahead (ADR 0049).
    settings = Settings()
    assert settings.lookahead_ms - settings.min_round_ms >= 250
    assert dispatcher().idle_ms(1_000_000 + settings.lookahead_ms + 1) == settings.min_round_ms


@pytest.mark.parametrize("bad", [-1, 101])
def test_min_round_out_of_bounds_is_refused(bad: int) -> None:
    with pytest.raises(ValueError):
        Settings(min_round_ms=bad)
