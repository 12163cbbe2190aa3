-- Directive batches: scheduled rules that switch a grid's full service or scan its meters, their
-- executions (one per firing), and the junction to the interactions each execution created or
-- coalesced into.

CREATE TABLE directive_batches (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations (id),
    grid_id             bigint NOT NULL REFERENCES grids (id),
    -- Local time in the grid's timezone (grids.timezone).
    hour                smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
    minute              smallint NOT NULL CHECK (minute BETWEEN 0 AND 59),
    is_repeating        boolean NOT NULL,
    action              text NOT NULL CHECK (action IN ('FS_ON', 'FS_OFF', 'SCAN')),
    -- SCAN only: the read type (InteractionType, SCREAMING_SNAKE_CASE).
    scan_kind           text CHECK (scan_kind LIKE 'READ\_%'),
    author_account_id   bigint REFERENCES accounts (id),
    author_api_key_id   bigint REFERENCES api_keys (id),
    -- One-shot rules: fired, never again.
    done_at             timestamptz,
    last_fired_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    CHECK ((action = 'SCAN') = (scan_kind IS NOT NULL))
);
CREATE INDEX directive_batches_org ON directive_batches (organization_id, id);
CREATE INDEX directive_batches_schedulable ON directive_batches (id)
    WHERE deleted_at IS NULL AND done_at IS NULL;

CREATE TABLE directive_batch_executions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations (id),
    grid_id             bigint NOT NULL REFERENCES grids (id),
    directive_batch_id  bigint NOT NULL REFERENCES directive_batches (id),
    -- The rule's action when it fired (a later edit does not rewrite history).
    action              text NOT NULL CHECK (action IN ('FS_ON', 'FS_OFF', 'SCAN')),
    scan_kind           text,
    -- Scheduled fires: local date and time, `2026-11-27T18:00`; NULL for runs by hand. Unique per
    -- rule, so a fire happens once however many instances run the scheduler.
    fire_key            text,
    meter_count         bigint NOT NULL DEFAULT 0 CHECK (meter_count >= 0),
    created_count       bigint NOT NULL DEFAULT 0 CHECK (created_count >= 0),
    coalesced_count     bigint NOT NULL DEFAULT 0 CHECK (coalesced_count >= 0),
    skipped_count       bigint NOT NULL DEFAULT 0 CHECK (skipped_count >= 0),
    requested_by_account_id bigint REFERENCES accounts (id),
    requested_by_api_key_id bigint REFERENCES api_keys (id),
    completed_at        timestamptz,
    qualified_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX directive_batch_executions_fire ON directive_batch_executions (directive_batch_id, fire_key)
    WHERE fire_key IS NOT NULL;
CREATE INDEX directive_batch_executions_org ON directive_batch_executions (organization_id, id);
CREATE INDEX directive_batch_executions_batch ON directive_batch_executions (directive_batch_id, id);

CREATE TABLE batch_interactions (
    batch_execution_id  bigint NOT NULL REFERENCES directive_batch_executions (id),
    interaction_id      bigint NOT NULL REFERENCES meter_interactions (id),
    -- Linked to an interaction that was already waiting instead of creating one.
    coalesced           boolean NOT NULL DEFAULT false,
    attached_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_execution_id, interaction_id)
);
CREATE INDEX batch_interactions_interaction ON batch_interactions (interaction_id);

-- FS rules skip meters in manual mode (the installs migration adds the same column).
ALTER TABLE meters ADD COLUMN IF NOT EXISTS manual_mode boolean NOT NULL DEFAULT false;
