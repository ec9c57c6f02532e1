"""`POST /jobs:apply`: a jobs file, created or updated by name within the caller's tenant (ADR 0037).

Every item is checked before any command is sent (all or nothing on a 422); then each changed
job goes through the same create and update paths as `POST /jobs` and `PUT /jobs/{id}` (quotas,
Kafka, read-your-writes). An unchanged job sends nothing. `?dry_run=true` answers the same and
sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import asyncpg
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from duetime.job_ids import JobIds
from duetime.problems import ProblemError, tenant_of, validation_errors
from duetime.sql import load_queries
from duetime.timeutil import utcnow
from job_service import manifest
from job_service.spec_diff import Change, diff
from schemas.api import AppliedJob, ApplyResult, FieldChange, JobSpec
from schemas.redaction import restore_spec

if TYPE_CHECKING:
    from job_service.api import JobRoutes

QUERIES = load_queries("job_service")
# Ids of jobs an apply creates are derived from the name and a generation (see creation_ids):
# this many generations are looked up at once.
GENERATIONS = 8


@dataclass(frozen=True)
class StoredJob:
    job_id: str
    name: str
    spec: dict[str, Any]


class JobStore(Protocol):
    async def named(self, tenant: str, names: Sequence[str]) -> list[StoredJob]:
        """The tenant's jobs with these names, in any state but cancelled."""

    async def existing(self, job_ids: Sequence[str], tenant: str,
                       names: Sequence[str]) -> set[str]:
        """Which of these ids any job (of any tenant, in any state) has — but the tenant's own
        live jobs named one of `names`: stored since the by-name lookup, they are the jobs this
        apply names again, not ids to skip."""


class PostgresJobStore:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool

    async def named(self, tenant: str, names: Sequence[str]) -> list[StoredJob]:
        rows = await self.pool.fetch(QUERIES["jobs_named"], tenant, list(names))
        return [StoredJob(row["job_id"], row["name"], row["spec"]) for row in rows]

    async def existing(self, job_ids: Sequence[str], tenant: str,
                       names: Sequence[str]) -> set[str]:
        return {row["job_id"] for row in await self.pool.fetch(
            QUERIES["existing_job_ids"], list(job_ids), tenant, list(names))}


@dataclass
class Planned:
    """One item: its spec, and what applying it means."""

    index: int
    spec: JobSpec
    result: Literal["created", "updated", "unchanged"] = "created"
    job_id: str = ""
    changes: list[Change] = field(default_factory=list)


class Invalid:
    """The 422's errors, each naming its item: `jobs[3].schedule` — and the job's name."""

    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, index: int, item: Any, spec_field: str, message: str) -> None:
        where = manifest.item_field(spec_field, item)
        name = item.get("name") if isinstance(item, dict) else None
        self.errors.append({"field": f"jobs[{index}]" + (f".{where}" if where else ""),
                            "message": f"job {name!r}: {message}" if isinstance(name, str)
                            else message})

    def raise_any(self) -> None:
        if self.errors:
            raise ProblemError(422, "Invalid request",
                               f"{len(self.errors)} problem(s) in the jobs file; nothing was applied",
                               self.errors)


