"""The command executor service (`duetime run command_executor`, ADR 0026 and 0031).

Reads the priority lanes `duetime.runs.cmd.high|normal|low`, runs each request in its own
bubblewrap sandbox, streams the output into the object store, and reports statuses on
`duetime.runs.status` like the webhook executor, through the same due-set protocol (claims,
leases, overlap, retries: duetime.attempts). Its own process: never the webhook executor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
from datetime import timedelta

from pydantic import Field
from redis.exceptions import RedisError

from duetime import kafka
from duetime.attempts import sleep_until
from duetime.due_set import DueSet
from duetime.lifecycle import Lifecycle
from duetime.objects import ObjectStore
from duetime.objects.retention import remove_expired_output
from duetime.objects.settings import ObjectStoreSettings, open_store
from duetime.ops import ops_app, serve
from duetime.redis_client import redis_client
from duetime.settings import HttpSettings, KafkaSettings, RedeliverySettings, RedisSettings
from duetime.timeutil import utcnow
from executor.command.lanes import LaneIntake
from executor.command.runner import CommandRunner
from executor.command.sandbox import Sandbox, SandboxSettings
from executor.command.uids import processes_of
from executor.egress import EgressSettings

log = logging.getLogger(__name__)
GROUP = "duetime-command-executor"


class Settings(KafkaSettings, RedisSettings, RedeliverySettings, HttpSettings, EgressSettings):
    http_port: int = 18107
    # Commands run at most this many at once (each holds a sandbox uid: at most its slots).
    max_in_flight: int = Field(default=4, ge=1, le=10_000)
    lease_ms: int = Field(default=10_000, ge=500)
    executor_id: str = ""


async def watch_aborts(runner: CommandRunner, until: asyncio.Event) -> None:
    """Kill cancelled or replaced runs until the intake drained: cancels win during a drain."""
    while not await sleep_until(until, 0.2):
        try:
            await runner.watch_aborts()
        except (RedisError, OSError) as exc:
            log.warning("abort check failed", extra={"error": repr(exc)})


async def expire_output(store: ObjectStore, settings: ObjectStoreSettings,
                        until: asyncio.Event) -> None:
    """Removes command output past its retention, now and every `output_sweep_seconds`.

    Each instance sweeps the store it writes to (a filesystem store is its host's alone); on a
    shared S3 bucket they all do, which is harmless: deleting is idempotent (ADR 0038).
    """
    while True:
        cutoff = utcnow() - timedelta(days=settings.output_retention_days)
        try:
            await remove_expired_output(store, cutoff)
        except Exception as exc:  # a store that is down must not stop commands; next round
            log.warning("output retention sweep failed", extra={"error": repr(exc)})
        if await sleep_until(until, settings.output_sweep_seconds):
            return


RUN_DIR_NAME = re.compile(r"[0-9a-f]{24}")  # Sandbox.run's secrets.token_hex(12)


async def reclaim(sandbox: Sandbox) -> int:
    """What a crashed predecessor of this instance left: processes of its sandbox uids (this
    instance's alone, ADR 0031) are killed, run directories removed. Returns how many dirs."""
    if sandbox.switch_uid:
        first = sandbox.settings.first_uid
        for uid in range(first, first + sandbox.settings.slots):
            for pid in await asyncio.to_thread(processes_of, uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    stale = [entry for entry in sandbox.scratch.iterdir()
             if RUN_DIR_NAME.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()]
    for entry in stale:
        await asyncio.to_thread(shutil.rmtree, entry, True)
    if stale:
        log.warning("stale sandbox run directories removed", extra={"count": len(stale)})
    return len(stale)


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    sandbox_settings = SandboxSettings()
    store_settings = ObjectStoreSettings()
    # `network: true` runs reach what webhooks may reach, no more (ADR 0038).
    sandbox = Sandbox(sandbox_settings, settings.egress_policy)
    await reclaim(sandbox)
    slots = min(settings.max_in_flight, sandbox_settings.slots)
    redis = redis_client(settings)
    async with kafka.producer(settings, "command-executor") as producer, \
            open_store(store_settings) as store:
        due_set = DueSet(redis, settings.due_shards,
                         redelivery_window_s=settings.run_redelivery_seconds)
        runner = CommandRunner(due_set, producer, store, sandbox, settings.lease_ms,
                               settings.executor_id)
        intake = LaneIntake(lifecycle, settings, GROUP, runner.id, runner.handle, slots,
                            per_lane=slots)
        try:
            await lifecycle.supervise({
                "http": serve(ops_app(lifecycle), settings.http_host, settings.http_port,
                              lifecycle),
                "consume": intake.consume(),
                "commit": intake.commit_loop(),
                "leases": runner.leases.maintain(intake.drained),
                "aborts": watch_aborts(runner, intake.drained),
                "clock": runner.clock.keep_synced(intake.drained),
                "retention": expire_output(store, store_settings, intake.drained),
            })
        finally:
            await redis.aclose()
