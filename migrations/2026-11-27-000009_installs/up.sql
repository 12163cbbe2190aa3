-- Installing a meter: one install session per install or uninstall attempt (with the outcome of
-- registering the device on the network server), and the commissioning runs that bring a newly
-- installed meter to a known state one step at a time.

CREATE TABLE install_sessions (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id      bigint NOT NULL REFERENCES organizations (id),
    meter_id             bigint NOT NULL REFERENCES meters (id),
    operation            text NOT NULL CHECK (operation IN ('INSTALL', 'UNINSTALL')),
    -- Registering (INSTALL) or removing (UNINSTALL) the device on the network server.
    registration_status  text NOT NULL DEFAULT 'PENDING' CHECK (registration_status IN ('PENDING', 'SUCCESSFUL', 'FAILED')),
    registration_reason  text,
    author_account_id    bigint REFERENCES accounts (id),
    author_api_key_id    bigint REFERENCES api_keys (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX install_sessions_meter ON install_sessions (meter_id, id);

CREATE TABLE meter_commissionings (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations (id),
    meter_id            bigint NOT NULL REFERENCES meters (id),
    install_session_id  bigint NOT NULL REFERENCES install_sessions (id),
    status              text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESSFUL', 'FAILED')),
    failure_reason      text,
    -- An operator's retry of a failed (or stalled) commissioning.
    retry_of            bigint REFERENCES meter_commissionings (id),
    -- The advancement runner: the newest step change it has acted on, and its lease.
    steps_seen_at       timestamptz,
    lease_until         timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    CHECK ((finished_at IS NULL) = (status IN ('PENDING', 'PROCESSING')))
);
-- At most one unfinished commissioning per meter.
CREATE UNIQUE INDEX meter_commissionings_one_running ON meter_commissionings (meter_id)
    WHERE status IN ('PENDING', 'PROCESSING');
CREATE INDEX meter_commissionings_meter ON meter_commissionings (meter_id, id);
CREATE INDEX meter_commissionings_unfinished ON meter_commissionings (id)
    WHERE status IN ('PENDING', 'PROCESSING');

ALTER TABLE meter_interactions
    ADD CONSTRAINT meter_interactions_commissioning_fk
        FOREIGN KEY (commissioning_id) REFERENCES meter_commissionings (id),
    -- A manual retry of a FAILED interaction points at it; one retry per failed interaction.
    ADD COLUMN retry_of bigint REFERENCES meter_interactions (id);
CREATE UNIQUE INDEX meter_interactions_retry_of ON meter_interactions (retry_of)
    WHERE retry_of IS NOT NULL;
CREATE INDEX meter_interactions_commissioning ON meter_interactions (commissioning_id, id)
    WHERE commissioning_id IS NOT NULL;
-- 0 W is a SET_POWER_LIMIT that removes the limit (commissioning on a grid with full service on).
ALTER TABLE meter_interactions DROP CONSTRAINT meter_interactions_power_limit_w_check;
ALTER TABLE meter_interactions ADD CONSTRAINT meter_interactions_power_limit_w_check
    CHECK (power_limit_w >= 0);

ALTER TABLE meters
    ADD COLUMN last_install_session_id bigint REFERENCES install_sessions (id),
    -- Set when the meter's latest commissioning succeeded; cleared by uninstall and by a new
    -- commissioning. Batches and the reconciler act only on commissioned meters (and leave
    -- `manual_mode` meters alone; that column comes with directive batches, 000008).
    ADD COLUMN commissioned_at timestamptz;
-- Meters placed before commissioning was recorded keep working with batches and the reconciler.
UPDATE meters SET commissioned_at = COALESCE(assigned_at, now())
 WHERE connection_id IS NOT NULL AND deleted_at IS NULL;
