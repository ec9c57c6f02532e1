"""Query parameters of the list endpoints, validated before any of them reaches SQL.

Parameters are parsed from the raw (name, value) pairs rather than by FastAPI so that a parameter
given twice is refused (FastAPI would silently keep the last one) and an unknown one is refused
too, as unknown fields are everywhere else in the API: `?stat=paused` must not list every job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from duetime.problems import ProblemError
from schemas.events import AlertKind, JobState, RunStatus
from search_service.cursors import MAX_CURSOR_LENGTH, storable

ScheduleType = Literal["once", "delay", "now", "interval", "cron"]
TargetType = Literal["http", "kafka", "command", "steps"]
JobSort = Literal["created_at_desc", "created_at_asc", "next_run_at_asc", "name_asc"]

MAX_LIMIT = 500
MAX_LABELS = 64
_LABEL_KEY = re.compile(r"^[A-Za-z0-9._/-]{1,63}$")  # as schemas.api.Labels
_MAX_FIELD_ECHO = 64


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        hint = " (send '+' in a query string as %2B)" if " " in value else ""
        raise ValueError(f"must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z{hint}") from None
    if at.tzinfo is None:
        raise ValueError("must have a UTC offset, such as 2026-11-22T10:00:00Z")
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


def _no_nul(value: str) -> str:
    if not storable(value):
        raise ValueError("must not contain NUL characters")
    return value


def _empty_is_absent(value: Any) -> Any:
    return None if value == "" else value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Text = Annotated[str, AfterValidator(_no_nul)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
Search = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
CursorText = Annotated[str, Field(max_length=MAX_CURSOR_LENGTH), AfterValidator(_no_nul)]


def _label(item: str) -> tuple[str, str]:
    key, sep, value = item.partition(":")
    if not sep:
        raise ValueError(f"{item[:_MAX_FIELD_ECHO]!r} is not key:value")
    if not _LABEL_KEY.match(key):
        raise ValueError(f"label key {key[:_MAX_FIELD_ECHO]!r} is not 1-63 characters of "
                         "A-Z a-z 0-9 . _ / -")
    if len(value) > 255:
        raise ValueError(f"the value of label {key!r} is longer than 255 characters")
    return key, value


def _labels(items: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        key, value = _label(item)
        if seen.setdefault(key, value) != value:
            raise ValueError(f"label {key!r} is given with two different values")
    return items


class QueryModel(BaseModel):
    """Query parameters of one endpoint; `repeatable` names those that may be given repeatedly."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    repeatable: ClassVar[frozenset[str]] = frozenset()

    def contradictions(self) -> list[dict[str, str]]:
        """Parameters that are each valid but together can match nothing."""
        return []


class NoQuery(QueryModel):
    """An endpoint that takes no query parameters."""


class ListQuery(QueryModel):
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    cursor: Annotated[CursorText | None, BeforeValidator(_empty_is_absent)] = None


class JobsQuery(ListQuery):
    repeatable: ClassVar[frozenset[str]] = frozenset({"label"})

    state: JobState | None = None
    name: Name | None = None
    # An empty search box means no search.
    q: Annotated[Search | None, BeforeValidator(_empty_is_absent)] = None
    label: Annotated[list[Text], Field(max_length=MAX_LABELS), AfterValidator(_labels)] = []
    schedule_type: ScheduleType | None = None
    target_type: TargetType | None = None
    next_run_before: Timestamp | None = None
    next_run_after: Timestamp | None = None
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    sort: JobSort = "created_at_desc"

    @property
    def labels(self) -> dict[str, str]:
        return dict(_label(item) for item in self.label)

    def contradictions(self) -> list[dict[str, str]]:
        # Both bounds are exclusive: a range whose start is not before its end is always empty,
        # which is a client's mistake (swapped bounds) more often than a question.
        found = []
        for after, before in (("next_run_after", "next_run_before"),
                              ("created_after", "created_before")):
            start, end = getattr(self, after), getattr(self, before)
            if start is not None and end is not None and start >= end:
                found.append({"field": after, "message": f"must be before {before}: "
                              "both bounds are exclusive, so this range matches nothing"})
        return found


class RunsQuery(ListQuery):
    status: RunStatus | None = None
    job_id: Name | None = None
    since: Timestamp | None = None


class AlertsQuery(ListQuery):
    since: Timestamp | None = None
    kind: AlertKind | None = None


class PreviewQuery(QueryModel):
    count: int = Field(default=10, ge=1, le=1000)


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema as a query parameter: a parameter left out is absent, never null."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**rest, **branches[0]}


def openapi_parameters(model: type[QueryModel]) -> list[dict[str, Any]]:
    """`model`'s fields as OpenAPI query parameters, for `openapi_extra`: parse_query reads the
    raw pairs itself (see above), so FastAPI would otherwise document none of them."""
    parameters: list[dict[str, Any]] = []
    for name, schema in model.model_json_schema()["properties"].items():
        parameter = {"name": name, "in": "query", "required": False, "schema": _present(schema)}
        if name in model.repeatable:
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    return parameters


Q = TypeVar("Q", bound=QueryModel)


def _error(e: ErrorDetails) -> dict[str, str]:
    loc = e.get("loc", ())
    field = str(loc[0])[:_MAX_FIELD_ECHO] if loc else "query"
    if e.get("type") == "extra_forbidden":
        return {"field": field, "message": "unknown query parameter"}
    message = e.get("msg", "invalid")
    return {"field": field, "message": message.removeprefix("Value error, ")}


def parse_query(model: type[Q], items: Iterable[tuple[str, str]]) -> Q:
    """Validate raw query pairs into `model`; every problem becomes a 422 naming its field."""
    grouped: dict[str, list[str]] = {}
    for name, value in items:
        grouped.setdefault(name, []).append(value)
    errors: list[dict[str, str]] = []
    data: dict[str, Any] = {}
    for name, values in grouped.items():
        if name in model.repeatable:
            data[name] = values
        elif len(values) > 1:
            errors.append({"field": name[:_MAX_FIELD_ECHO],
                           "message": "given more than once; only one value is allowed"})
        else:
            data[name] = values[0]
    parsed: Q | None = None
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_error(e) for e in exc.errors())
    if parsed is not None:
        errors.extend(parsed.contradictions())
    if errors or parsed is None:
        raise ProblemError(422, "Invalid request", "one or more query parameters are invalid",
                           errors)
    return parsed
