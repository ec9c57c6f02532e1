"""Reading Kafka topics from tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer


async def find_messages(bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool],
                        count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Read `topic` from the start until `count` JSON messages satisfy `match`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"test-{uuid.uuid4().hex}", enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for msg in messages:
                    try:
                        value = orjson.loads(msg.value or b"")
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(value, dict) and match(value):
                        found.append(value)
    finally:
        await consumer.stop()
    return found