def normalized(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec as today's schema dumps it (a field added since shows as its default,
    not as a change); as stored when it no longer validates."""
    try:
        return JobSpec.model_validate(stored).model_dump(mode="json")
    except ValidationError:
        return stored


def _applied(plan: Planned) -> AppliedJob:
    return AppliedJob(index=plan.index, name=plan.spec.name, job_id=plan.job_id,
                      result=plan.result,
                      changes=[FieldChange.model_validate({"path": c.path, "from": c.before,
                                                           "to": c.after})
                               for c in plan.changes])


def _only_dry_run(request: Request) -> None:
    """Unknown or repeated query parameters are refused, as everywhere (API.md)."""
    for name in {k for k, _ in request.query_params.multi_items()}:
        if name != "dry_run":
            raise ProblemError(422, "Invalid request", f"unknown parameter {name!r}",
                               [{"field": name, "message": "unknown parameter"}])
        if len(request.query_params.getlist(name)) > 1:
            raise ProblemError(422, "Invalid request", "dry_run is given twice",
                               [{"field": name, "message": "given more than once"}])


async def _body(request: Request) -> bytes:
    """The body, never more than the bound (a Content-Length may be absent or lie)."""
    too_large = ProblemError(413, "Payload too large",
                             f"request body exceeds {manifest.MAX_BODY_BYTES // 1024} KiB")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > manifest.MAX_BODY_BYTES:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > manifest.MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class ApplyRoute:
    def __init__(self, jobs: JobRoutes, store: JobStore, ids: JobIds) -> None:
        self.jobs, self.store, self.ids = jobs, store, ids

    def _checked(self, items: list[Any], tenant: str, now: datetime) -> list[Planned]:
        """Every item as a job spec the service accepts; a 422 naming each problem if not."""
        invalid, plans, seen = Invalid(), [], dict[str, int]()
        for index, item in enumerate(items):
            try:
                spec = JobSpec.model_validate(manifest.spec_of(item))
                self.jobs.check(spec, tenant, now)
                self.jobs.quotas.check_alone(spec)
            except manifest.ItemInvalid as exc:
                invalid.add(index, item, exc.error.field, exc.error.message)
                continue
            except ValidationError as exc:
                for error in validation_errors(exc.errors()):
                    invalid.add(index, item, "" if error["field"] == "body" else error["field"],
                                error["message"])
                continue
            except ProblemError as exc:
                for error in exc.errors or [{"field": "", "message": exc.detail or exc.title}]:
                    invalid.add(index, item, error["field"], error["message"])
                continue
            if spec.name in seen:
                invalid.add(index, item, "name", f"the name is also jobs[{seen[spec.name]}]'s: "
                            "each job of a file needs a name of its own")
            seen.setdefault(spec.name, index)
            plans.append(Planned(index, spec))
        invalid.raise_any()
        return plans

    async def _matched(self, plans: list[Planned], items: list[Any], tenant: str) -> None:
        """Each plan against the tenant's job of its name: an update, unchanged, or a create."""
        found: dict[str, list[StoredJob]] = {}
        for job in await self.store.named(tenant, [p.spec.name for p in plans]):
            found.setdefault(job.name, []).append(job)
        invalid = Invalid()
        for plan in plans:
            matches = found.get(plan.spec.name, [])
            if len(matches) > 1:
                ids = ", ".join(job.job_id for job in matches[:5])
                invalid.add(plan.index, items[plan.index], "name",
                            f"{len(matches)} jobs of this tenant have this name ({ids}): apply "
                            "cannot choose; cancel or rename all but one")
            elif matches:
                self._compare(plan, matches[0], items, invalid)
        invalid.raise_any()

    def _compare(self, plan: Planned, stored: StoredJob, items: list[Any], invalid: Invalid) -> None:
        try:
            # A header sent back as the redaction marker keeps its stored value (write-only).
            wanted = JobSpec.model_validate(restore_spec(plan.spec.model_dump(mode="json"),
                                                         stored.spec))
        except ValueError as exc:
            invalid.add(plan.index, items[plan.index], "target.headers", str(exc))
            return
        plan.spec, plan.job_id = wanted, stored.job_id
        plan.changes = diff(normalized(stored.spec), wanted.model_dump(mode="json"))
        plan.result = "updated" if plan.changes else "unchanged"

    async def _creation_ids(self, tenant: str, plans: list[Planned]) -> None:
        """A new job's id: derived from its name and the first generation no job has, so an
        apply retried (after a 503, or before the writer stored the first) names the same job
        instead of making a second; a cancelled or renamed job keeps its generation taken."""
        todo, first = [p for p in plans if p.result == "created"], 0
        while todo:
            candidates = {p.index: [self.ids.for_idempotency_key(
                tenant, f"\x00apply\x00{p.spec.name}\x00{g}")
                for g in range(first, first + GENERATIONS)] for p in todo}
            taken = await self.store.existing([i for ids in candidates.values() for i in ids],
                                              tenant, [p.spec.name for p in todo])
            for plan in todo:
                plan.job_id = next((i for i in candidates[plan.index] if i not in taken), "")
            todo, first = [p for p in todo if not p.job_id], first + GENERATIONS

    async def _carry_out(self, request: Request, plans: list[Planned], now: datetime) -> None:
        tenant = tenant_of(request)
        for done, plan in enumerate(plans):
            try:
                if plan.result == "created":
                    await self.jobs.publish_create(tenant, plan.spec, plan.job_id, now)
                elif plan.result == "updated":
                    await self.jobs.publish_update(request, plan.job_id, plan.spec)
            except ProblemError as exc:
                # Applying is convergent: applied ones show as unchanged the next time.
                exc.detail = (f"{exc.detail} (jobs[{plan.index}] {plan.spec.name!r}; the {done} "
                              "job(s) before it were applied: apply the file again to finish)")
                raise

    async def apply(self, request: Request, response: Response,
                    dry_run: bool = False) -> ApplyResult:
        tenant = tenant_of(request)
        _only_dry_run(request)
        kind = manifest.media_type(request.headers.get("content-type"))
        items = manifest.items_of(manifest.parse(await _body(request), kind))
        now = utcnow()
        plans = self._checked(items, tenant, now)
        await self._matched(plans, items, tenant)
        await self._creation_ids(tenant, plans)
        if not dry_run:
            await self._carry_out(request, plans, now)
        response.status_code = 200 if dry_run else 202
        counts = {r: sum(p.result == r for p in plans) for r in ("created", "updated", "unchanged")}
        return ApplyResult(dry_run=dry_run, items=[_applied(p) for p in plans], **counts)

    def router(self) -> APIRouter:
        r = APIRouter()
        body = {"required": True, "content": {
            media: {"schema": {"oneOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/JobSpec"}},
                {"type": "object", "properties": {"jobs": {
                    "type": "array", "items": {"$ref": "#/components/schemas/JobSpec"}}}}]}}
            for media in ("application/json", "application/yaml")}}
        r.add_api_route(
            "/jobs:apply", self.apply, methods=["POST"], status_code=202,
            response_model=ApplyResult, response_model_by_alias=True,
            responses={200: {"model": ApplyResult, "description": "dry_run: what would be done"},
                       415: {"description": "Unsupported media type"}},
            openapi_extra={"requestBody": body},
            summary="Create or update jobs by name from a JSON or YAML jobs file")
        return r
