"""Public REST models (API.md). Unknown fields are rejected everywhere."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

MAX_DELAY_SECONDS = 10 * 366 * 24 * 3600  # ten years: anything longer is a typo
# Every instant a client may give. Before 1970 nothing can be due that was not already
# missed; the upper bound leaves centuries of room for the schedule arithmetic (start + n *
# every, cron scans, delays of ten years) below Python's year 9999, and both lie well inside
# Postgres timestamptz and the epoch-millisecond scores of the due-set.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 64
NUL = "\x00"


def storable_text(text: str) -> str:
    """Text we did not choose (a webhook's answer, an error message), made storable."""
    return text.replace(NUL, "\ufffd") if NUL in text else text


# Free text the system writes (errors, excerpts, reasons): a NUL is replaced, never refused.
StorableText = Annotated[str, BeforeValidator(lambda v: storable_text(v) if isinstance(v, str) else v)]


def _check_text(text: str, where: str) -> None:
    if NUL in text:
        raise ValueError(f"{where} must not contain a NUL character (\\u0000)")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{where} must be valid Unicode (no lone surrogates)") from None


def _check_scalar(value: object, where: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{where} must be an integer that fits in 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number")
    if isinstance(value, datetime) and value.tzinfo is not None \
            and not EARLIEST <= value < LATEST:
        raise ValueError(f"{where} must be from 1970-01-01T00:00:00Z to before "
                         "9000-01-01T00:00:00Z")


def _check_str(value: Any, where: str) -> None:
    if NUL in value or not value.isascii():
        _check_text(value, where)


def _check_int(value: Any, where: str) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{where} must be an integer that fits in 64 bits")


def _check_float(value: Any, where: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number")


def _check_instant(value: Any, where: str) -> None:
    if value.tzinfo is not None and not EARLIEST <= value < LATEST:
        raise ValueError(f"{where} must be from 1970-01-01T00:00:00Z to before "
                         "9000-01-01T00:00:00Z")


def _always_storable(value: Any, where: str) -> None:
    pass


# What check_storable does for a value of exactly one of these types (not a subclass).
_PLAIN_CHECKS: dict[type, Callable[[Any, str], None]] = {
    str: _check_str, int: _check_int, float: _check_float, datetime: _check_instant,
    bool: _always_storable, type(None): _always_storable,
}


def check_storable(value: object, where: str, depth: int = 0) -> None:
    """Raise ValueError naming `where` if Postgres, Kafka or the schedule math cannot hold
    `value`: a NUL or a lone surrogate in any string (keys too), an integer beyond 64 bits,
    a non-finite number, an instant out of range, JSON nested deeper than MAX_JSON_DEPTH."""
    # Every field of every command and run request comes through here (issue 8: it was most
    # of the CPU of decoding one): the exact types JSON decodes to take a short path to the
    # same verdict as check_any_storable (tests/unit/test_storable_check.py holds them equal).
    plain = _PLAIN_CHECKS.get(type(value))
    if plain is not None:
        plain(value, where)
    else:
        check_any_storable(value, where, depth)


def check_any_storable(value: object, where: str, depth: int = 0) -> None:
    """check_storable for a value of any type (subclasses, containers, models)."""
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict | list | tuple):
        if depth >= MAX_JSON_DEPTH:
            raise ValueError(f"{where} is nested more than {MAX_JSON_DEPTH} levels deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                _check_text(key, f"{where} key {key[:50]!r}")
            check_storable(item, f"{where}[{key!r}]", depth + 1)
    elif not isinstance(value, BaseModel):  # nested models checked their own fields
        _check_scalar(value, where)


def _storable_field(value: Any, info: ValidationInfo) -> Any:
    check_storable(value, info.field_name or "value")
    return value


def storable(*fields: str) -> Any:
    """The Storable check, on the `fields` of a model whose type lets through what cannot be
    stored: free text, numbers without bounds, instants, JSON values, nullable fields.

    Fields of other types (booleans, literals, nested models, bounded numbers, strings with
    an ASCII pattern) hold nothing it could refuse; checking them too was most of the CPU of
    decoding a command or a run request (issue 8, ADR 0039). Define it before the model's own
    validators, so it runs first on a field (as when it checked every field);
    tests/unit/test_storable_check.py fails when a model leaves out one of its such fields.
    """
    return field_validator(*fields)(_storable_field)


class Storable(BaseModel):
    """Every field of every subclass holds only what can be stored and scheduled (rule 8):
    each subclass names the fields that need the check (`_storable = storable(...)`)."""


class Strict(Storable):
    # Validation errors end up in job.rejected reasons and logs: never quote the input (secrets).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    if any(c in value for c in "\r\n\t "):
        raise ValueError("must not contain whitespace or control characters")
    return value


class OnceSchedule(Strict):
    type: Literal["once"]
    at: AwareDatetime

    _storable = storable("at")


class DelaySchedule(Strict):
    type: Literal["delay"]
    seconds: float = Field(gt=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False)


class NowSchedule(Strict):
    type: Literal["now"]


class IntervalSchedule(Strict):
    type: Literal["interval"]
    every_seconds: int = Field(ge=1, le=MAX_DELAY_SECONDS)
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None

    _storable = storable("start_at", "end_at")

    @model_validator(mode="after")
    def _window(self) -> IntervalSchedule:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


class CronSchedule(Strict):
    type: Literal["cron"]
    expression: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", min_length=1, max_length=64)
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None

    _storable = storable("expression", "timezone", "start_at", "end_at")

    @model_validator(mode="after")
    def _window(self) -> CronSchedule:
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


Schedule = Annotated[
    OnceSchedule | DelaySchedule | NowSchedule | IntervalSchedule | CronSchedule,
    Field(discriminator="type"),
]
ONE_SHOT_TYPES = frozenset({"once", "delay", "now"})

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HEADER_VALUE_MAX_CHARS = 8192
HeaderMap = Annotated[dict[str, Annotated[str, Field(max_length=HEADER_VALUE_MAX_CHARS)]],
                      Field(max_length=64)]
# Headers a job may not set (issue 7, hole 4): they frame the request (a user Transfer-Encoding
# beside the client's Content-Length is request smuggling), route it, or are duetime's own
# (the receiver trusts them: run identity, dedupe, signatures). Compared case-insensitively.
DENIED_HTTP_HEADERS = frozenset({
    "host", "transfer-encoding", "content-length", "connection", "upgrade", "keep-alive", "te",
    "trailer", "idempotency-key", "webhook-id", "webhook-timestamp", "webhook-signature",
})
DENIED_HTTP_HEADER_PREFIXES = ("proxy-", "x-duetime-")
# A run stores at most this much of the answer, and only when its job set store_response (API.md).
RESPONSE_EXCERPT_BYTES = 1024
# The longest an alert notification's receiver may take to answer, per attempt.
NOTIFY_TIMEOUT_MAX_SECONDS = 60


def is_denied_http_header(name: str) -> bool:
    lower = name.lower()
    return lower in DENIED_HTTP_HEADERS or lower.startswith(DENIED_HTTP_HEADER_PREFIXES)


def is_denied_kafka_header(name: str) -> bool:
    return name.lower().startswith("duetime-")


def denied_headers(target: HttpTarget | KafkaTarget | NotificationTarget | SandboxedTarget,
                   ) -> list[str]:
    """The headers of `target` a new or edited job may not set (the job service refuses them;
    the executor drops them from jobs stored before)."""
    if isinstance(target, SandboxedTarget):
        return []  # no headers: its environment goes to the tenant's own code only
    denied = is_denied_kafka_header if isinstance(target, KafkaTarget) else is_denied_http_header
    return [name for name in target.headers if denied(name)]


def check_header_map(value: dict[str, str]) -> dict[str, str]:
    for name, val in value.items():
        if not name or any(c in name for c in "\r\n: \t") or any(c in val for c in "\r\n"):
            raise ValueError(f"invalid header {name!r}")
    return value


class HttpTarget(Strict):
    type: Literal["http"]
    url: str = Field(max_length=4096)
    method: HttpMethod = "POST"
    headers: HeaderMap = Field(default_factory=dict)
    body: Any = None
    timeout_seconds: float = Field(default=30, gt=0, le=3600, allow_inf_nan=False)
    success_codes: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, max_length=100
    )
    # Store the first RESPONSE_EXCERPT_BYTES of the answer on the run (opt-in: an answer may hold
    # what its tenant should not read back, and it costs storage on every run).
    store_response: StrictBool = False

    _storable = storable("url", "headers", "body", "success_codes")

    _url = field_validator("url")(check_http_url)
    _headers = field_validator("headers")(check_header_map)


class KafkaTarget(Strict):
    type: Literal["kafka"]
    topic: str = Field(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")
    key: str | None = Field(default=None, max_length=1024)
    value: Any = None
    headers: HeaderMap = Field(default_factory=dict)

    _storable = storable("key", "value", "headers")


# Command targets (issue 9, ADR 0026): argv, never a shell string. The sandbox checks all of
# this again before it starts anything (executor/command/spec.py): what reaches it decides
# paths and mounts on the host.
MAX_COMMAND_ARGS = 4096
MAX_COMMAND_FILES = 1000
MAX_ENV_VARS = 256
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# The relay between the sandbox's loopback and the run's egress proxy is a python3 process
# (ADR 0038): below this address-space limit it cannot start.
NETWORK_MIN_MEMORY_MB = 32


def check_relative_path(text: str) -> str:
    """A path inside the run's directory: relative, no `..`, `.` or empty segments."""
    if not text or len(text) > 1024:
        raise ValueError("must be a relative path of 1 to 1024 characters")
    if text.startswith("/") or any(part in ("", ".", "..") for part in text.split("/")):
        raise ValueError(f"{text[:80]!r} must be a relative path without '.', '..' or '//' "
                         "(files live in the run's own directory)")
    return text


RelativePath = Annotated[str, AfterValidator(check_relative_path)]


class CommandLimits(Strict):
    """Per-run resource limits (rlimits in the sandbox, ADR 0026)."""

    memory_mb: int = Field(default=512, ge=16, le=65536)
    cpu_seconds: int = Field(default=60, ge=1, le=86400)
    output_bytes: int = Field(default=10 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024)


# A key under the tenant's `sources/` in the object store: segments as duetime.objects.keys
# accepts them (no `.`, `..` or empty segment can match).
OBJECT_PATH_PATTERN = (r"^[A-Za-z0-9_][A-Za-z0-9_.=-]{0,199}"
                       r"(/[A-Za-z0-9_][A-Za-z0-9_.=-]{0,199}){0,15}$")


class Source(Strict):
    """What to put into the run's directory first (seed 001): an object the tenant stored
    under `sources/`; a `.tar`, `.tar.gz` or `.tgz` is unpacked, any other is one file."""

    object: str = Field(min_length=1, max_length=800, pattern=OBJECT_PATH_PATTERN)


class SandboxedTarget(Strict):
    """What command and steps targets share: the sandbox they run in (ADR 0026, 0031)."""

    source: Source | None = None

    env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)],
              Annotated[str, Field(max_length=32768)]] = Field(
        default_factory=dict, max_length=MAX_ENV_VARS)
    files: dict[RelativePath, str] = Field(default_factory=dict, max_length=MAX_COMMAND_FILES)
    working_dir: Annotated[str, Field(max_length=1024)] = ""
    # true: HTTP(S) through the run's egress proxy, under the webhooks' policy (ADR 0038).
    network: StrictBool = False
    timeout_seconds: float = Field(default=60, gt=0, le=86400, allow_inf_nan=False)
    limits: CommandLimits = Field(default_factory=CommandLimits)

    _storable = storable("env", "files", "working_dir")

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, value: str) -> str:
        return check_relative_path(value) if value else value

    @model_validator(mode="after")
    def _network_memory(self) -> SandboxedTarget:
        if self.network and self.limits.memory_mb < NETWORK_MIN_MEMORY_MB:
            raise ValueError(f"network: true needs limits.memory_mb >= {NETWORK_MIN_MEMORY_MB} "
                             "(the sandbox's relay to the egress proxy runs within it)")
        return self


