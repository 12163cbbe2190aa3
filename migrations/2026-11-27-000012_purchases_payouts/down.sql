DROP TABLE payouts;
DROP TABLE meter_purchases;
DROP INDEX orders_completed_top_ups;
ALTER TABLE grids
    DROP COLUMN rental_currency,
    DROP COLUMN storage_rental_minor_per_kwh_month,
    DROP COLUMN pv_rental_minor_per_kwp_month;
ALTER TABLE meters DROP COLUMN tariff_minor_per_kwh;
