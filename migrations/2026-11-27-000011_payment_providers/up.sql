-- Per-organization payment-provider accounts (predecessor ADR-003). An organization may take
-- payments into its own Flutterwave account; without a row here the platform account is used.
--
-- The keys are encrypted by the application with AES-256-GCM under TIAMAT_PAYMENT_CREDENTIALS_KEY
-- (never stored in the database): each value is a random 12-byte nonce followed by the ciphertext
-- and its tag, bound to the organization and the field (associated data), so a value copied to
-- another row or column does not decrypt.
CREATE TABLE payment_provider_credentials (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id         bigint NOT NULL UNIQUE REFERENCES organizations (id),
    provider                text NOT NULL DEFAULT 'FLUTTERWAVE' CHECK (provider IN ('FLUTTERWAVE')),
    public_key_encrypted    bytea,
    secret_key_encrypted    bytea NOT NULL,
    webhook_hash_encrypted  bytea,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_provider_credentials_sealed CHECK (
        octet_length(secret_key_encrypted) > 28
        AND (public_key_encrypted IS NULL OR octet_length(public_key_encrypted) > 28)
        AND (webhook_hash_encrypted IS NULL OR octet_length(webhook_hash_encrypted) > 28))
);

-- Flutterwave webhooks share the inbox with ChirpStack's.
ALTER TABLE inbound_events DROP CONSTRAINT inbound_events_source_check;
ALTER TABLE inbound_events ADD CONSTRAINT inbound_events_source_check
    CHECK (source IN ('chirpstack', 'flutterwave'));
