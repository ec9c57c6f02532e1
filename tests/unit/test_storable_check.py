"""The Storable check costs less and refuses the same (issue 8, ADR 0039).

Each model checks only the fields whose type can hold what cannot be stored: every field of
such a type must be named by the model's `storable(...)` (`_holds_anything` says which
types; a field left out fails here). And, as a property over generated messages with hostile
and boundary values put anywhere in them: whatever JobCommand and RunRequested accept passes
the check on every field, as when every field was checked (so they refuse no less).

check_storable's short path for plain JSON types refuses and accepts what the general
checks do.

`check_any_storable` is the check as it was before the short path (isinstance by
isinstance): over generated values, hostile and boundary ones, of every type the short path
takes and of those it leaves (subclasses, containers, models), both give the same verdict and
the same message. The decoders on the hot path (the writer's JobCommand, the executor's
RunRequested, from JSON bytes) are then checked to refuse every kind of unstorable value.
"""

from __future__ import annotations

import math
import re
import types
from datetime import UTC, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.api import (
    EARLIEST,
    INT64_MAX,
    INT64_MIN,
    LATEST,
    MAX_JSON_DEPTH,
    NUL,
    Storable,
    check_any_storable,
    check_storable,
)
from schemas.events import JobCommand, RunRequested

# A pattern of ASCII character classes without escapes: what it matches has no NUL and no
# surrogate (every character is one of the class's).
_PLAIN_PATTERN = re.compile(r"\^(\[[A-Za-z0-9_.=/-]*\]|\{\d+(,\d+)?\}|[+*?()/])*\$")


def _bounded(metadata: list[Any], low: int | float, high: int | float) -> bool:
    lows: list[Any] = [getattr(m, "ge", getattr(m, "gt", None)) for m in metadata
            if isinstance(m, annotated_types.Ge | annotated_types.Gt)]
    highs: list[Any] = [getattr(m, "le", getattr(m, "lt", None)) for m in metadata
             if isinstance(m, annotated_types.Le | annotated_types.Lt)]
    return any(v >= low for v in lows) and any(v <= high for v in highs)


