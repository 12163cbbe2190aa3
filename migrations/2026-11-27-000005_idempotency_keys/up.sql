-- Idempotency-Key: the first answer to a POST that commands hardware or moves money, replayed for
-- repeats of the same request (same key, same caller's organization, same request fingerprint).
CREATE TABLE idempotency_keys (
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    -- SHA-256 of method, path and body: the same key with another request is refused.
    fingerprint      bytea NOT NULL,
    status           integer NOT NULL,
    response         jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
