"""Kafka topic names and the partition counts the services are built for."""

from __future__ import annotations

JOB_COMMANDS = "duetime.jobs.commands"
JOB_COMMANDS_DLQ = "duetime.jobs.commands.dlq"
JOB_EVENTS = "duetime.jobs.events"
RUNS = "duetime.runs"
RUNS_STATUS = "duetime.runs.status"
RUNS_DLQ = "duetime.runs.dlq"
# Alerts of tenants' jobs (ADR 0033): written by the writer, read by the executors' notifier.
ALERTS = "duetime.alerts"
# Command runs go to priority lanes instead of RUNS (ADR 0031): the command executor reads the
# higher lanes first, so a flood of low-priority builds never delays a high-priority one.
COMMAND_LANES = ("high", "normal", "low")
COMMAND_RUNS = {lane: f"duetime.runs.cmd.{lane}" for lane in COMMAND_LANES}
# Commands from outside producers: one topic per tenant, writable only by that tenant's Kafka
# principal (ingress-<tenant>), so the writer takes the tenant from the topic, never from the
# body (ADR 0015). `duetime.jobs.commands` is written by the job service alone.
INGRESS_PREFIX = "duetime.ingress."
INGRESS_PARTITIONS = 6
# Every topic whose name starts with one of these is duetime's or Kafka's own: no Kafka target
# may ever publish to it (duetime.kafka_targets).
INTERNAL_PREFIXES = ("duetime.", "__")


def ingress_topic(tenant: str) -> str:
    return f"{INGRESS_PREFIX}{tenant}"


def ingress_tenant(topic: str) -> str | None:
    """The tenant an ingress topic belongs to; None for any other topic."""
    tenant = topic.removeprefix(INGRESS_PREFIX)
    return tenant if tenant != topic and tenant else None


# Partitions bound consumer parallelism; every topic is keyed by job_id.
PARTITIONS: dict[str, int] = {
    JOB_COMMANDS: 6,
    JOB_COMMANDS_DLQ: 1,
    JOB_EVENTS: 6,
    RUNS: 12,
    RUNS_STATUS: 6,
    RUNS_DLQ: 1,
    ALERTS: 3,
    **dict.fromkeys(COMMAND_RUNS.values(), 6),
}


def command_lane(priority: int) -> str:
    """The lane of a job's priority (0-9, 5 by default): 7-9 high, 3-6 normal, 0-2 low."""
    return "high" if priority >= 7 else "normal" if priority >= 3 else "low"


def runs_topic(target_type: str, priority: int) -> str:
    """Where the dispatcher sends a run: webhooks and Kafka targets to RUNS, commands and steps
    to the lane of their priority."""
    return COMMAND_RUNS[command_lane(priority)] if target_type in ("command", "steps") else RUNS

# Per-topic configs. Commands use the broker's append time as their timestamp: a command is
# accepted only if Kafka appended it before its `accept_by` deadline, a rule the job service
# (answering 202 or 503) and the writer (applying or rejecting) both check against the same
# broker-assigned value, so a 503 never turns into a job later.
CONFIGS: dict[str, dict[str, str]] = {
    JOB_COMMANDS: {"message.timestamp.type": "LogAppendTime"},
}


def configs_for(topic: str) -> dict[str, str] | None:
    """Ingress topics carry commands too: the same broker-assigned timestamps."""
    return CONFIGS.get(JOB_COMMANDS if ingress_tenant(topic) else topic)
