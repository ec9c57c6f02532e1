"""The API keys file (hashes only) and the refusal of published development secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from duetime.api_keys import create_key, hash_key, read_keys, revoke_key
from duetime.development_secrets import (
    DevelopmentSecretError,
    published_secrets_in_use,
    refuse_development_secrets,
)
from duetime.settings import GatewaySettings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
COMPOSE_KEYS = Path(__file__).resolve().parents[2] / "deploy" / "compose" / "api_keys.conf"
OWN = "a-secret-of-this-deployment-0123456789"


def test_created_keys_are_stored_as_hashes_only(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    record, key = create_key(path, "team-a", NOW)
    text = path.read_text()
    assert key not in text and hash_key(key) in text
    assert read_keys(path) == [record]
    assert (record.tenant, record.created) == ("team-a", "2026-11-25T12:00:00Z")
    assert path.stat().st_mode & 0o777 == 0o600


def test_revoking_removes_only_that_key_and_keeps_the_files_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# operator's note: keep me\n")
    first, _ = create_key(path, "team-a", NOW)
    second, _ = create_key(path, "team-b", NOW)
    assert revoke_key(path, first.key_id) == first
    assert revoke_key(path, first.key_id) is None
    assert read_keys(path) == [second]
    assert path.read_text().startswith("# operator's note: keep me\n")


@pytest.mark.parametrize("tenant", ["", "a:b", 'x"y', "-lead", "a b"])
def test_a_tenant_name_that_could_break_the_map_or_the_assertion_is_refused(
    tmp_path: Path, tenant: str,
) -> None:
    with pytest.raises(ValueError, match="tenant"):
        create_key(tmp_path / "keys", tenant, NOW)
    assert not (tmp_path / "keys").exists()


def test_a_malformed_line_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text('"not-a-hash" "dev";\n')
    with pytest.raises(ValueError, match=":1:"):
        read_keys(path)


def _settings(**values: str) -> GatewaySettings:
    return GatewaySettings.model_validate({"gateway_secret": OWN, "env": "production", **values})


def test_the_compose_keys_are_known_as_published() -> None:
    found = published_secrets_in_use(_settings(api_keys_file=str(COMPOSE_KEYS)))
    assert len(found) == 2


@pytest.mark.parametrize("values", [
    {"gateway_secret": "compose-development-gateway-secret"},
    {"api_keys_file": str(COMPOSE_KEYS)},
])
def test_published_values_refuse_to_start_outside_dev(values: dict[str, str]) -> None:
    with pytest.raises(DevelopmentSecretError, match="published development"):
        refuse_development_secrets(_settings(**values))
    refuse_development_secrets(_settings(**values, env="dev"))


def test_a_missing_or_short_gateway_secret_refuses_even_in_dev() -> None:
    for secret in ("", "short"):
        with pytest.raises(DevelopmentSecretError, match="DUETIME_GATEWAY_SECRET"):
            refuse_development_secrets(_settings(gateway_secret=secret, env="dev"))


def test_own_secrets_and_keys_start(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    create_key(path, "team-a", NOW)
    refuse_development_secrets(_settings(api_keys_file=str(path)))
