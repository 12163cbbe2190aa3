DROP INDEX meters_external_reference;
ALTER TABLE grids DROP COLUMN reconciliation_mode;
DROP TRIGGER grids_downlink_lane ON grids;
DROP FUNCTION downlink_lane_for_grid();
DROP TABLE downlink_lanes;
DROP INDEX meter_interactions_verified_by;
DROP INDEX meter_interactions_queue_item;
DROP INDEX meter_interactions_on_the_wire;
DROP INDEX meter_interactions_sendable;
ALTER TABLE meter_interactions
    DROP CONSTRAINT delivery_stage_has_deadline,
    DROP COLUMN verified_by,
    DROP COLUMN result,
    DROP COLUMN acked_at,
    DROP COLUMN sent_at,
    DROP COLUMN phase_results,
    DROP COLUMN phase,
    DROP COLUMN queue_item_id,
    DROP COLUMN retries,
    DROP COLUMN attempts,
    DROP COLUMN stage_deadline,
    DROP COLUMN delivery_stage,
    DROP COLUMN send_after;
