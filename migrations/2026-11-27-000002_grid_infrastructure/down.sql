DROP TABLE meters;
DROP TABLE connection_requested_meters;
DROP TABLE connections;
DROP TABLE poles;
DROP TABLE mppts;
DROP TABLE dcus;
ALTER TABLE grids
    DROP COLUMN is_hps_on, DROP COLUMN is_hps_on_updated_at,
    DROP COLUMN is_fs_on, DROP COLUMN is_fs_on_updated_at,
    DROP COLUMN should_fs_be_on, DROP COLUMN should_fs_be_on_updated_at;
