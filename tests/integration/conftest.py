"""Fixtures for in-process service tests."""

from tests.support.pipeline import pipeline

__all__ = ["pipeline"]
