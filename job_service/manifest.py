"""A jobs file for `POST /jobs:apply` (ADR 0037): parsed within bounds, each item made a job spec.

A file is JSON or YAML: a list of jobs, or `{"jobs": [...]}` (seed 003's shape). An item is a
full job spec (the body of `POST /jobs`) or seed 003's shorthand: `schedule` as a cron string,
`run_once`, and `steps` (or `command`) with the sandbox fields beside them instead of a `target`.

YAML is read by duetime.bounded_yaml: the safe loader without anchors and aliases (no billion
laughs), nested at most MAX_DEPTH deep, timestamps left as strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from duetime import bounded_yaml
from duetime.problems import ProblemError

MAX_ITEMS = 500
# What the gateway lets through (client_max_body_size): the service never parses more.
MAX_BODY_BYTES = 256 * 1024
MAX_DEPTH = bounded_yaml.MAX_DEPTH
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json"})
# The fields of a command or steps target that the shorthand takes beside `steps`/`command`.
SANDBOX_FIELDS = ("source", "env", "files", "working_dir", "network", "timeout_seconds", "limits")


@dataclass(frozen=True)
class ItemError:
    """What is wrong with one item: `field` inside the item ("" for the item itself)."""

    field: str
    message: str


class ItemInvalid(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.error = ItemError(field, message)


def _malformed(detail: str) -> ProblemError:
    return ProblemError(400, "Malformed document", detail)


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(422, "Invalid request", message, [{"field": field, "message": message}])


def media_type(content_type: str | None) -> str:
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in YAML_TYPES or kind in JSON_TYPES or kind.endswith("+json"):
        return "yaml" if kind in YAML_TYPES else "json"
    raise ProblemError(415, "Unsupported media type",
                       "send the jobs as application/json or application/yaml (text/yaml)")


def parse(raw: bytes, kind: str) -> Any:
    """The document in `raw` (400 when it is not well-formed JSON or YAML)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise _malformed("the request body is not UTF-8") from exc
    if kind == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ProblemError(400, "Malformed JSON", "the request body is not valid JSON") from exc
    try:
        return bounded_yaml.load(text)
    except yaml.YAMLError as exc:
        raise _malformed(f"the request body is not valid YAML: {bounded_yaml.reason(exc)}") from exc
    except RecursionError as exc:  # a pathological flow collection the depth check did not see
        raise _malformed(f"the YAML is nested more than {MAX_DEPTH} levels deep") from exc


def items_of(document: Any) -> list[Any]:
    """The list of jobs of a document: a list, or `{"jobs": [...]}`; 1 to MAX_ITEMS of them."""
    if isinstance(document, dict):
        extra = sorted(str(k) for k in document if k != "jobs")
        if extra:
            raise _invalid(extra[0], "unknown field: a jobs file holds only `jobs`")
        document = document.get("jobs")
    if not isinstance(document, list):
        raise _invalid("jobs", "the body must be a list of jobs, or {\"jobs\": [...]}")
    if not document:
        raise _invalid("jobs", "no jobs to apply: the list is empty")
    if len(document) > MAX_ITEMS:
        raise _invalid("jobs", f"at most {MAX_ITEMS} jobs per apply, not {len(document)}")
    return document


def _shorthand_target(item: dict[str, Any]) -> None:
    kinds = [k for k in ("steps", "command") if k in item]
    if not kinds:
        return
    if "target" in item or len(kinds) > 1:
        raise ItemInvalid(kinds[-1], "give one of `target`, `steps` or `command`")
    kind = kinds[0]
    target: dict[str, Any] = {"type": kind}
    for name in (kind, *SANDBOX_FIELDS, *(("stdin",) if kind == "command" else ())):
        if name in item:
            target[name] = item.pop(name)
    item["target"] = target


def _shorthand_schedule(item: dict[str, Any]) -> None:
    if isinstance(item.get("schedule"), str):
        item["schedule"] = {"type": "cron", "expression": item["schedule"],
                            **({"timezone": item.pop("timezone")} if "timezone" in item else {})}
    elif "timezone" in item:
        raise ItemInvalid("timezone", "belongs in `schedule` unless the schedule is a cron string")


def _run_once(item: dict[str, Any]) -> None:
    if "run_once" not in item:
        return
    once = item.pop("run_once")
    if not isinstance(once, bool):
        raise ItemInvalid("run_once", "must be true or false")
    if once:
        if item.get("max_runs") not in (None, 1):
            raise ItemInvalid("run_once", "run_once: true means max_runs 1; give one of them")
        item["max_runs"] = 1


def spec_of(item: Any) -> dict[str, Any]:
    """The job spec an item stands for (its shorthand expanded); raises ItemInvalid."""
    if not isinstance(item, dict):
        raise ItemInvalid("", "must be a job (a mapping with name, schedule, target or steps)")
    if not all(isinstance(key, str) for key in item):
        raise ItemInvalid("", "field names must be strings")
    spec = dict(item)
    _shorthand_target(spec)
    _shorthand_schedule(spec)
    _run_once(spec)
    return spec


def item_field(spec_field: str, item: Any) -> str:
    """A field of the expanded spec as the item spelled it: `target.steps.0.run` is `steps.0.run`
    in a shorthand item, `schedule.expression` is `schedule` for a cron string."""
    if not isinstance(item, dict):
        return spec_field
    if "target" not in item and spec_field.startswith("target."):
        return spec_field.removeprefix("target.")
    if isinstance(item.get("schedule"), str) and spec_field.startswith("schedule"):
        return "schedule"
    return spec_field
