"""The overview's installation-wide numbers, read from Prometheus's HTTP API (ADR 0029).

Only instant queries of the recording rules in deploy/prometheus/rules and of documented metrics
(docs/metrics.md); no tenant's data is in them. A Prometheus that is down or slow makes the
overview say so, never fail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0
# (what the overview calls it, PromQL, the label that names a series when there are several)
QUERIES: tuple[tuple[str, str, str | None], ...] = (
    ("firings_per_second", "sum(duetime:firings:rate1m)", None),
    ("lateness_p50_seconds", "max(duetime:lateness_seconds:p50_5m)", None),
    ("lateness_p99_seconds", "max(duetime:lateness_seconds:p99_5m)", None),
    ("due_set_depth", "max(duetime_due_set_entries)", None),
    ("consumer_lag", "max by (group) (duetime_kafka_consumer_lag)", "group"),
    ("dead_letters", "sum by (topic) (duetime_writer_dead_letters_total)", "topic"),
)


@dataclass(frozen=True)
class Reading:
    """One query's answer: `value` for a single series, `series` by label otherwise."""

    value: float | None
    series: dict[str, float]


def parse_vector(body: Any, label: str | None) -> Reading:
    """An instant query's JSON answer (`resultType: vector`); anything else is an error."""
    if not isinstance(body, dict) or body.get("status") != "success":
        raise ValueError("Prometheus did not answer success")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise ValueError("not an instant vector")
    series: dict[str, float] = {}
    for item in data.get("result") or []:
        name = str((item.get("metric") or {}).get(label, "")) if label else ""
        series[name] = float(item["value"][1])
    if label:
        return Reading(None, series)
    return Reading(series.get(""), {})


class PrometheusReader:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/api/v1/query"

    async def _query(self, session: aiohttp.ClientSession, promql: str,
                     label: str | None) -> Reading:
        async with session.get(self.url, params={"query": promql}) as resp:
            return parse_vector(await resp.json(content_type=None), label)

    async def read(self) -> dict[str, Reading] | None:
        """Every reading, or None when Prometheus could not answer them all."""
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                readings = await asyncio.gather(*(self._query(session, promql, label)
                                                  for _, promql, label in QUERIES))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            log.warning("prometheus unavailable for the dashboard", extra={"error": str(exc)})
            return None
        return {name: reading for (name, _, _), reading in zip(QUERIES, readings, strict=True)}
