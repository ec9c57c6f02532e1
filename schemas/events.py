"""Kafka message models. Every message carries `schema_version`; consumers reject others."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.api import (
    MAX_STEPS,
    STEP_NAME_PATTERN,
    CommandTarget,
    HttpTarget,
    JobSpec,
    KafkaTarget,
    NotificationTarget,
    RetryPolicy,
    StepsTarget,
    Storable,
    StorableText,
    storable,
)
from schemas.redaction import redact_raw, redact_text

CommandType = Literal["create", "update", "patch", "cancel", "pause", "resume", "run"]
# Run statuses and job states are defined here once; every service and query names these.
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "skipped"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
JobState = Literal["active", "paused", "cancelled", "completed"]
JOB_STATES: tuple[JobState, ...] = get_args(JobState)
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "timed_out", "skipped"})
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
INT32_MAX = 2**31 - 1  # job_runs.attempt and http_status are Postgres integers


class Message(BaseModel):
    # A validation error's text becomes a DLQ reason or a job.rejected echo: it must not quote
    # what was sent (a target's Authorization header, say).
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    schema_version: Literal[1] = 1


class JobCommand(Message, Storable):
    """A request to change a job (key = job_id).

    On `duetime.jobs.commands` (written by the job service alone) `tenant` is the gateway's.
    On an ingress topic `duetime.ingress.<tenant>` the tenant is the topic's: `tenant` may be
    left out, and a command whose `tenant` names another is rejected (ADR 0015).
    """

    command_id: str = Field(pattern=ID_PATTERN)
    type: CommandType
    job_id: str | None = Field(default=None, pattern=ID_PATTERN)
    tenant: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    issued_at: AwareDatetime
    spec: JobSpec | None = None
    patch: dict[str, Any] | None = None
    override_overlap: bool = False
    # For `run`: the instant the run is for, fixed by the submitter so replays agree.
    run_at: AwareDatetime | None = None
    # Apply only if Kafka appended the command by then (see schemas.topics.CONFIGS); the job
    # service sets it so that a command it answered 503 for can never take effect later.
    accept_by: AwareDatetime | None = None

    _storable = storable("job_id", "issued_at", "patch", "run_at", "accept_by")

    @model_validator(mode="after")
    def _shape(self) -> JobCommand:
        if self.type != "create" and self.job_id is None:
            raise ValueError(f"job_id is required for {self.type}")
        if self.type in ("create", "update") and self.spec is None:
            raise ValueError(f"spec is required for {self.type}")
        if self.type == "patch" and self.patch is None:
            raise ValueError("patch is required for patch")
        return self


class RunRequestFields(Message, Storable):
    """What every run request carries besides its target (one model per kind of target)."""

    run_id: str
    job_id: str
    tenant: str
    job_version: int
    scheduled_at: AwareDatetime
    due_at: AwareDatetime  # when this attempt may start: scheduled_at, or the retry time
    attempt: int = Field(ge=1)
    priority: int = Field(ge=0, le=9)
    retry: RetryPolicy
    overlap: Literal["allow", "forbid", "replace"] = "allow"
    member: str  # the due-set entry this run came from; put back if the run is requeued
    dispatched_at: AwareDatetime

    _storable = storable("run_id", "job_id", "tenant", "job_version", "scheduled_at", "due_at",
                         "attempt", "member", "dispatched_at")


class RunRequested(RunRequestFields):
    """One firing (or retry) handed to executors, on `duetime.runs` (key = job_id)."""

    target: HttpTarget | KafkaTarget = Field(discriminator="type")


class CommandRunRequested(RunRequestFields):
    """One firing (or retry) of a command job, on a priority lane `duetime.runs.cmd.<lane>`
    (key = job_id), for the command executor (ADR 0031)."""

    target: CommandTarget | StepsTarget = Field(discriminator="type")


class StepResult(BaseModel):
    """One step of a steps run, as recorded on its final status."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=STEP_NAME_PATTERN)
    status: RunStatus
    exit_code: int | None = Field(default=None, ge=-(2**31), le=INT32_MAX)
    duration_ms: int | None = Field(default=None, ge=0)


