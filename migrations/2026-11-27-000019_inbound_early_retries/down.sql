ALTER TABLE inbound_events DROP COLUMN early_retries;
