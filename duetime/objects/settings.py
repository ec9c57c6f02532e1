"""Which object store a service uses, from DUETIME_OBJECTS_* variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from duetime.objects.filesystem import FilesystemStore
from duetime.objects.s3 import S3Store
from duetime.objects.store import ObjectStore


class ObjectStoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUETIME_OBJECTS_", extra="ignore")

    backend: Literal["filesystem", "s3"] = "filesystem"
    # filesystem: the embedded default, beside the local stack's other state.
    root: str = ".stack/objects"
    # s3: any S3-compatible service; credentials from here or the usual AWS variables.
    bucket: str = "duetime"
    endpoint: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = Field(default=None, repr=False)
    prefix: str = ""
    # Command output older than this is removed by the command executors' sweep, as the
    # writer drops job_runs past its runs_retention_days (90); reads of it are 410 (ADR 0038).
    output_retention_days: int = Field(default=90, ge=1)
    output_sweep_seconds: float = Field(default=3600, ge=1)


def open_store(settings: ObjectStoreSettings) -> ObjectStore:
    if settings.backend == "s3":
        return S3Store(settings.bucket, endpoint=settings.endpoint, region=settings.region,
                       access_key_id=settings.access_key_id,
                       secret_access_key=settings.secret_access_key, prefix=settings.prefix)
    return FilesystemStore(settings.root)
