"""Job ids the job service issues: they carry a MAC of the tenant, so any service holding the
secret recognises "an id this deployment issued for this tenant" without asking Postgres.

That is what makes commands read-your-writes (ADR 0009): a `DELETE` sent a millisecond after the
create's `202`, before the writer persisted the job, is still accepted, because the id proves it
was issued; Kafka's per-key order then applies it after the create. An id from elsewhere (Kafka
ingress, or one issued before ids were signed) is looked up in Postgres as before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

_RANDOM_HEX = 20  # 80 random bits: unique without coordination
_MAC_HEX = 12  # 48 bits: guessing one online takes ~2^47 requests per id
_KEY_NAMESPACE = uuid.UUID("0c6f0d4e-2f7b-4f0e-8d55-6f1c7e1f2a90")


class JobIds:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, tenant: str, stem: str) -> str:
        msg = f"{tenant}\x00{stem}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:_MAC_HEX]

    def new(self, tenant: str) -> str:
        stem = secrets.token_hex(_RANDOM_HEX // 2)
        return stem + self._mac(tenant, stem)

    def for_idempotency_key(self, tenant: str, key: str) -> str:
        # Deterministic, so two concurrent requests with one key name the same job.
        stem = uuid.uuid5(_KEY_NAMESPACE, f"{tenant}\x00{key}").hex[:_RANDOM_HEX]
        return stem + self._mac(tenant, stem)

    def issued(self, tenant: str, job_id: str) -> bool:
        """True if this deployment issued `job_id` to `tenant` (and to no other tenant)."""
        if len(job_id) != _RANDOM_HEX + _MAC_HEX:
            return False
        stem, mac = job_id[:_RANDOM_HEX], job_id[_RANDOM_HEX:]
        # As bytes: compare_digest refuses str with non-ASCII characters, and an id in a URL
        # path can hold any (found by schemathesis: a 500 for a 32-character non-ASCII id).
        return hmac.compare_digest(mac.encode(), self._mac(tenant, stem).encode())
