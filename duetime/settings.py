"""Settings fragments shared by every service; each service composes the ones it uses."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Fragment(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUETIME_", extra="ignore")


class KafkaSettings(_Fragment):
    kafka_bootstrap: str = "127.0.0.1:19092"
    # How long a consumer lets the broker hold a fetch open. aiokafka's default of 500 ms
    # adds up to half a second of lateness per hop; a few ms keeps the pipeline precise.
    kafka_fetch_max_wait_ms: int = Field(default=5, ge=0, le=500)
    kafka_request_timeout_ms: int = Field(default=5000, ge=500)


class PostgresSettings(_Fragment):
    postgres_dsn: str = "postgresql://duetime@127.0.0.1:15432/duetime"
    postgres_pool_min: int = 1
    postgres_pool_max: int = 10


class RedisSettings(_Fragment):
    redis_url: str = "redis://127.0.0.1:16379/0"
    redis_max_connections: int = Field(default=64, ge=1)
    redis_pool_timeout_seconds: float = Field(default=20.0, gt=0)
    # Number of due-set shards; every key of one shard shares a hash tag so a shard can
    # live on one Redis Cluster node and its Lua scripts stay atomic.
    due_shards: int = Field(default=4, ge=1, le=1024)


class RedeliverySettings(_Fragment):
    # How long a run request can still reach an executor after its attempt ran or its job
    # ended: a request whose offset was not committed before every executor stopped comes back
    # when they return. For this long a finished attempt refuses a redelivered request (its
    # done flag) and a cancelled or completed job keeps its tombstone in the due-set; after it,
    # both are forgotten, which bounds Redis (docs/operations.md, "Bounded growth"; ADR 0013).
    # An executor outage longer than this may re-run such an attempt (at least once holds).
    run_redelivery_seconds: int = Field(default=6 * 3600, ge=60)


class HttpSettings(_Fragment):
    http_host: str = "127.0.0.1"
    http_port: int = 0


class IdSettings(_Fragment):
    # Job ids carry a MAC made with this key (duetime.job_ids, ADR 0009): the job service and the
    # search service must share it. The default is for development only; the local stack and
    # every deployment set their own.
    id_secret: str = Field(default="duetime-development-id-secret", min_length=16, repr=False)


class LogSettings(_Fragment):
    log_level: str = "INFO"
    log_format: str = "auto"  # "json", "console" or "auto" (json unless a terminal)


class GatewaySettings(_Fragment):
    # The key the gateway signs its tenant assertions with (duetime.tenant_assertion, ADR 0017).
    # No default: a service without it cannot tell the gateway from anyone else.
    gateway_secret: str = Field(default="", repr=False)
    # How far an assertion's timestamp may be from this service's clock, either way.
    assertion_max_age_seconds: float = Field(default=30.0, gt=0, le=300)
    # "dev" allows the published development keys and secrets; anything else refuses them.
    env: str = "production"
    # The gateway's API keys file (hashes only); when set, checked for published development keys.
    api_keys_file: str = ""