class CommandTarget(SandboxedTarget):
    type: Literal["command"]
    command: list[Annotated[str, Field(max_length=65536)]] = Field(
        min_length=1, max_length=MAX_COMMAND_ARGS)
    stdin: str | None = Field(default=None, max_length=1024 * 1024)

    _storable = storable("env", "files", "working_dir", "command", "stdin")

    @field_validator("command")
    @classmethod
    def _program(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("the program (command[0]) must not be empty")
        return value


STEP_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"
MAX_STEPS = 100


class Step(Strict):
    name: str = Field(pattern=STEP_NAME_PATTERN)
    run: str = Field(min_length=1, max_length=65536)  # a script for `sh -e`

    _storable = storable("run")


class StepsTarget(SandboxedTarget):
    """Seed 003's build-and-test steps: in order, in one sandbox and one working directory,
    each through `sh -e`; the run stops at the first step that fails."""

    type: Literal["steps"]
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)

    _storable = storable("env", "files", "working_dir", "steps")

    @field_validator("steps")
    @classmethod
    def _unique(cls, value: list[Step]) -> list[Step]:
        names = [step.name for step in value]
        if len(set(names)) != len(names):
            raise ValueError("step names must be unique (each step's output is kept by name)")
        return value


Target = Annotated[HttpTarget | KafkaTarget | CommandTarget | StepsTarget,
                   Field(discriminator="type")]
