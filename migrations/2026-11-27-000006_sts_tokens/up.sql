-- STS tokens: the meter's decoder key (a secret: written, never returned) and the last issue
-- time, persisted before each generation so issue times strictly increase per meter.
ALTER TABLE meters
    ADD COLUMN decoder_key text CHECK (decoder_key IS NULL OR length(decoder_key) BETWEEN 1 AND 64),
    ADD COLUMN last_sts_token_issued_at timestamptz;
