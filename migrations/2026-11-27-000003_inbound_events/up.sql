-- Inbound integration events (ChirpStack webhooks): stored first, deduplicated, acknowledged at
-- once, then processed by workers that claim rows with FOR UPDATE SKIP LOCKED and a lease.

CREATE TABLE inbound_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source        text NOT NULL CHECK (source IN ('chirpstack')),
    event_type    text NOT NULL,
    dedup_key     text NOT NULL,
    dev_eui       text,
    payload       jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- Processing: a row is due when unprocessed and its lease (if any) has run out.
    locked_until  timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    processed_at  timestamptz,
    outcome       text
);
CREATE UNIQUE INDEX inbound_events_dedup ON inbound_events (source, dedup_key);
CREATE INDEX inbound_events_due ON inbound_events (id) WHERE processed_at IS NULL;

-- The LoRaWAN DevEUI under which the network server knows a meter (lower-case hex).
ALTER TABLE meters ADD COLUMN lorawan_dev_eui text;
CREATE UNIQUE INDEX meters_dev_eui ON meters (lorawan_dev_eui) WHERE lorawan_dev_eui IS NOT NULL AND deleted_at IS NULL;