SANDBOXED_TARGET_TYPES = frozenset({"command", "steps"})


# The notification fields of a job (ADR 0033), in the order the API documents them.
NOTIFICATION_FIELDS = ("on_failure", "on_late", "on_recovered")
MAX_LATE_AFTER_SECONDS = 7 * 86400


class NotificationTarget(Strict):
    """Where a job's alerts are sent (`on_failure`, `on_late`, `on_recovered`; ADR 0033): an
    HTTP webhook validated, egress-checked and signed like an `http` target. Its body is the
    alert (JSON), so it has no `body`, `success_codes` or `store_response` of its own."""

    type: Literal["http"] = "http"
    url: str = Field(max_length=4096)
    method: Literal["POST", "PUT"] = "POST"
    headers: HeaderMap = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10, gt=0, le=NOTIFY_TIMEOUT_MAX_SECONDS,
                                   allow_inf_nan=False)

    _storable = storable("url", "headers")

    _url = field_validator("url")(check_http_url)
    _headers = field_validator("headers")(check_header_map)


class RetryPolicy(Strict):
    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_delay_seconds: float = Field(default=1, ge=0, le=86400, allow_inf_nan=False)
    max_delay_seconds: float = Field(default=300, ge=0, le=86400, allow_inf_nan=False)
    multiplier: float = Field(default=2.0, ge=1, le=100, allow_inf_nan=False)
    jitter: bool = True


