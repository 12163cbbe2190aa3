-- Platform core: tenants, identities, grids, API keys and the audit trail.
-- Enumerations are text with CHECK constraints: new values need no type migration dance.

CREATE TABLE organizations (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    formal_name        text,
    email              text,
    phone              text,
    address            text,
    organization_type  text NOT NULL DEFAULT 'SOLAR_DEVELOPER'
                       CHECK (organization_type IN ('SOLAR_DEVELOPER', 'LENDER', 'DATA_AGGREGATOR')),
    -- The organization that operates tiamat itself; its SUPERADMINs act across tenants.
    is_platform        boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE UNIQUE INDEX organizations_one_platform ON organizations (is_platform) WHERE is_platform;
CREATE UNIQUE INDEX organizations_name_live ON organizations (lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE grids (
    id                                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id                      bigint NOT NULL REFERENCES organizations (id),
    name                                 text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    timezone                             text NOT NULL DEFAULT 'Africa/Lagos',
    currency                             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Consumer tariffs in minor units of `currency` per kWh.
    hps_tariff_minor_per_kwh             bigint NOT NULL DEFAULT 0 CHECK (hps_tariff_minor_per_kwh >= 0),
    fs_tariff_minor_per_kwh              bigint NOT NULL DEFAULT 0 CHECK (fs_tariff_minor_per_kwh >= 0),
    default_hps_connection_fee_minor     bigint NOT NULL DEFAULT 0 CHECK (default_hps_connection_fee_minor >= 0),
    default_fs_1_phase_connection_fee_minor bigint NOT NULL DEFAULT 0 CHECK (default_fs_1_phase_connection_fee_minor >= 0),
    default_fs_3_phase_connection_fee_minor bigint NOT NULL DEFAULT 0 CHECK (default_fs_3_phase_connection_fee_minor >= 0),
    pv_capacity_wp                       bigint NOT NULL DEFAULT 0 CHECK (pv_capacity_wp >= 0),
    storage_capacity_wh                  bigint NOT NULL DEFAULT 0 CHECK (storage_capacity_wh >= 0),
    lifeline_threshold_wh                bigint NOT NULL DEFAULT 5000 CHECK (lifeline_threshold_wh >= 0),
    lifeline_threshold_days              integer NOT NULL DEFAULT 30 CHECK (lifeline_threshold_days > 0),
    commissioning_initial_credit_wh      bigint NOT NULL DEFAULT 0 CHECK (commissioning_initial_credit_wh >= 0),
    is_hidden_from_reporting             boolean NOT NULL DEFAULT true,
    is_three_phase_supported             boolean NOT NULL DEFAULT false,
    uses_dual_meter_setup                boolean NOT NULL DEFAULT false,
    is_automatic_meter_install_enabled   boolean NOT NULL DEFAULT false,
    is_automatic_payout_generation_enabled boolean NOT NULL DEFAULT false,
    is_dcu_connectivity_tracking_enabled boolean NOT NULL DEFAULT false,
    latitude                             double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude                            double precision CHECK (longitude BETWEEN -180 AND 180),
    deployed_at                          timestamptz,
    commissioned_at                      timestamptz,
    created_at                           timestamptz NOT NULL DEFAULT now(),
    updated_at                           timestamptz NOT NULL DEFAULT now(),
    deleted_at                           timestamptz
);
CREATE INDEX grids_org ON grids (organization_id, id);
CREATE UNIQUE INDEX grids_name_live ON grids (organization_id, lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE accounts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    -- The identity provider's user id (Supabase auth.users.id, the JWT `sub`). NULL: cannot log in.
    auth_user_id     uuid UNIQUE,
    full_name        text NOT NULL CHECK (length(btrim(full_name)) BETWEEN 1 AND 200),
    email            text,
    phone            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE UNIQUE INDEX accounts_email_live ON accounts (lower(email)) WHERE deleted_at IS NULL AND email IS NOT NULL;
CREATE INDEX accounts_org ON accounts (organization_id);

CREATE TABLE members (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id         bigint NOT NULL UNIQUE REFERENCES accounts (id),
    organization_id    bigint NOT NULL REFERENCES organizations (id),
    role               text NOT NULL CHECK (role IN ('SUPERADMIN', 'ADMIN', 'PARTNER', 'FINANCE', 'DEVELOPER',
                                                     'MANAGER', 'SUPPORT', 'SERVICE', 'SALES', 'TECH')),
    training_level     smallint NOT NULL DEFAULT 0 CHECK (training_level >= 0),
    hidden             boolean NOT NULL DEFAULT false,
    subscribed_to_revenue_notifications boolean NOT NULL DEFAULT false,
    -- The grid this member is commissioning right now, if any.
    commissioning_grid_id bigint REFERENCES grids (id),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz
);
CREATE INDEX members_org ON members (organization_id, id);

CREATE TABLE agents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id       bigint NOT NULL UNIQUE REFERENCES accounts (id),
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    grid_id          bigint NOT NULL REFERENCES grids (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX agents_org ON agents (organization_id, id);
CREATE INDEX agents_grid ON agents (grid_id);

CREATE TABLE customers (
    id                                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id                         bigint NOT NULL UNIQUE REFERENCES accounts (id),
    organization_id                    bigint NOT NULL REFERENCES organizations (id),
    grid_id                            bigint NOT NULL REFERENCES grids (id),
    gender                             text CHECK (gender IN ('MALE', 'FEMALE')),
    generator_owned                    text CHECK (generator_owned IN ('SMALL', 'LARGE')),
    is_hidden_from_reporting           boolean NOT NULL DEFAULT false,
    lives_primarily_in_the_community   boolean NOT NULL DEFAULT true,
    latitude                           double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude                          double precision CHECK (longitude BETWEEN -180 AND 180),
    -- Minor units of the grid's currency.
    total_connection_fee_minor         bigint NOT NULL DEFAULT 0 CHECK (total_connection_fee_minor >= 0),
    total_connection_paid_minor        bigint NOT NULL DEFAULT 0,
    created_at                         timestamptz NOT NULL DEFAULT now(),
    updated_at                         timestamptz NOT NULL DEFAULT now(),
    deleted_at                         timestamptz
);
CREATE INDEX customers_org ON customers (organization_id, id) WHERE deleted_at IS NULL;
CREATE INDEX customers_grid ON customers (grid_id, id) WHERE deleted_at IS NULL;

CREATE TABLE api_keys (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id        bigint NOT NULL REFERENCES organizations (id),
    name                   text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    -- Public part of the key, used to find the row; the secret is kept only as a SHA-256 hash.
    prefix                 text NOT NULL UNIQUE,
    secret_hash            bytea NOT NULL CHECK (length(secret_hash) = 32),
    role                   text NOT NULL CHECK (role IN ('SUPERADMIN', 'ADMIN', 'PARTNER', 'FINANCE', 'DEVELOPER',
                                                         'MANAGER', 'SUPPORT', 'SERVICE', 'SALES', 'TECH')),
    created_by_account_id  bigint REFERENCES accounts (id),
    created_at             timestamptz NOT NULL DEFAULT now(),
    expires_at             timestamptz,
    revoked_at             timestamptz,
    last_used_at           timestamptz
);
CREATE INDEX api_keys_org ON api_keys (organization_id, id);

CREATE TABLE audit_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id    bigint NOT NULL REFERENCES organizations (id),
    actor_account_id   bigint REFERENCES accounts (id),
    actor_api_key_id   bigint REFERENCES api_keys (id),
    action             text NOT NULL,
    resource_type      text NOT NULL,
    resource_id        bigint,
    details            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_org ON audit_events (organization_id, id);
CREATE INDEX audit_events_resource ON audit_events (organization_id, resource_type, resource_id);
