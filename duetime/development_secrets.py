"""Development keys and secrets that are published in this repository, and the check that keeps
them out of anything but a development environment (DUETIME_ENV=dev)."""

from __future__ import annotations

from pathlib import Path

from duetime.api_keys import hash_key, read_keys
from duetime.settings import GatewaySettings, IdSettings

# Everyone can read these in the repository (the settings default, deploy/docker-compose.yml,
# deploy/compose/api_keys.conf): a deployment that uses one is open to anybody.
PUBLISHED_ID_SECRETS = frozenset({"duetime-development-id-secret", "compose-development-id-secret"})
PUBLISHED_GATEWAY_SECRETS = frozenset({"compose-development-gateway-secret"})
PUBLISHED_API_KEYS = frozenset({"dev-only-insecure-key-replace-me",
                                "dev-only-insecure-key-b-replace-me"})
MIN_GATEWAY_SECRET = 32


class DevelopmentSecretError(RuntimeError):
    """A service was configured with a secret it must not run with here."""


def published_secrets_in_use(settings: GatewaySettings | IdSettings) -> list[str]:
    """The settings (by variable name) that hold a published development value."""
    found = []
    if isinstance(settings, IdSettings) and settings.id_secret in PUBLISHED_ID_SECRETS:
        found.append("DUETIME_ID_SECRET")
    if isinstance(settings, GatewaySettings):
        if settings.gateway_secret in PUBLISHED_GATEWAY_SECRETS:
            found.append("DUETIME_GATEWAY_SECRET")
        if settings.api_keys_file:
            published = {hash_key(key) for key in PUBLISHED_API_KEYS}
            records = read_keys(Path(settings.api_keys_file))
            found += [f"{settings.api_keys_file} (key {r.key_id})" for r in records
                      if r.sha256 in published]
    return found


def refuse_development_secrets(settings: GatewaySettings) -> None:
    """Stop a service from starting with a missing gateway secret, or with a published
    development value outside DUETIME_ENV=dev."""
    if len(settings.gateway_secret) < MIN_GATEWAY_SECRET:
        raise DevelopmentSecretError(
            f"DUETIME_GATEWAY_SECRET must be set to at least {MIN_GATEWAY_SECRET} characters "
            "shared with the gateway (e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`)")
    found = published_secrets_in_use(settings)
    if found and settings.env != "dev":
        raise DevelopmentSecretError(
            f"refusing to start with published development secrets: {', '.join(found)}; set your "
            "own (docs/security.md), or DUETIME_ENV=dev on a development machine")
