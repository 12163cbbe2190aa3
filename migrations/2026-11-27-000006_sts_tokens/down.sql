ALTER TABLE meters DROP COLUMN decoder_key, DROP COLUMN last_sts_token_issued_at;