def _holds_anything(annotation: Any, metadata: list[Any]) -> bool:
    """Whether a field of this type can hold a value check_storable refuses (if unsure: yes)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *more = get_args(annotation)
        return _holds_anything(inner, [*more, *metadata])
    if annotation in (bool, type(None)) or origin is Literal:
        return False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return False  # it checks its own fields
    if origin in (Union, types.UnionType):  # constraints on a union: unsure
        return bool(metadata) or any(_holds_anything(a, []) for a in get_args(annotation))
    if annotation is int:
        return not _bounded(metadata, INT64_MIN, INT64_MAX)
    if annotation is float:
        finite = any(getattr(m, "allow_inf_nan", None) is False for m in metadata)
        return not (finite and _bounded(metadata, -math.inf, math.inf))
    if annotation is str:
        return not any(_PLAIN_PATTERN.fullmatch(getattr(m, "pattern", None) or "")
                       for m in metadata)
    return True


def _models(cls: type[BaseModel]) -> list[type[BaseModel]]:
    return [cls, *(model for sub in cls.__subclasses__() for model in _models(sub))]


@pytest.mark.parametrize("model", _models(Storable), ids=lambda model: model.__name__)
def test_every_field_that_can_hold_the_unstorable_is_checked(model: type[BaseModel]) -> None:
    checked = {name for decorator in model.__pydantic_decorators__.field_validators.values()
               if decorator.func.__name__ == "_storable_field" for name in decorator.info.fields}
    needed = {name for name, field in model.model_fields.items()
              if _holds_anything(field.annotation, field.metadata)}
    assert needed <= checked, f"{model.__name__}: storable() leaves out {needed - checked}"


def test_the_field_types_told_apart() -> None:
    assert _holds_anything(JobCommand.model_fields["patch"].annotation, [])
    assert not _holds_anything(JobCommand.model_fields["tenant"].annotation,
                               JobCommand.model_fields["tenant"].metadata)
    assert _holds_anything(str, [])
    assert not _holds_anything(RunRequested.model_fields["priority"].annotation,
                               RunRequested.model_fields["priority"].metadata)
    assert _holds_anything(RunRequested.model_fields["attempt"].annotation,
                           RunRequested.model_fields["attempt"].metadata)  # no upper bound


class _Text(str):
    pass


class _Int(int):
    pass


class _Inner(BaseModel):
    x: int = 2**70  # a model holds what it checked itself: never looked into


def _verdict(check: Any, value: object) -> str | None:
    try:
        check(value, "field")
    except ValueError as exc:
        return str(exc)
    return None


strings = st.text(st.characters(codec=None)) | st.sampled_from(
    ["", "a\x00", "\ud800", "é\udfff", "\U0001f600", NUL])
ints = st.integers() | st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN - 1, INT64_MAX + 1])
instants = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=14))])) \
    | st.datetimes() | st.sampled_from([EARLIEST, LATEST, LATEST - timedelta(microseconds=1),
                                        EARLIEST - timedelta(microseconds=1)])
scalars = (st.none() | st.booleans() | ints | st.floats() | strings | instants
           | strings.map(_Text) | ints.map(_Int) | st.just(_Inner()))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.lists(inner, max_size=3).map(tuple)
                      | st.dictionaries(strings, inner, max_size=3), max_leaves=12)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@settings(max_examples=2000, deadline=None)
@given(values | st.sampled_from([_nested(MAX_JSON_DEPTH), _nested(MAX_JSON_DEPTH + 1)]))
def test_the_short_path_gives_the_general_verdict(value: object) -> None:
    assert _verdict(check_storable, value) == _verdict(check_any_storable, value)


REQUEST = ('{"run_id":"r1:1","job_id":"j1","tenant":"t1","job_version":1,'
           '"scheduled_at":"2026-11-26T09:50:45Z","due_at":"2026-11-26T09:50:45Z","attempt":1,'
           '"priority":5,"retry":{},"member":"j1|1|123|1|5","dispatched_at":"2026-11-26T09:50:45Z",'
           '"target":{"type":"http","url":"http://127.0.0.1:9/x","body":VALUE}}')
COMMAND = ('{"command_id":"c1","type":"create","job_id":"j1","tenant":"t1",'
           '"issued_at":"2026-11-26T09:50:45Z","spec":{"name":"n",'
           '"schedule":{"type":"once","at":"2027-01-01T00:00:00Z"},'
           '"target":{"type":"http","url":"http://127.0.0.1:9/x"},"payload":VALUE}}')
HOSTILE = [('"a\\u0000b"', "NUL"), ('{"k\\u0000":1}', "NUL"), ("NaN", "finite"),
           ("1e400", "finite"), ("-Infinity", "finite"), (str(INT64_MAX + 1), "64 bits"),
           (str(INT64_MIN - 1), "64 bits"),
           ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested")]
BOUNDARY = [str(INT64_MAX), str(INT64_MIN), '"tab\\t\\u00e9\\ud83d\\ude00"', "1.5e308",
            "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "null", "{}"]


@pytest.mark.parametrize("model, template", [(RunRequested, REQUEST), (JobCommand, COMMAND)])
@pytest.mark.parametrize("value, message", HOSTILE)
def test_hot_path_decoders_refuse_what_cannot_be_stored(model: type[BaseModel], template: str,
                                                        value: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(template.replace("VALUE", value))
    assert message in info.value.errors()[0]["msg"]


@pytest.mark.parametrize("model, template", [(RunRequested, REQUEST), (JobCommand, COMMAND)])
@pytest.mark.parametrize("value", BOUNDARY)
def test_hot_path_decoders_take_storable_boundaries(model: type[BaseModel], template: str,
                                                    value: str) -> None:
    model.model_validate_json(template.replace("VALUE", value))


@pytest.mark.parametrize("instant, accepted", [
    ("1970-01-01T00:00:00Z", True), ("8999-12-31T23:59:59.999999Z", True),
    ("1969-12-31T23:59:59.999999Z", False), ("9000-01-01T00:00:00Z", False)])
def test_hot_path_decoders_bound_instants(instant: str, accepted: bool) -> None:
    raw = REQUEST.replace("VALUE", "null").replace('"due_at":"2026-11-26T09:50:45Z"',
                                                    f'"due_at":"{instant}"')
    if accepted:
        assert RunRequested.model_validate_json(raw).due_at.year in (1970, 8999)
    else:
        with pytest.raises(ValidationError, match="1970-01-01T00:00:00Z to before"):
            RunRequested.model_validate_json(raw)


def _every_field_storable(model: BaseModel) -> None:
    """What the check on every field did: every field's value, in every nested Storable."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        check_any_storable(value, name)
        for inner in value if isinstance(value, list) else [value]:
            if isinstance(inner, Storable):
                _every_field_storable(inner)