Labels = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._/-]+$")],
        Annotated[str, Field(max_length=255)],
    ],
    Field(max_length=64),
]


class JobSpec(Strict):
    name: str = Field(min_length=1, max_length=200)
    schedule: Schedule
    target: Target
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    overlap: Literal["allow", "forbid", "replace"] = "allow"
    catchup: Literal["latest", "all", "none"] = "latest"
    catchup_window_seconds: int = Field(default=3600, ge=1, le=7 * 86400)
    priority: int = Field(default=5, ge=0, le=9)
    max_runs: int | None = Field(default=None, ge=1)
    labels: Labels = Field(default_factory=dict)
    payload: Any = None
    on_failure: NotificationTarget | None = None
    on_late: NotificationTarget | None = None
    on_recovered: NotificationTarget | None = None
    # A run that starts more than this long after it was due is late (an alert; on_late).
    # Checked even when left out (validate_default), so a missing one is named in the error.
    late_after_seconds: int | None = Field(default=None, ge=1, le=MAX_LATE_AFTER_SECONDS,
                                           strict=True, validate_default=True)

    _storable = storable("name", "max_runs", "labels", "payload", "late_after_seconds")

    @field_validator("late_after_seconds")
    @classmethod
    def _late(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("on_late") is not None:
            raise ValueError("on_late needs late_after_seconds: how long after its due time a "
                             "run that has not started is late")
        return value

    @property
    def one_shot(self) -> bool:
        return self.schedule.type in ONE_SHOT_TYPES


class JobAccepted(BaseModel):
    job_id: str
    status: Literal["accepted"] = "accepted"
    next_run_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)


class FieldChange(BaseModel):
    """One field an apply changes (`from` the stored value `to` the file's; null: absent)."""

    model_config = ConfigDict(populate_by_name=True)
    path: str
    before: Any = Field(alias="from")
    after: Any = Field(alias="to")


class AppliedJob(BaseModel):
    """What `POST /jobs:apply` did (or, with dry_run, would do) with one job of the file."""

    index: int
    name: str
    job_id: str
    result: Literal["created", "updated", "unchanged"]
    changes: list[FieldChange] = Field(default_factory=list)


class ApplyResult(BaseModel):
    dry_run: bool
    created: int
    updated: int
    unchanged: int
    items: list[AppliedJob]


class RunAccepted(BaseModel):
    job_id: str
    run_id: str
    status: Literal["accepted"] = "accepted"


class RunNowRequest(Strict):
    override_overlap: StrictBool = False


class TimerRequest(Strict):
    hours: int = Field(default=0, ge=0, le=24 * 366 * 10)
    minutes: int = Field(default=0, ge=0, le=60 * 24 * 366 * 10)
    seconds: int = Field(default=0, ge=0, le=MAX_DELAY_SECONDS)
    url: str = Field(max_length=4096)

    _storable = storable("url")

    _url = field_validator("url")(check_http_url)

    @field_validator("hours", "minutes", "seconds", mode="before")
    @classmethod
    def _integers_only(cls, value: Any) -> Any:
        # JSON true/1.5/"3" must not sneak in as integers.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return value

    @property
    def total_seconds(self) -> int:
        return self.hours * 3600 + self.minutes * 60 + self.seconds

    @model_validator(mode="after")
    def _positive(self) -> TimerRequest:
        if self.total_seconds <= 0:
            raise ValueError("hours, minutes and seconds must add up to more than 0")
        if self.total_seconds > MAX_DELAY_SECONDS:
            raise ValueError("a timer may be at most ten years long")
        return self


class TimerCreated(BaseModel):
    id: str
    time_left: int


class ProblemField(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemField] | None = None
