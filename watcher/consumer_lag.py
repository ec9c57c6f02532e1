"""Consumer lag per group and topic, for Prometheus (the DuetimeConsumerLag alert).

The lag is what Kafka holds beyond a group's committed offsets: the writer's lag is commands
and statuses not persisted yet, the executors' is run requests not finished yet. Read with
the admin API (committed offsets) and a group-less consumer (end offsets), so measuring never
joins, and so never rebalances, the groups it measures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge

from duetime import kafka
from duetime.settings import KafkaSettings

log = logging.getLogger(__name__)
LAG = Gauge("duetime_kafka_consumer_lag", "Messages in Kafka beyond the group's committed offset",
            ["group", "topic"])
# The groups of the firing and persisting paths (writer/service.py, executor/service.py).
GROUPS = ("duetime-writer", "duetime-executor")


def lag_by_topic(committed: dict[TopicPartition, int],
                 ends: dict[TopicPartition, int]) -> dict[str, int]:
    """Per topic: the sum over its partitions of end offset minus committed offset."""
    totals: dict[str, int] = {}
    for tp, end in ends.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + max(0, end - committed.get(tp, 0))
    return totals


class ConsumerLag:
    def __init__(self, settings: KafkaSettings, groups: Iterable[str] = GROUPS) -> None:
        self.settings, self.groups = settings, tuple(groups)
        self.admin: AIOKafkaAdminClient | None = None
        self.offsets: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self.admin is None or self.offsets is None:
            admin = kafka.admin_client(self.settings)
            offsets = AIOKafkaConsumer(**kafka.client_options(self.settings),
                                       client_id="watcher-lag", enable_auto_commit=False)
            await admin.start()
            try:
                await offsets.start()
            except BaseException:
                await admin.close()
                raise
            self.admin, self.offsets = admin, offsets
        return self.admin, self.offsets

    async def measure(self) -> dict[str, dict[str, int]]:
        """Lag per group and topic; also sets the gauge."""
        admin, offsets = await self._clients()
        found: dict[str, dict[str, int]] = {}
        for group in self.groups:
            raw = await admin.list_consumer_group_offsets(group)
            committed = {tp: meta.offset for tp, meta in raw.items() if meta.offset >= 0}
            # A group commits every partition assigned to it (its position), so the committed
            # partitions are the ones it reads.
            partitions = list(committed)
            if not partitions:
                found[group] = {}
                continue
            ends = await offsets.end_offsets(partitions)
            found[group] = lag_by_topic(committed, ends)
            for topic, lag in found[group].items():
                LAG.labels(group, topic).set(lag)
        return found

    async def close(self) -> None:
        if self.offsets is not None:
            await self.offsets.stop()
        if self.admin is not None:
            await self.admin.close()
        self.admin = self.offsets = None
