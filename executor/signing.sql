-- name: signing_secrets
-- Every tenant's secrets, newest first (the order signatures are sent in); the executor reads
-- them every few seconds (ADR 0019).
SELECT tenant, secret FROM signing_secrets ORDER BY tenant, created_at DESC, id DESC
