"""Where command output and scripts are kept: one interface, a filesystem and an S3 backend."""

from duetime.objects.keys import output_key, validate_key
from duetime.objects.store import ObjectInfo, ObjectNotFound, ObjectStore

__all__ = ["ObjectInfo", "ObjectNotFound", "ObjectStore", "output_key", "validate_key"]
