-- Issue 7, hole 5 (ADR 0019): per-tenant secrets the executor signs every HTTP call with
-- (Standard Webhooks). A tenant with two or more rows is rotating: every call carries one
-- signature per row.
--
-- The secret is kept as issued (`whsec_<base64>`): HMAC signing needs the key itself, so it
-- cannot be hashed like an API key. A deleted secret is removed, not flagged: nothing keeps
-- key material that no longer signs anything.
CREATE TABLE signing_secrets (
    id          text        PRIMARY KEY,
    tenant      text        NOT NULL,
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- The list endpoint (newest first, keyset) and the per-tenant cap's count.
CREATE INDEX signing_secrets_by_tenant ON signing_secrets (tenant, created_at DESC, id DESC);
