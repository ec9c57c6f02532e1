"""Signed job ids: recognised for the tenant they were issued to, and for no one else."""

from __future__ import annotations

import uuid

from duetime.job_ids import JobIds

IDS = JobIds("a-secret-of-sixteen-or-more")


def test_an_issued_id_is_recognised_for_its_tenant_only() -> None:
    job_id = IDS.new("dev")
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    assert IDS.issued("dev", job_id)
    assert not IDS.issued("tenant-b", job_id)
    assert not JobIds("another-secret-entirely").issued("dev", job_id)


def test_forged_and_foreign_ids_are_not_recognised() -> None:
    job_id = IDS.new("dev")
    flipped = job_id[:-1] + ("0" if job_id[-1] != "0" else "1")
    non_ascii = job_id[:-1] + "é"  # any character can arrive in a URL path
    for ident in [uuid.uuid4().hex, flipped, job_id[:-1], job_id + "0", "", "x" * 32, non_ascii, "你" * 32]:
        assert not IDS.issued("dev", ident), ident


def test_idempotency_key_ids_are_deterministic_per_tenant() -> None:
    a = IDS.for_idempotency_key("dev", "order-17")
    assert a == IDS.for_idempotency_key("dev", "order-17")
    assert a != IDS.for_idempotency_key("dev", "order-18")
    assert a != IDS.for_idempotency_key("tenant-b", "order-17")
    assert IDS.issued("dev", a) and not IDS.issued("tenant-b", a)
