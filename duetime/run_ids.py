"""Run ids: deterministic for a (job, scheduled instant), unguessable without the server's key.

The run id is every webhook's `Idempotency-Key` and `webhook-id`. Were it computable from the
job id and the schedule alone (it once was a public uuid5), anyone who knows both could send
the next firing's key to the receiver first and have the real firing dropped as a duplicate
(issue 7, hole 5). So it is a MAC under a key derived from `DUETIME_ID_SECRET`, and it is
still the same for every redelivery and every version of one firing (ADR 0010, ADR 0019).

Every service that names runs (job service, writer, watcher, dispatcher, executor) must use
the same key: `duetime run <service>` installs it from the settings before the service starts
(`use_secret`), and `run_id_for` refuses to answer before that rather than guess.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

# Domain separation: the job-id MACs (duetime.job_ids) use the same secret for another purpose.
_PURPOSE = b"duetime run ids v1"


class RunIds:
    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()

    def for_firing(self, job_id: str, scheduled_ms: int) -> str:
        mac = bytearray(hmac.new(self._key, f"{job_id}@{scheduled_ms}".encode(),
                                 hashlib.sha256).digest()[:16])
        # Shaped as an RFC 9562 version 8 ("custom") UUID, so run ids look as they always did;
        # 122 of the 128 bits are the MAC.
        mac[6] = (mac[6] & 0x0F) | 0x80
        mac[8] = (mac[8] & 0x3F) | 0x80
        return str(uuid.UUID(bytes=bytes(mac)))


_installed: RunIds | None = None


def use_secret(secret: str) -> None:
    """Install the process's run-id key (once, at start-up, from IdSettings)."""
    global _installed
    _installed = RunIds(secret)


def run_id_for(job_id: str, scheduled_ms: int) -> str:
    if _installed is None:
        raise RuntimeError("run ids need the server's key: call duetime.run_ids.use_secret first")
    return _installed.for_firing(job_id, scheduled_ms)
