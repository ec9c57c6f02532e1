"""Which Kafka topics a tenant's targets may publish to (issue 7 hole 1, ADR 0015).

Checked when a job is validated (the job service answers 422, the writer rejects the command)
and again when it fires (the executor records a failed attempt that is not retried): a job
validated before the operator narrowed the allowlist must not fire into a topic it no longer
may use. Internal topics are refused whatever the allowlist says.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from duetime.settings import KafkaTargetSettings
from schemas.topics import INTERNAL_PREFIXES


class TopicPolicy:
    def __init__(self, settings: KafkaTargetSettings) -> None:
        self.allowed = {tenant: list(globs) for tenant, globs in
                        settings.kafka_target_topics.items()}

    def globs_for(self, tenant: str) -> list[str]:
        return self.allowed.get(tenant, [f"{tenant}.*"])

    def refusal(self, tenant: str, topic: str) -> str | None:
        """Why `tenant` may not publish to `topic`; None when it may."""
        if topic.startswith(INTERNAL_PREFIXES):
            return (f"topic {topic!r} is internal (names starting with "
                    f"{' or '.join(repr(p) for p in INTERNAL_PREFIXES)} are never a target)")
        globs = self.globs_for(tenant)
        if any(fnmatchcase(topic, glob) for glob in globs):
            return None
        return f"topic {topic!r} is not in this tenant's allowed topics ({', '.join(globs)})"
