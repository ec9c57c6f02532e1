"""Kafka topic names and the partition counts the services are built for."""

from __future__ import annotations

JOB_COMMANDS = "duetime.jobs.commands"
JOB_COMMANDS_DLQ = "duetime.jobs.commands.dlq"
JOB_EVENTS = "duetime.jobs.events"
RUNS = "duetime.runs"
RUNS_STATUS = "duetime.runs.status"
RUNS_DLQ = "duetime.runs.dlq"

# Partitions bound consumer parallelism; every topic is keyed by job_id.
PARTITIONS: dict[str, int] = {
    JOB_COMMANDS: 6,
    JOB_COMMANDS_DLQ: 1,
    JOB_EVENTS: 6,
    RUNS: 12,
    RUNS_STATUS: 6,
    RUNS_DLQ: 1,
}
