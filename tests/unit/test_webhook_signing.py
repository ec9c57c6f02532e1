"""The executor's signatures verify with the reference library, over exactly the bytes sent."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from duetime.run_ids import RunIds
from duetime.webhook_signing import key_of, new_secret
from executor.signing import SigningKeys
from executor.targets import http_body
from schemas.api import HttpTarget, RetryPolicy
from schemas.events import RunRequested


def request(tenant: str, body: object = None, headers: dict[str, str] | None = None) -> RunRequested:
    now = datetime.now(UTC)
    target = HttpTarget(type="http", url="http://127.0.0.1:18900/hook", body=body,
                        headers=headers or {})
    return RunRequested(run_id=RunIds("unit-test-id-secret").for_firing("job-1", 1000),
                        job_id="job-1", tenant=tenant, job_version=1, scheduled_at=now,
                        due_at=now, attempt=1, priority=5, target=target, retry=RetryPolicy(),
                        member="4|job-1|1|1000|1|s", dispatched_at=now)


def signed(keys: SigningKeys, req: RunRequested) -> tuple[bytes, dict[str, str]]:
    assert isinstance(req.target, HttpTarget)
    target = keys.sign(req, req.target)
    return http_body(target)[0] or b"", dict(target.headers)


@pytest.mark.parametrize("body", [{"ä": [1, 2]}, "plain text", None])
def test_every_active_secret_signs_and_only_they_verify(body: object) -> None:
    old, new = new_secret(), new_secret()
    keys = SigningKeys()
    keys.replace([{"tenant": "a", "secret": new}, {"tenant": "a", "secret": old},
                  {"tenant": "b", "secret": new_secret()}])
    sent, headers = signed(keys, request("a", body))
    assert headers["webhook-id"] == request("a").run_id
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(sent, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(sent, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(sent + b"x", headers, json_parse=False)


def test_a_tenant_without_secrets_is_not_signed_and_its_own_webhook_headers_are_replaced() -> None:
    keys = SigningKeys()
    keys.replace([{"tenant": "a", "secret": new_secret()}])
    _, unsigned = signed(keys, request("b"))
    assert not any(k.startswith("webhook-") for k in unsigned)
    _, headers = signed(keys, request("a", headers={"Webhook-Id": "mine", "X-Team": "t"}))
    assert "Webhook-Id" not in headers and headers["X-Team"] == "t"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


def test_secrets_carry_enough_random_bytes() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(s.startswith("whsec_") and len(key_of(s)) == 32 for s in secrets)


def test_run_ids_depend_on_the_key_and_keep_the_uuid_shape() -> None:
    a, b = RunIds("first-secret-0123456789"), RunIds("second-secret-0123456789")
    assert a.for_firing("job", 1) == a.for_firing("job", 1) != b.for_firing("job", 1)
    assert a.for_firing("job", 1) != a.for_firing("job", 2)
    assert len(a.for_firing("job", 1)) == 36 and a.for_firing("job", 1)[14] == "8"
