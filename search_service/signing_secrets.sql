-- name: signing_secrets_page
-- Ids and dates only: the secret itself is shown once, by the job service's create.
-- Keyset pagination, newest first; $2/$3 are the last row of the previous page (or NULL).
SELECT id, created_at FROM signing_secrets
WHERE tenant = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
ORDER BY created_at DESC, id DESC
LIMIT $4
