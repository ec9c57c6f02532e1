"""Writes the JSON Schema of every public model into schemas/json/, and the public API's OpenAPI
document to schemas/openapi.json (`python -m schemas.export`, `make schemas`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.api import JobSpec, TimerRequest
from schemas.events import (
    AlertRaised,
    DeadLetter,
    JobCommand,
    JobEvent,
    RunRequested,
    RunStatusChanged,
)

PUBLIC: dict[str, type[BaseModel]] = {
    "job_spec": JobSpec,
    "timer_request": TimerRequest,
    "job_command": JobCommand,
    "job_event": JobEvent,
    "run_requested": RunRequested,
    "run_status_changed": RunStatusChanged,
    "dead_letter": DeadLetter,
    "alert_raised": AlertRaised,
}
OUT = Path(__file__).parent / "json"
OPENAPI = Path(__file__).parent / "openapi.json"


def render() -> dict[str, str]:
    return {
        f"{name}.v1.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for name, model in PUBLIC.items()
    }


def render_openapi() -> str:
    from schemas.openapi import merged

    return json.dumps(merged(), indent=2) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for filename, text in render().items():
        (OUT / filename).write_text(text)
    OPENAPI.write_text(render_openapi())
    print(f"wrote {len(PUBLIC)} schemas to {OUT} and the API's OpenAPI document to {OPENAPI}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
