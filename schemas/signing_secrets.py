"""Public models of the signing-secret endpoints (API.md, "Signing secrets"; ADR 0019)."""

from __future__ import annotations

from pydantic import BaseModel


class SigningSecretCreated(BaseModel):
    """The answer to POST /signing-secrets: the only time the secret is shown."""

    id: str
    secret: str  # "whsec_" + base64 of 32 random bytes
    created_at: str


class SigningSecretSummary(BaseModel):
    """A signing secret as listed: never its value."""

    id: str
    created_at: str


class SigningSecretPage(BaseModel):
    items: list[SigningSecretSummary]
    next_cursor: str | None
