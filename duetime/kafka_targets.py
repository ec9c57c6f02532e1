"""Which Kafka topics a tenant's targets may publish to (issue 7 hole 1, ADR 0015, ADR 0051).

Checked when a job is validated (the job service answers 422, the writer rejects the command)
and again when it fires (the executor records a failed attempt that is not retried): a job
validated before the operator narrowed the allowlist must not fire into a topic it no longer
may use. Internal topics are refused whatever the allowlist says.

A tenant the operator did not list may use its default namespace, `<tenant>.*` — unless its
name has a dot, or the topic is granted to another tenant by the allowlist. Tenant names may
contain dots, so `acme.*` would otherwise take in `acme.corp.orders` of tenant `acme.corp`; with
both rules no two tenants' namespaces share a topic unless the operator listed it for both.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from duetime.settings import KafkaTargetSettings
from schemas.topics import INTERNAL_PREFIXES


def has_default_namespace(tenant: str) -> bool:
    """Whether an unlisted tenant may use `<tenant>.*` (a dotted name could overlap another's)."""
    return "." not in tenant


class TopicPolicy:
    def __init__(self, settings: KafkaTargetSettings) -> None:
        self.allowed = {tenant: list(globs) for tenant, globs in
                        settings.kafka_target_topics.items()}

    def globs_for(self, tenant: str) -> list[str]:
        if tenant in self.allowed:
            return self.allowed[tenant]
        return [f"{tenant}.*"] if has_default_namespace(tenant) else []

    def refusal(self, tenant: str, topic: str) -> str | None:
        """Why `tenant` may not publish to `topic`; None when it may."""
        if topic.startswith(INTERNAL_PREFIXES):
            return (f"topic {topic!r} is internal (names starting with "
                    f"{' or '.join(repr(p) for p in INTERNAL_PREFIXES)} are never a target)")
        if tenant in self.allowed:
            globs = self.allowed[tenant]
            if any(fnmatchcase(topic, glob) for glob in globs):
                return None
            return (f"topic {topic!r} is not in this tenant's allowed topics "
                    f"({', '.join(globs) or 'none'})")
        if not has_default_namespace(tenant):
            return (f"this tenant has no default topics: a tenant whose name has a dot may "
                    f"publish only to topics the operator lists for it "
                    f"(DUETIME_KAFKA_TARGET_TOPICS); {topic!r} is not listed")
        if not fnmatchcase(topic, f"{tenant}.*"):
            return f"topic {topic!r} is not in this tenant's allowed topics ({tenant}.*)"
        if any(fnmatchcase(topic, glob) for other, globs in self.allowed.items()
               if other != tenant for glob in globs):
            return (f"topic {topic!r} is listed for another tenant by the operator, so it is not "
                    f"in this tenant's default topics ({tenant}.*)")
        return None
