"""Settings fragments shared by every service; each service composes the ones it uses."""

from __future__ import annotations

from typing import Literal

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
    # How long a producer waits for more messages to share a produce request (aiokafka's
    # linger_ms). 0 where a message is on someone's clock (a create's 202, a run request, a
    # Kafka target); a few ms where it is a record (statuses, outcome events): the broker's and
    # the client's cost is per request, not per message.
    kafka_linger_ms: int = Field(default=0, ge=0, le=100)
    # How clients authenticate (docs/security.md): the local stack uses SASL_PLAINTEXT with
    # SCRAM on loopback; a deployment across machines uses SASL_SSL.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = "SCRAM-SHA-256"
    kafka_username: str | None = None
    kafka_password: str | None = Field(default=None, repr=False)
    # The broker's CA for SASL_SSL (None: the system's trust store).
    kafka_ssl_cafile: str | None = None
    # /readyz of a consumer: ready once it has read to within this many messages of the end
    # of its partitions (duetime.consumer_readiness).
    kafka_ready_max_lag: int = Field(default=1000, ge=0)


class KafkaTargetSettings(_Fragment):
    # Which topics each tenant's Kafka targets may publish to (duetime.kafka_targets): a JSON
    # object tenant -> list of topic globs. A tenant not listed may use "<tenant>.*" (none if its
    # name has a dot; never a topic listed here for another tenant: ADR 0051). Internal topics
    # (duetime.*, __*) are never allowed, whatever this says.
    kafka_target_topics: dict[str, list[str]] = Field(default_factory=dict)


class IngressSettings(_Fragment):
    # Tenants whose ingress topic (duetime.ingress.<tenant>) the writer consumes and
    # `duetime topics` creates: comma-separated. Each needs its Kafka principal ingress-<tenant>
    # with WRITE on that topic alone (docs/operations.md, "Kafka ingress").
    ingress_tenants: str = ""

    @property
    def ingress_tenant_list(self) -> list[str]:
        return [t for t in (p.strip() for p in self.ingress_tenants.split(",")) if t]


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


class LoopSettings(_Fragment):
    # uvloop runs the services' event loops (ADR 0022); "asyncio" is the stdlib loop, kept for
    # comparing the two and as a way out should uvloop misbehave on some platform.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"


class LogSettings(_Fragment):
    log_level: str = "INFO"
    log_format: str = "auto"  # "json", "console" or "auto" (json unless a terminal)


class JobLimitSettings(_Fragment):
    """What one job may ask for (issue 7 hole 6; docs/quotas.md). The job service refuses a job
    beyond them with a 422 and the writer rejects such a Kafka command the same way."""

    # The executor caps every call at fire time too, under the same name (jobs stored before).
    max_timeout_seconds: float = Field(default=60, gt=0, le=3600)
    # Retries closer together than this hammer a failing receiver; applies when a job retries.
    min_retry_delay_seconds: float = Field(default=1.0, ge=0, le=3600)
    max_retry_attempts: int = Field(default=20, ge=1, le=100)
    # The serialized target is copied into Redis and into every run request.
    quota_payload_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)


class QuotaSettings(_Fragment):
    """Per-tenant quotas the job service enforces (docs/quotas.md, ADR 0020). Generous by
    default: one tenant runs the benchmarks (60,000 jobs at 3,000 creates/s, 200 every-second
    jobs) well inside them."""

    quota_active_jobs: int = Field(default=1_000_000, ge=1)
    quota_firings_per_second: float = Field(default=1000.0, gt=0)
    quota_creates_per_second: float = Field(default=5000.0, gt=0)
    # How old the usage snapshot read from Postgres may get before it is read again.
    quota_refresh_seconds: float = Field(default=2.0, gt=0, le=300)


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
