DROP INDEX meters_dev_eui;
ALTER TABLE meters DROP COLUMN lorawan_dev_eui;
DROP TABLE inbound_events;
