"""The write API: validate, assign ids, publish commands (API.md, "Jobs (write side)")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, FastAPI, Header, Request, Response
from pydantic import ValidationError

from duetime import job_limits, schedule
from duetime.gateway_auth import GatewayAuthentication
from duetime.http_metrics import RequestMetrics
from duetime.job_ids import JobIds
from duetime.kafka_targets import TopicPolicy
from duetime.lifecycle import Lifecycle
from duetime.merge_patch import merge_patch
from duetime.ops import NO_TELEMETRY, ops_router
from duetime.problem_docs import problem_responses
from duetime.problems import ProblemError, install, tenant_of, validation_errors
from duetime.run_ids import run_id_for
from duetime.settings import JobLimitSettings, KafkaTargetSettings, QuotaSettings
from duetime.tenant_assertion import TenantAssertions
from duetime.timeutil import iso, to_ms, utcnow
from job_service.apply import ApplyRoute, JobStore
from job_service.express import ExpressCreates
from job_service.idempotency import IdempotencyStore, body_hash
from job_service.publisher import CommandPublisher, Unavailable
from job_service.quotas import Quotas, Reservation
from job_service.quotas import install as install_quotas
from job_service.usage import UsageCache
from schemas.api import (
    NOTIFICATION_FIELDS,
    DelaySchedule,
    HttpTarget,
    JobAccepted,
    JobSpec,
    KafkaTarget,
    RunAccepted,
    RunNowRequest,
    TimerCreated,
    TimerRequest,
    denied_headers,
)
from schemas.events import CommandType, JobCommand
from schemas.redaction import has_redacted, restore_spec

# Looks up a job's tenant and current spec; None when the job does not exist.
JobLookup = Callable[[str], Awaitable[tuple[str, dict[str, Any]] | None]]
RETRY_AFTER = {"Retry-After": "2"}
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
# The two 503s (ADR 0012): the first never takes effect; the second may, if Kafka appended the
# command in time but its answer was lost or late. A create retried with the same
# Idempotency-Key yields one job either way.
NOT_ACCEPTED = "the command log is not accepting writes; the command was not accepted; retry later"
UNKNOWN_OUTCOME = ("the command log did not confirm the write in time; the command may still "
                   "take effect; retry (with the same Idempotency-Key for a create)")
# How long a PATCH of a job not yet persisted waits for the writer before it is accepted on the
# strength of its id alone (the writer then validates the merged spec; see ADR 0009).
WRITER_WAIT_SECONDS = 1.0


def _new_id() -> str:
    return uuid.uuid4().hex


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(422, "Invalid request", message, [{"field": field, "message": message}])


def _restorable(spec: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    """The spec with header values sent back as the redaction marker restored (422 if one
    has no stored value); the writer restores them again from what it stores."""
    try:
        return restore_spec(spec, stored)
    except ValueError as exc:
        raise _invalid("target.headers", str(exc)) from exc


def _check_target(spec: JobSpec, tenant: str, topics: TopicPolicy) -> None:
    if isinstance(spec.target, KafkaTarget):
        refusal = topics.refusal(tenant, spec.target.topic)
        if refusal is not None:
            raise _invalid("target.topic", refusal)


def _check_schedule(spec: JobSpec, now: datetime) -> None:
    try:
        schedule.validate(spec, now)
    except schedule.ScheduleError as exc:
        raise _invalid(exc.field, str(exc)) from exc


def _check_headers(spec: JobSpec) -> None:
    """422 naming the first header a job may not set (schemas.api.DENIED_HTTP_HEADERS)."""
    for name in denied_headers(spec.target):
        reserved = "named duetime-*" if spec.target.type == "kafka" else \
            "hop-by-hop, a proxy's or set by duetime itself"
        raise _invalid(f"target.headers.{name}", f"header {name!r} may not be set: it is {reserved}")
    for field in NOTIFICATION_FIELDS:
        notification = getattr(spec, field)
        for name in denied_headers(notification) if notification is not None else ():
            raise _invalid(f"{field}.headers.{name}", f"header {name!r} may not be set: it is "
                           "hop-by-hop, a proxy's or set by duetime itself")


def _check_limits(spec: JobSpec, limits: JobLimitSettings) -> None:
    """422 naming every field beyond this deployment's limits (duetime.job_limits)."""
    found = job_limits.violations(spec, limits)
    if found:
        raise ProblemError(422, "Invalid request", "the job exceeds this deployment's limits",
                           [{"field": v.field, "message": v.message} for v in found])


