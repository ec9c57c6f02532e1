"""A tenant's sources: the scripts and archives command jobs name in `source.object` (seed 001).

They live in the object store under `<tenant>/sources/<path>`, where the command executor
reads them (executor/command/sources.py). `PUT /sources/{path}` and `DELETE` (job service)
write them, `GET /sources` and `GET /sources/{path}` (search service) read them back. The path
follows the same rule as `source.object` (schemas.api.OBJECT_PATH_PATTERN), so every uploaded
path is one a job can name and no path can leave the tenant's prefix.
"""

from __future__ import annotations

import re

from duetime.objects.keys import InvalidKey, validate_key
from duetime.problems import ProblemError
from schemas.api import OBJECT_PATH_PATTERN

_PATH = re.compile(OBJECT_PATH_PATTERN)
# Through the gateway a body is at most 256 KiB: what a script needs. Larger archives go into
# the store directly (an S3 client against the bucket), where jobs find them the same way.
MAX_SOURCE_BYTES = 256 * 1024
MAX_SOURCES_PER_TENANT = 1000
MAX_SOURCE_BYTES_PER_TENANT = 256 * 1024 * 1024


def prefix_of(tenant: str) -> str:
    return validate_key(f"{tenant}/sources/", prefix=True)


def source_key(tenant: str, path: str) -> str:
    """The object key of a tenant's source; a 422 naming `path` if it is not one a job could
    name in `source.object`."""
    if len(path) > 800 or not _PATH.fullmatch(path):
        raise ProblemError(422, "Invalid request", "not a source path",
                           [{"field": "path", "message": "1 to 16 segments of "
                             "[A-Za-z0-9_][A-Za-z0-9_.=-]* (at most 200 characters each) "
                             "joined by '/'"}])
    try:
        return validate_key(prefix_of(tenant) + path)
    except InvalidKey as exc:
        raise ProblemError(422, "Invalid request", "not a source path",
                           [{"field": "path", "message": str(exc)}]) from None