_NOW = "2026-11-26T09:50:45Z"
_TARGETS = [
    {"type": "http", "url": "http://127.0.0.1:9/x", "method": "PUT", "headers": {"X-A": "b"},
     "body": {"k": [1, "x"]}, "timeout_seconds": 5, "success_codes": [200, 201]},
    {"type": "kafka", "topic": "t.topic", "key": "k", "value": {"v": 1}, "headers": {"h": "v"}},
]
_SPECS = [{"name": "n", "schedule": schedule, "target": target, "priority": 3, "max_runs": 5,
           "labels": {"team": "ops"}, "payload": {"p": [1, 2]}, "retry": {"max_attempts": 2},
           "catchup_window_seconds": 60, "late_after_seconds": 30,
           "on_late": {"url": "http://127.0.0.1:9/late", "headers": {"X-B": "c"}}}
          for schedule in ({"type": "once", "at": "2027-01-01T00:00:00Z"},
                           {"type": "delay", "seconds": 10},
                           {"type": "interval", "every_seconds": 60, "start_at": _NOW,
                            "end_at": "2027-01-01T00:00:00Z"},
                           {"type": "cron", "expression": "0 * * * *", "timezone": "UTC"})
          for target in _TARGETS]
_COMMANDS = [{"command_id": "c1", "type": "create", "job_id": "j1", "tenant": "t1",
              "issued_at": _NOW, "accept_by": _NOW, "spec": spec} for spec in _SPECS] + [
    {"command_id": "c1", "type": "patch", "job_id": "j1", "tenant": "t1", "issued_at": _NOW,
     "patch": {"name": "m", "payload": None}},
    {"command_id": "c1", "type": "run", "job_id": "j1", "tenant": "t1", "issued_at": _NOW,
     "run_at": _NOW, "override_overlap": True}]
_REQUESTS = [{"run_id": "r1:1", "job_id": "j1", "tenant": "t1", "job_version": 1,
              "scheduled_at": _NOW, "due_at": _NOW, "attempt": 1, "priority": 5,
              "retry": {"max_attempts": 2}, "member": "j1|1|123|1|5", "dispatched_at": _NOW,
              "target": target} for target in _TARGETS]
_hostile = st.sampled_from(["a\x00", "\ud800", 2**63, -(2**63) - 1, float("nan"), float("inf"),
                            "1969-12-31T23:59:59Z", "9000-01-01T00:00:00Z", _nested(65),
                            {"k\x00": 1}, [["\udfff"]], 10**30, "", True, None, 0, -1]) | scalars


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path] + [p for k, v in value.items() for p in _paths(v, (*path, k))]
    if isinstance(value, list):
        return [path] + [p for i, v in enumerate(value) for p in _paths(v, (*path, i))]
    return [path]


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([(JobCommand, c) for c in _COMMANDS] + [(RunRequested, r) for r in _REQUESTS])
       .flatmap(lambda pair: st.tuples(st.just(pair), st.sampled_from(_paths(pair[1])[1:]))),
       st.lists(_hostile, min_size=1, max_size=2))
def test_what_a_decoder_accepts_passes_the_check_on_every_field(
        case: tuple[tuple[type[BaseModel], dict[str, Any]], tuple[Any, ...]],
        news: list[Any]) -> None:
    """Checking fewer fields refuses no less: a message the models accept (with a hostile or
    boundary value put anywhere in it) passes the check on every field, as before."""
    (model, message), path = case
    for new in news:
        message = _replaced(message, path, new)
    try:
        decoded = model.model_validate(message)
    except ValidationError:
        return
    _every_field_storable(decoded)
