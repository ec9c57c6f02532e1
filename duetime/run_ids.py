"""Deterministic run ids: the same job and scheduled instant always give the same run id."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("5b0f3e0e-6a43-4a53-9d1c-2a7f4f0c9e11")


def run_id_for(job_id: str, scheduled_ms: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{job_id}@{scheduled_ms}"))
