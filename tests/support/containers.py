"""The stack from deploy/docker-compose.yml via testcontainers, where a container engine runs.

`make test` uses this instead of the local stack when `docker info` succeeds (see
`deploy/local/with-stack.sh`); the tests then reach the same ports and keys through
`tests.support.stack.stack_env`.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.stack import ROOT

COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
# The development keys published in deploy/compose/api_keys.conf.
COMPOSE_ENV = {
    "DUETIME_URL": "http://127.0.0.1:18080",
    "DUETIME_API_KEY": "dev-only-insecure-key-replace-me",
    "DUETIME_API_KEY_B": "dev-only-insecure-key-b-replace-me",
    "DUETIME_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    # The development passwords deploy/docker-compose.yml falls back to (ADR 0015).
    "DUETIME_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "DUETIME_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "DUETIME_KAFKA_USERNAME": "duetime-services",
    "DUETIME_KAFKA_PASSWORD": "compose-dev-kafka-services-password",
    "DUETIME_KAFKA_TARGET_USERNAME": "duetime-target",
    "DUETIME_KAFKA_TARGET_PASSWORD": "compose-dev-kafka-target-password",
    "DUETIME_KAFKA_ADMIN_USERNAME": "admin",
    "DUETIME_KAFKA_ADMIN_PASSWORD": "compose-dev-kafka-admin-password",
    "DUETIME_KAFKA_INGRESS_PASSWORDS": "dev:compose-dev-kafka-ingress-dev-password,"
                                       "tenant-b:compose-dev-kafka-ingress-tenant-b-password",
    "DUETIME_INGRESS_TENANTS": "dev,tenant-b",
    "DUETIME_ID_SECRET": "compose-development-id-secret",
    "DUETIME_POSTGRES_DSN": "postgresql://duetime:compose-dev-postgres-password@127.0.0.1:15432/duetime",
    "DUETIME_REDIS_URL": "redis://duetime:compose-dev-redis-password@127.0.0.1:16379/0",
    # deploy/docker-compose.yml's published development defaults (ADR 0017).
    "DUETIME_GATEWAY_SECRET": "compose-development-gateway-secret",
    "DUETIME_API_KEYS_FILE": str(ROOT / "deploy" / "compose" / "api_keys.conf"),
    "DUETIME_ENV": "dev",
    "DUETIME_JOB_SERVICE_URL": "http://127.0.0.1:18101",
    "DUETIME_SEARCH_SERVICE_URL": "http://127.0.0.1:18102",
}


def engine_available() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def compose_stack(timeout: float = 300) -> Iterator[dict[str, str]]:
    """Start the compose topology, wait for the gateway, stop and remove it afterwards."""
    from testcontainers.compose import DockerCompose  # only needed with an engine

    # The services refuse the published development keys and secrets unless told this is dev.
    os.environ.setdefault("DUETIME_ENV", "dev")
    compose = DockerCompose(str(COMPOSE_FILE.parent), compose_file_name=COMPOSE_FILE.name,
                            build=True, wait=True)
    compose.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(COMPOSE_ENV["DUETIME_URL"] + "/healthz",  # noqa: S310
                                            timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield dict(COMPOSE_ENV)
    finally:
        compose.stop()


def compose_command(verb: str, service: str) -> list[str]:
    """The docker compose equivalent of `stack.sh <verb> <service>`."""
    name = "gateway" if service == "nginx" else service
    return ["docker", "compose", "-f", str(COMPOSE_FILE), verb, name]
