"""Readiness of a Kafka consumer: connected AND caught up (issue 10; ADR 0033).

`/readyz` of a consuming service says it is doing its job: it joined its group and has read
its partitions to within `max_lag` messages of their end. A consumer that just started (or
came back after an outage) and is still working through its backlog is alive (`/healthz`) but
not ready; the probe lets a rollout wait for it.
The lag is the consumer's own view (highwater minus position of each assigned partition), so
measuring it costs no request to the broker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer


async def lag(consumer: AIOKafkaConsumer) -> int | None:
    """Messages beyond what `consumer` has fetched, over its assigned partitions; None while
    a partition's end is not known yet (no fetch answered since it was assigned)."""
    total = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            return None
        total += max(0, high - await consumer.position(tp))
    return total


def caught_up(consumer: AIOKafkaConsumer, max_lag: int) -> Callable[[], Awaitable[bool]]:
    """A readiness check (Lifecycle.checks): `consumer` has caught up since it started, i.e.
    it was once within `max_lag` of the end of every partition it reads.

    Once caught up it stays so: a consumer that falls behind under load is doing its job, and
    turning it unready would only make a rollout or a node drain wait on load (the lag itself is
    `duetime_kafka_consumer_lag` and the DuetimeConsumerLag alert). A member with no partition
    (more replicas than partitions) has nothing to catch up on, but only once it has joined the
    group: before that its assignment is empty too.
    """
    done = False

    async def check() -> bool:
        nonlocal done
        if not done and (consumer.assignment() or _joined(consumer)):
            behind = await lag(consumer)
            done = behind is not None and behind <= max_lag
        return done
    return check


def _joined(consumer: AIOKafkaConsumer) -> bool:
    coordinator = getattr(consumer, "_coordinator", None)
    return coordinator is not None and getattr(coordinator, "generation", -1) > 0
