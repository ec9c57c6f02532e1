"""The JSON of the per-firing events, built from plain values on the firing path.

Every firing makes a run request and two or three status events. Building a pydantic model
for each (validation, then `model_dump`) was a visible share of the dispatcher's and the
executor's CPU (issue 8, docs/perf). These encoders write the same bytes as
`kafka.encode(Model(...))` — field order, `exclude_none`, datetimes as `...Z` — straight from
values the service already holds and already validated (a run template built from a validated
JobSpec, a parsed RunRequested). tests/unit/test_event_json.py checks them byte for byte
against the models in schemas/events.py, so the contract cannot drift; the key order is taken
from the models themselves.

Free text (an error, a response excerpt, a reason) is not encoded here: a status holding
some goes through the model, whose validators bound and clean it (rare: failures, refusals).
"""

from __future__ import annotations

from typing import Any

import orjson

from schemas.events import RunRequested, RunStatusChanged

_OPTIONS = orjson.OPT_UTC_Z  # pydantic writes an UTC instant as "...Z"
_STATUS_FIELDS = tuple(RunStatusChanged.model_fields)
_REQUEST_FIELDS = tuple(RunRequested.model_fields)
# Free text: the model's validators replace NULs and bound the length.
_TEXT_FIELDS = frozenset({"error", "response_excerpt", "reason"})


def _without_none(fields: Any) -> dict[str, Any]:
    """A nested model's JSON as `exclude_none` writes it (None only at its top level)."""
    if not isinstance(fields, dict):
        raise TypeError(f"expected an object, got {type(fields).__name__}")
    return {k: v for k, v in fields.items() if v is not None}


def run_request_json(values: dict[str, Any]) -> bytes:
    """A RunRequested's JSON. `target` and `retry` are the run template's (a validated
    model's `model_dump(mode="json")`); datetimes are aware UTC instants."""
    values = {**values, "schema_version": 1, "target": _without_none(values["target"]),
              "retry": _without_none(values["retry"])}
    return orjson.dumps({name: values[name] for name in _REQUEST_FIELDS
                         if values.get(name) is not None}, option=_OPTIONS)


def holds_free_text(values: dict[str, Any]) -> bool:
    """Whether a status holds text `status_json` leaves to the model."""
    return any(values.get(name) is not None for name in _TEXT_FIELDS)


def status_json(**values: Any) -> bytes:
    """A RunStatusChanged's JSON; free text (`holds_free_text`) is refused.

    `attempt` comes from a validated run request and `http_status` from an HTTP answer, so
    both are in the model's range; `status` is one of RunStatus.
    """
    if holds_free_text(values):
        raise ValueError("free text goes through RunStatusChanged")
    values["schema_version"] = 1
    values.setdefault("final", True)
    return orjson.dumps({name: values[name] for name in _STATUS_FIELDS
                         if values.get(name) is not None}, option=_OPTIONS)

