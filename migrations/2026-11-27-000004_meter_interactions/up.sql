-- The meter command pipeline's storage: one row per interaction (a logical command to one
-- meter) and one shadow per meter (desired and reported state per attribute).

CREATE TABLE meter_interactions (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Copied from the meter at creation: lists and live events stay per tenant and per grid
    -- even if the meter is moved later.
    organization_id     bigint NOT NULL REFERENCES organizations (id),
    grid_id             bigint REFERENCES grids (id),
    meter_id            bigint NOT NULL REFERENCES meters (id),
    -- InteractionType, as it serialises (SCREAMING_SNAKE_CASE).
    kind                text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    status              text NOT NULL CHECK (status IN ('QUEUED', 'SUSPENDED', 'DEFERRED', 'PROCESSING', 'VERIFYING', 'SUCCESSFUL', 'FAILED', 'ABORTED', 'SUPERSEDED', 'EXPIRED')),
    -- Origin, as it serialises (snake_case).
    origin              text NOT NULL CHECK (length(origin) BETWEEN 1 AND 64),
    priority            integer NOT NULL,
    power_limit_w       integer CHECK (power_limit_w > 0),
    energy_wh           bigint CHECK (energy_wh > 0),
    -- The STS token to deliver. A secret: never returned by any list or live event.
    token               text,
    commissioning_id    bigint,
    batch_execution_id  bigint,
    -- The AttributeValue a control command drives its attribute to.
    intended            jsonb,
    -- Reads only: never claimed after this.
    expires_at          timestamptz,
    -- PROCESSING but waiting out a retry backoff (not on the wire).
    parked_for_retry    boolean NOT NULL DEFAULT false,
    superseded_by       bigint REFERENCES meter_interactions (id),
    -- Requests absorbed by coalescing into this row.
    coalesced_requests  integer NOT NULL DEFAULT 0 CHECK (coalesced_requests >= 0),
    -- Vec<HistoryEntry>, newest first.
    history             jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(history) = 'array'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (superseded_by IS NULL OR status = 'SUPERSEDED')
);
-- Intake reads a meter's unfinished interactions on every request.
CREATE INDEX meter_interactions_unfinished ON meter_interactions (meter_id, created_at, id)
    WHERE status IN ('QUEUED', 'SUSPENDED', 'DEFERRED', 'PROCESSING', 'VERIFYING');
CREATE INDEX meter_interactions_grid_status ON meter_interactions (grid_id, status, id);
CREATE INDEX meter_interactions_org ON meter_interactions (organization_id, id);

CREATE TABLE meter_shadows (
    meter_id         bigint PRIMARY KEY REFERENCES meters (id),
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    -- The serialised MeterShadow (meter_id, attributes, version).
    state            jsonb NOT NULL,
    -- Optimistic concurrency: a save applies only if the stored version is the one it loaded.
    version          bigint NOT NULL CHECK (version >= 0),
    -- Some desired attribute differs from the reported one (kept by every save).
    drifted          boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meter_shadows_drifted ON meter_shadows (meter_id) WHERE drifted;
