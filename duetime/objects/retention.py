"""Command output is kept `output_retention_days`, then removed (ADR 0038).

Judged by each object's own age in the store, not by the run's row: the sweep needs nothing but
the store, so it works the same on both backends, removes output whose run rows are already
gone, and a sweep that failed half-way is simply finished by the next one. Only output keys
(`tenant/job/<run uuid>/<attempt>/output|step=NAME`, duetime.objects.keys.output_key) are
touched: a tenant's sources (`tenant/sources/…`, however their paths look) are theirs to keep.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from duetime.objects.store import ObjectStore

log = logging.getLogger(__name__)
EXPIRED = Counter("duetime_command_output_expired_total",
                  "Command output objects removed past their retention", ["unit"])
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_OUTPUT_KEY = re.compile(rf"[^/]+/(?!sources/)[^/]+/{_UUID}/[1-9][0-9]*/(output|step=[^/]+)")


def is_output_key(key: str) -> bool:
    """A key `output_key` makes: a command attempt's whole output or one step's."""
    return _OUTPUT_KEY.fullmatch(key) is not None


@dataclass(frozen=True)
class Swept:
    objects: int = 0
    bytes: int = 0


async def remove_expired_output(store: ObjectStore, written_before: datetime,
                                prefix: str = "") -> Swept:
    """Removes every output object under `prefix` last written before `written_before`."""
    objects = size = 0
    for info in await store.list(prefix):
        if info.modified is None or info.modified >= written_before \
                or not is_output_key(info.key):
            continue
        await store.delete(info.key)
        objects, size = objects + 1, size + info.size
    EXPIRED.labels("objects").inc(objects)
    EXPIRED.labels("bytes").inc(size)
    if objects:
        log.info("command output expired", extra={"objects": objects, "bytes": size,
                                                  "written_before": written_before.isoformat()})
    return Swept(objects, size)
