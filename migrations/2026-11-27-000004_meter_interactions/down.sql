DROP TABLE meter_shadows;
DROP TABLE meter_interactions;
