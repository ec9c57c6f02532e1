"""A service's settings class is one namespace for every fragment it is built from: a field or
property of the same name in two places silently resolves to one of them (the notifier's
tenant cap once resolved to the executor's own for runs, ADR 0061). The service's class may
give a fragment's field another default on purpose; any other shared name is a clash."""

from __future__ import annotations

import importlib
from collections import defaultdict

import pytest

from duetime.settings import _Fragment

SERVICES = ["executor.service", "executor.command.service", "writer.service",
            "dispatcher.service", "watcher.service", "job_service.service",
            "search_service.service"]


def _names(cls: type) -> dict[str, bool]:
    """The names `cls` itself defines, each with whether it is a field."""
    fields = set(getattr(cls, "__annotations__", {}))
    names = fields | set(vars(cls))
    return {n: n in fields for n in names if not n.startswith("_") and not n.startswith("model_")}


def clashes(settings: type) -> dict[str, list[str]]:
    """Names defined in more than one place among `settings` and its fragments, except a
    field of the service's class giving a fragment's field its own default."""
    by_name: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for cls in settings.__mro__:
        if isinstance(cls, type) and issubclass(cls, _Fragment) and cls is not _Fragment:
            for name, is_field in _names(cls).items():
                by_name[name].append((cls.__name__, is_field))
    found: dict[str, list[str]] = {}
    for name, owners in by_name.items():
        fragments = [o for o in owners if o[0] != settings.__name__]
        own = [o for o in owners if o[0] == settings.__name__]
        default_override = len(fragments) == 1 and all(f for _, f in owners)
        if len(owners) > 1 and not (own and default_override):
            found[name] = [o for o, _ in owners]
    return found


@pytest.mark.parametrize("module", SERVICES)
def test_no_two_fragments_of_a_service_define_one_name(module: str) -> None:
    assert clashes(importlib.import_module(module).Settings) == {}


def test_a_clash_is_found() -> None:
    class Runs(_Fragment):
        linger_ms: int = 0

        @property
        def cap(self) -> int:
            return 250

    class Alerts(_Fragment):
        @property
        def cap(self) -> int:
            return 8

        @property
        def window(self) -> int:
            return 2

    class Service(Runs, Alerts):
        linger_ms: int = 5  # a fragment's field with this service's default: no clash

        @property
        def window(self) -> int:  # the service's own property over a fragment's: a clash
            return 1

    assert clashes(Service) == {"cap": ["Runs", "Alerts"], "window": ["Service", "Alerts"]}
