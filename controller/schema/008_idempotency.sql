-- Idempotency keys are bound to their request (a hash of method, path and
-- body) and reserved inside the call's own transaction; replies carrying a
-- secret keep only the created object's id. Rows written before this kept
-- whole replies, secrets included: they go.
DELETE FROM idempotency;
ALTER TABLE idempotency ADD COLUMN req_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency ADD COLUMN resource_id TEXT;
CREATE INDEX idempotency_age ON idempotency(created_at);
