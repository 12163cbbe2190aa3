ALTER TABLE meters
    DROP COLUMN commissioned_at,
    DROP COLUMN last_install_session_id;
-- 0 W (no limit) cannot be stored before this migration.
UPDATE meter_interactions SET power_limit_w = NULL WHERE power_limit_w = 0;
ALTER TABLE meter_interactions DROP CONSTRAINT meter_interactions_power_limit_w_check;
ALTER TABLE meter_interactions ADD CONSTRAINT meter_interactions_power_limit_w_check
    CHECK (power_limit_w > 0);
DROP INDEX meter_interactions_commissioning;
DROP INDEX meter_interactions_retry_of;
ALTER TABLE meter_interactions
    DROP COLUMN retry_of,
    DROP CONSTRAINT meter_interactions_commissioning_fk;
DROP TABLE meter_commissionings;
DROP TABLE install_sessions;
