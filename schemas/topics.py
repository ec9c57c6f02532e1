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

# Per-topic configs. Commands use the broker's append time as their timestamp: a command is
# accepted only if Kafka appended it before its `accept_by` deadline, a rule the job service
# (answering 202 or 503) and the writer (applying or rejecting) both check against the same
# broker-assigned value, so a 503 never turns into a job later.
CONFIGS: dict[str, dict[str, str]] = {
    JOB_COMMANDS: {"message.timestamp.type": "LogAppendTime"},
}