def _accepted(job_id: str) -> JobAccepted:
    return JobAccepted(job_id=job_id, links={"self": f"/jobs/{job_id}",
                                             "runs": f"/jobs/{job_id}/runs"})


def _run_options(raw: bytes) -> RunNowRequest:
    if not raw.strip():
        return RunNowRequest()
    try:
        return RunNowRequest.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, "Malformed JSON", "the request body is not valid JSON") from exc
    except ValidationError as exc:
        raise ProblemError(422, "Invalid request", "one or more fields are invalid",
                           validation_errors(exc.errors())) from exc


class JobRoutes:
    def __init__(self, publisher: CommandPublisher, idempotency: IdempotencyStore,
                 lookup: JobLookup, ids: JobIds, quotas: Quotas,
                 limits: JobLimitSettings, topics: TopicPolicy) -> None:
        self.publisher, self.idempotency, self.lookup = publisher, idempotency, lookup
        self.ids, self.quotas, self.limits, self.topics = ids, quotas, limits, topics

    async def publish_reserved(self, command: JobCommand, reservation: Reservation) -> None:
        """Publish; a command that was not accepted gives its quota room back."""
        try:
            await self.publish(command)
        except ProblemError:
            reservation.release()
            raise

    async def publish(self, command: JobCommand) -> None:
        try:
            await self.publisher.publish(command)
        except Unavailable as exc:
            raise ProblemError(503, "Service unavailable",
                               UNKNOWN_OUTCOME if exc.unknown else NOT_ACCEPTED,
                               headers=RETRY_AFTER) from exc

    async def current_spec(self, request: Request, job_id: str) -> dict[str, Any] | None:
        """The job's persisted spec; None for a job we issued that the writer has not persisted
        yet (after waiting briefly for it). 404 for ids nobody issued to this tenant."""
        tenant = tenant_of(request)
        issued = self.ids.issued(tenant, job_id)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (WRITER_WAIT_SECONDS if issued else 0)
        while True:
            found = await self.lookup(job_id)
            if found is not None:
                if found[0] != tenant:
                    break
                return found[1]
            if loop.time() >= give_up:
                break
            await asyncio.sleep(0.02)
        if issued:
            return None
        raise ProblemError(404, "Not found", f"no job {job_id}")

    async def ensure_known(self, request: Request, job_id: str) -> None:
        # An id we issued to this tenant needs no lookup: read-your-writes for commands.
        if not self.ids.issued(tenant_of(request), job_id):
            await self.current_spec(request, job_id)

    async def command(self, request: Request, kind: CommandType, job_id: str,
                      reservation: Reservation | None = None, **fields: Any) -> JobCommand:
        await self.ensure_known(request, job_id)
        cmd = JobCommand(command_id=_new_id(), type=kind, job_id=job_id,
                         tenant=tenant_of(request), issued_at=utcnow(), **fields)
        if reservation is None:
            await self.publish(cmd)
        else:
            await self.publish_reserved(cmd, reservation)
        return cmd

    def check(self, spec: JobSpec, tenant: str, now: datetime) -> None:
        """422 naming what this deployment refuses in a job the schema accepted."""
        _check_schedule(spec, now)
        _check_headers(spec)
        _check_limits(spec, self.limits)
        _check_target(spec, tenant, self.topics)

    async def create(self, tenant: str, spec: JobSpec, key: str | None) -> JobCommand:
        now = utcnow()
        self.check(spec, tenant, now)
        _restorable(spec.model_dump(mode="json"), None)  # a new job has nothing to restore
        job_id = self.ids.new(tenant)
        if key is not None:
            if not 1 <= len(key) <= 255:
                raise _invalid("Idempotency-Key", "must be 1-255 characters")
            job_id = self.ids.for_idempotency_key(tenant, key)
            digest = body_hash(spec.model_dump(mode="json"))
            if not await self.idempotency.reserve(tenant, key, digest):
                raise ProblemError(409, "Conflict",
                                   "this Idempotency-Key was used with a different body")
        return await self.publish_create(tenant, spec, job_id, now)

    async def publish_create(self, tenant: str, spec: JobSpec, job_id: str,
                             now: datetime) -> JobCommand:
        """The create of a checked spec, within the tenant's quotas."""
        reservation = await self.quotas.admit_create(tenant, spec)
        cmd = JobCommand(command_id=_new_id(), type="create", job_id=job_id, tenant=tenant,
                         issued_at=now, spec=spec)
        await self.publish_reserved(cmd, reservation)
        return cmd

    async def accept_job(self, tenant: str, spec: JobSpec,
                         key: str | None) -> tuple[str, JobAccepted]:
        """POST /jobs of a valid body: its Location and its answer (also job_service.express)."""
        cmd = await self.create(tenant, spec, key)
        assert cmd.job_id is not None
        accepted = _accepted(cmd.job_id)
        accepted.next_run_at = schedule.first_fire(spec, cmd.issued_at)
        return f"/jobs/{cmd.job_id}", accepted

    async def accept_timer(self, tenant: str, timer: TimerRequest,
                           key: str | None) -> tuple[str, TimerCreated]:
        """POST /timers of a valid body: its Location and its answer (also job_service.express)."""
        spec = JobSpec(
            name="timer",
            schedule=DelaySchedule(type="delay", seconds=timer.total_seconds),
            target=HttpTarget(type="http", url=timer.url, method="POST"),
            labels={"duetime/kind": "timer"},
        )
        cmd = await self.create(tenant, spec, key)
        assert cmd.job_id is not None
        return f"/timers/{cmd.job_id}", TimerCreated(id=cmd.job_id, time_left=timer.total_seconds)

    async def create_job(self, request: Request, response: Response, spec: JobSpec,
                         idempotency_key: IdempotencyKey = None) -> JobAccepted:
        response.headers["Location"], accepted = await self.accept_job(
            tenant_of(request), spec, idempotency_key)
        return accepted

    async def create_timer(self, request: Request, response: Response, timer: TimerRequest,
                           idempotency_key: IdempotencyKey = None) -> TimerCreated:
        response.headers["Location"], created = await self.accept_timer(
            tenant_of(request), timer, idempotency_key)
        return created

    async def replace_job(self, request: Request, job_id: str, spec: JobSpec) -> JobAccepted:
        self.check(spec, tenant_of(request), utcnow())
        if has_redacted(edited := spec.model_dump(mode="json")):
            _restorable(edited, await self.current_spec(request, job_id))
        await self.publish_update(request, job_id, spec)
        return _accepted(job_id)

    async def publish_update(self, request: Request, job_id: str, spec: JobSpec) -> JobCommand:
        """The update of a checked spec, within the tenant's quotas."""
        await self.ensure_known(request, job_id)
        reservation = await self.quotas.admit_update(tenant_of(request), job_id, spec)
        return await self.command(request, "update", job_id, reservation, spec=spec)

    async def patch_job(self, request: Request, job_id: str,
                        patch: Annotated[dict[str, Any], Body()]) -> JobAccepted:
        current = await self.current_spec(request, job_id)
        if current is not None:
            try:
                merged = JobSpec.model_validate(_restorable(merge_patch(current, patch), current))
            except ValidationError as exc:
                raise ProblemError(422, "Invalid request", "the patched job is invalid",
                                   validation_errors(exc.errors())) from exc
            self.check(merged, tenant_of(request), utcnow())
            reservation = await self.quotas.admit_update(tenant_of(request), job_id, merged)
        else:
            reservation = None  # not stored yet: the writer checks the merged job's limits
        await self.command(request, "patch", job_id, reservation, patch=patch)
        return _accepted(job_id)

    async def cancel_job(self, request: Request, job_id: str) -> JobAccepted:
        await self.command(request, "cancel", job_id)
        return _accepted(job_id)

    async def pause_job(self, request: Request, job_id: str) -> JobAccepted:
        await self.command(request, "pause", job_id)
        return _accepted(job_id)

    async def resume_job(self, request: Request, job_id: str) -> JobAccepted:
        await self.ensure_known(request, job_id)
        reservation = await self.quotas.admit_resume(tenant_of(request), job_id)
        await self.command(request, "resume", job_id, reservation)
        return _accepted(job_id)

    async def run_now(self, request: Request, job_id: str) -> RunAccepted:
        options = _run_options(await request.body())
        now = utcnow()
        await self.command(request, "run", job_id, override_overlap=options.override_overlap,
                           run_at=now)
        return RunAccepted(job_id=job_id, run_id=run_id_for(job_id, to_ms(now)))

    async def preview_spec(self, spec: JobSpec, count: int = 10) -> dict[str, Any]:
        if not 1 <= count <= 1000:
            raise _invalid("count", "must be between 1 and 1000")
        now = utcnow()
        _check_schedule(spec, now)
        # Up to 1000 cron matches is CPU work (~0.14 s): off the event loop, bounded in
        # number by `count`, in time by the schedule's bounded search (duetime.schedule).
        times = await asyncio.to_thread(schedule.preview, spec, now, now, count)
        return {"next_run_times": [iso(t) for t in times]}

    def router(self) -> APIRouter:
        r = APIRouter()
        # An Idempotency-Key used before with another body (the rest: duetime.problem_docs).
        reused_key = problem_responses(409)
        r.add_api_route("/jobs", self.create_job, methods=["POST"], status_code=202,
                        responses=reused_key)
        r.add_api_route("/jobs:preview", self.preview_spec, methods=["POST"])
        r.add_api_route("/timers", self.create_timer, methods=["POST"], status_code=201,
                        responses=reused_key)
        r.add_api_route("/jobs/{job_id}", self.replace_job, methods=["PUT"], status_code=202)
        r.add_api_route("/jobs/{job_id}", self.patch_job, methods=["PATCH"], status_code=202)
        r.add_api_route("/jobs/{job_id}", self.cancel_job, methods=["DELETE"], status_code=202)
        r.add_api_route("/jobs/{job_id}/pause", self.pause_job, methods=["POST"], status_code=202)
        r.add_api_route("/jobs/{job_id}/resume", self.resume_job, methods=["POST"],
                        status_code=202)
        for path in ("/jobs/{job_id}/run", "/jobs/{job_id}/runNow"):
            r.add_api_route(path, self.run_now, methods=["POST"], status_code=202)
        return r


