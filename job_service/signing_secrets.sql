-- Signing secrets (issue 7 hole 5, ADR 0019): created and deleted here, read by the executor
-- (executor/signing.sql) and listed without their value by the search service.

-- name: lock_tenant_signing_secrets
-- Serialises one tenant's creates, so two at once cannot both pass the cap.
SELECT pg_advisory_xact_lock(hashtextextended('duetime.signing_secrets:' || $1, 0))

-- name: insert_signing_secret
-- Inserts nothing (no row back) when the tenant already has $4 secrets.
INSERT INTO signing_secrets (id, tenant, secret)
SELECT $1, $2, $3
WHERE (SELECT count(*) FROM signing_secrets WHERE tenant = $2) < $4
RETURNING id, created_at

-- name: delete_signing_secret
DELETE FROM signing_secrets WHERE id = $1 AND tenant = $2 RETURNING id
