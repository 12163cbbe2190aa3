ALTER TABLE meters DROP COLUMN IF EXISTS manual_mode;
DROP TABLE batch_interactions;
DROP TABLE directive_batch_executions;
DROP TABLE directive_batches;
