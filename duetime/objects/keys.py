"""Object keys: `/`-separated segments of safe characters, never a path that could escape.

Keys become file paths under the filesystem backend's root and URL paths of the S3 backend, and
parts of them (tenant, job id) come from tenants: a key is validated once, here, by both.
"""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=-]{0,199}")
MAX_KEY_LENGTH = 1024


class InvalidKey(ValueError):
    """A key or key part that is not made of safe segments."""


def validate_key(key: str, *, prefix: bool = False) -> str:
    """`key` itself when every segment is safe; a prefix may end with `/` (or be empty)."""
    if prefix and key == "":
        return key
    body = key[:-1] if prefix and key.endswith("/") else key
    if len(key) > MAX_KEY_LENGTH or not body:
        raise InvalidKey("object key must be 1 to 1024 characters")
    for segment in body.split("/"):
        # `..` and `.` cannot match: a segment starts with a letter, digit or underscore.
        if not _SEGMENT.fullmatch(segment):
            raise InvalidKey(f"object key segment {segment!r} is not [A-Za-z0-9_][A-Za-z0-9_.=-]*")
    return key


def output_key(tenant: str, job_id: str, run_id: str, attempt: int, step: str | None = None) -> str:
    """Where one attempt's output is stored: tenant/job/run/attempt/output, or …/step=NAME.

    No key is the "directory" of another (the whole output is not `…/attempt` itself), which
    filesystem-backed stores, S3Proxy's among them, cannot hold.
    """
    if attempt < 1:
        raise InvalidKey("attempt must be >= 1")
    if step is not None and not _SEGMENT.fullmatch(step):
        raise InvalidKey(f"step name {step!r} is not [A-Za-z0-9_][A-Za-z0-9_.=-]*")
    leaf = "output" if step is None else f"step={step}"
    return validate_key("/".join([tenant, job_id, run_id, str(attempt), leaf]))