def build_app(lifecycle: Lifecycle, publisher: CommandPublisher, idempotency: IdempotencyStore,
              lookup: JobLookup, ids: JobIds, assertions: TenantAssertions,
              quotas: Quotas | None = None,
              limits: JobLimitSettings | None = None,
              topics: TopicPolicy | None = None,
              store: JobStore | None = None, express: bool = True) -> FastAPI:
    """`quotas`, `limits` and `topics` default to the environment's settings, usage counted in
    memory; `POST /jobs:apply` is served with a `store` to find jobs by name in; `express`
    answers valid creates without FastAPI's machinery (job_service.express)."""
    settings = QuotaSettings()
    quotas = quotas or Quotas(settings, UsageCache(None, settings.quota_refresh_seconds))
    # The API's document is both services', served by the search service (search_service/api_docs.py).
    app = FastAPI(title="duetime job service", docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_TELEMETRY)
    install(app)
    routes = JobRoutes(publisher, idempotency, lookup, ids, quotas, limits or JobLimitSettings(),
                       topics or TopicPolicy(KafkaTargetSettings()))
    job_router = routes.router()
    if express:
        # Inside the gateway check (added before it): it needs the tenant the check verified.
        app.add_middleware(ExpressCreates, routes=routes, router=job_router, fastapi=app)
    app.add_middleware(GatewayAuthentication, assertions=assertions)
    # Outermost (added last): times every answer, the 401s of the line above included.
    app.add_middleware(RequestMetrics)
    install_quotas(app)
    app.include_router(ops_router(lifecycle))
    if store is not None:
        # Before the job routes: /jobs:apply is no /jobs/{job_id}, but keep it first all the same.
        app.include_router(ApplyRoute(routes, store, ids).router())
    app.include_router(job_router)
    return app
