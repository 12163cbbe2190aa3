-- Durable delivery: the interaction row is its own delivery record. A row wants a downlink when
-- it is QUEUED, or PROCESSING with `send_after` due (a retry after backoff, or the next phase of
-- a three-phase read). Claiming sets `delivery_stage` and a deadline; a worker that dies
-- mid-delivery leaves a deadline that the reaper acts on, so nothing is lost or stuck.
ALTER TABLE meter_interactions
    ADD COLUMN send_after       timestamptz,
    ADD COLUMN delivery_stage   text CHECK (delivery_stage IN ('SENDING', 'DELIVERED_TO_NS', 'SENT_TO_DEVICE')),
    ADD COLUMN stage_deadline   timestamptz,
    -- Downlinks sent for this row (every phase and retry); the compare-and-set token of a send.
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Failed attempts that were retried.
    ADD COLUMN retries          integer NOT NULL DEFAULT 0 CHECK (retries >= 0),
    ADD COLUMN queue_item_id    text,
    -- The phase on the wire (three-phase reads go A, B, C).
    ADD COLUMN phase            text CHECK (phase IN ('A', 'B', 'C')),
    ADD COLUMN phase_results    jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN sent_at          timestamptz,
    ADD COLUMN acked_at         timestamptz,
    -- What the meter answered (observations), on success.
    ADD COLUMN result           jsonb,
    -- A command in VERIFYING: the read that decides it.
    ADD COLUMN verified_by      bigint REFERENCES meter_interactions (id),
    ADD CONSTRAINT delivery_stage_has_deadline CHECK (delivery_stage IS NULL OR stage_deadline IS NOT NULL);

-- The claim: per grid, the highest priority row that wants a downlink.
CREATE INDEX meter_interactions_sendable ON meter_interactions (grid_id, priority DESC, id)
    WHERE status = 'QUEUED' OR (status = 'PROCESSING' AND send_after IS NOT NULL);
-- The reaper: rows on the wire past their stage deadline.
CREATE INDEX meter_interactions_on_the_wire ON meter_interactions (stage_deadline)
    WHERE delivery_stage IS NOT NULL;
-- Webhooks find the row by the network server's queue item id.
CREATE UNIQUE INDEX meter_interactions_queue_item ON meter_interactions (queue_item_id)
    WHERE queue_item_id IS NOT NULL;
CREATE INDEX meter_interactions_verified_by ON meter_interactions (verified_by)
    WHERE verified_by IS NOT NULL;

-- LoRaWAN pacing (ADR-001): at most one downlink per grid per interval. The lane row is locked
-- (SKIP LOCKED) by the worker that sends the grid's next downlink, so two workers never pace
-- the same grid at once.
CREATE TABLE downlink_lanes (
    grid_id       bigint PRIMARY KEY REFERENCES grids (id),
    next_send_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO downlink_lanes (grid_id) SELECT id FROM grids;
CREATE FUNCTION downlink_lane_for_grid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO downlink_lanes (grid_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER grids_downlink_lane AFTER INSERT ON grids
    FOR EACH ROW EXECUTE FUNCTION downlink_lane_for_grid();

-- The reconciliation loop per grid: OFF (nothing), SHADOW (report drift, send nothing), ON.
ALTER TABLE grids
    ADD COLUMN reconciliation_mode text NOT NULL DEFAULT 'ON'
        CHECK (reconciliation_mode IN ('OFF', 'SHADOW', 'ON'));

-- Uplinks find a CALIN meter by its serial (the DevEUI without its zero padding).
CREATE INDEX meters_external_reference ON meters (external_reference);
