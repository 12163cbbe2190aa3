-- What the reconciler would have corrected in a grid in SHADOW mode (the newest pass only), so an
-- operator can judge the loop before switching it ON. Replaced every pass, dropped when the
-- grid's mode changes.
CREATE TABLE reconciliation_shadow_reports (
    grid_id     bigint PRIMARY KEY REFERENCES grids (id) ON DELETE CASCADE,
    observed_at timestamptz NOT NULL,
    report      jsonb NOT NULL
);