class RunStatusChanged(Message, Storable):
    """Every run status change, on `duetime.runs.status` (key = job_id)."""

    run_id: str
    job_id: str
    tenant: str
    scheduled_at: AwareDatetime
    attempt: int = Field(ge=1, le=INT32_MAX)
    status: RunStatus
    at: AwareDatetime
    queued_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    lateness_ms: int | None = None  # any 64-bit value (bigint); a past once.at is years late
    duration_ms: int | None = None
    http_status: int | None = Field(default=None, ge=0, le=999)
    # Free text (a NUL in it is replaced, so a webhook's binary answer cannot block the run).
    error: StorableText | None = Field(default=None, max_length=2000)
    response_excerpt: StorableText | None = Field(default=None, max_length=2000)
    executor_id: str | None = None
    # False when another attempt follows (the failure is not the run's last word).
    final: bool = True
    reason: StorableText | None = Field(default=None, max_length=2000)
    # When the next attempt is due (final=False failures): Postgres keeps it, so a due-set
    # rebuilt after Redis lost data re-creates the retry (ADR 0014).
    retry_at: AwareDatetime | None = None
    # Command runs (ADR 0031): how the process ended and how much it printed (the output
    # itself is in the object store, GET /runs/{run_id}/output).
    exit_code: int | None = Field(default=None, ge=-(2**31), le=INT32_MAX)
    signal: int | None = Field(default=None, ge=0, le=255)
    output_bytes: int | None = Field(default=None, ge=0)
    output_truncated: bool | None = None
    steps: list[StepResult] | None = Field(default=None, max_length=MAX_STEPS)

    _storable = storable(
        "run_id", "job_id", "tenant", "scheduled_at", "at", "queued_at", "started_at",
        "finished_at", "lateness_ms", "duration_ms", "http_status", "error", "response_excerpt",
        "executor_id", "reason", "retry_at", "exit_code", "signal", "output_bytes", "steps")


AlertKind = Literal["failure", "late", "recovered", "dlq"]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)


class AlertRaised(Message):
    """Something a tenant should hear about (ADR 0033), on `duetime.alerts` (key = job_id).

    Written by the writer from the `alerts` table once the status behind it is stored;
    `webhook` is where the job wants this kind of alert sent (None: listed by GET /alerts only).
    """

    alert_id: str
    tenant: str
    job_id: str | None
    run_id: str | None
    kind: AlertKind
    at: AwareDatetime
    detail: dict[str, Any] = Field(default_factory=dict)
    webhook: NotificationTarget | None = None


def alert_summary(detail: dict[str, Any]) -> str:
    """An alert's detail on one line, what went wrong first (the CLI's and dashboard's)."""
    order = ("error", "reason", "status", "lateness_ms", "late_after_seconds", "previous_status")
    return ", ".join(f"{k}={detail[k]}" for k in order if detail.get(k) is not None)[:160]


class JobEvent(Message):
    """An outcome of a command, on `duetime.jobs.events` (key = job_id)."""

    type: Literal["job.created", "job.updated", "job.cancelled", "job.rejected"]
    job_id: str | None
    tenant: str | None
    command_id: str | None
    command_type: str | None = None
    version: int | None = None
    at: AwareDatetime
    # Echoes what was sent: secret header values never appear in it (schemas.redaction).
    reason: Annotated[StorableText, AfterValidator(redact_text)] | None = None


class DeadLetter(Message):
    """A message that could not be processed, with its original bytes (secret headers redacted)."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    # The original bytes, decoded as UTF-8 with replacement; secret header values redacted.
    value: Annotated[str, AfterValidator(redact_raw)]
    reason: Annotated[str, AfterValidator(redact_text)]
    at: AwareDatetime
