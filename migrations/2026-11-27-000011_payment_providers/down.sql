DELETE FROM inbound_events WHERE source = 'flutterwave';
ALTER TABLE inbound_events DROP CONSTRAINT inbound_events_source_check;
ALTER TABLE inbound_events ADD CONSTRAINT inbound_events_source_check CHECK (source IN ('chirpstack'));
DROP TABLE payment_provider_credentials;
