"""One store test suite, two real backends (tests/support/objects.py)."""

from tests.support.objects import s3_settings, store

__all__ = ["s3_settings", "store"]
