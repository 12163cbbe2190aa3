-- Grid infrastructure: gateways, MPPTs, poles, connections, meter inventory, grid live state.
-- Hardware inventory (gateways, meters) is owned by the organization that registered it;
-- `grid_id` (and a meter's connection, pole and gateway) follow assignment.

ALTER TABLE grids
    ADD COLUMN is_hps_on                  boolean NOT NULL DEFAULT false,
    ADD COLUMN is_hps_on_updated_at       timestamptz,
    ADD COLUMN is_fs_on                   boolean NOT NULL DEFAULT false,
    ADD COLUMN is_fs_on_updated_at        timestamptz,
    ADD COLUMN should_fs_be_on            boolean NOT NULL DEFAULT false,
    ADD COLUMN should_fs_be_on_updated_at timestamptz;

CREATE TABLE dcus (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id         bigint NOT NULL REFERENCES organizations (id),
    grid_id                 bigint REFERENCES grids (id),
    external_system         text NOT NULL CHECK (external_system IN ('CALIN', 'CHIRPSTACK')),
    -- CALIN DCU serial, or the ChirpStack gateway id for LoRaWAN gateways.
    external_reference      text NOT NULL CHECK (length(btrim(external_reference)) BETWEEN 1 AND 64),
    communication_protocol  text NOT NULL CHECK (communication_protocol IN ('CALIN_V1', 'CALIN_V2', 'CALIN_LORAWAN')),
    nickname                text,
    is_online               boolean NOT NULL DEFAULT false,
    is_online_updated_at    timestamptz,
    last_online_at          timestamptz,
    last_seen_at            timestamptz,
    signal_rssi             integer,
    signal_snr              double precision,
    latitude                double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude               double precision CHECK (longitude BETWEEN -180 AND 180),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);
CREATE UNIQUE INDEX dcus_external ON dcus (external_system, external_reference);
CREATE INDEX dcus_org ON dcus (organization_id, id);
CREATE INDEX dcus_grid ON dcus (grid_id) WHERE grid_id IS NOT NULL;

CREATE TABLE mppts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations (id),
    grid_id             bigint NOT NULL REFERENCES grids (id),
    external_system     text NOT NULL DEFAULT 'VICTRON' CHECK (external_system IN ('VICTRON', 'OTHER')),
    external_reference  text NOT NULL CHECK (length(btrim(external_reference)) BETWEEN 1 AND 64),
    external_id         text NOT NULL CHECK (length(btrim(external_id)) BETWEEN 1 AND 64),
    mppt_type           text NOT NULL DEFAULT 'MPPT' CHECK (mppt_type IN ('MPPT', 'PV_INVERTER')),
    capacity_w          bigint NOT NULL DEFAULT 0 CHECK (capacity_w >= 0),
    azimuth_deg         double precision CHECK (azimuth_deg >= 0 AND azimuth_deg < 360),
    tilt_deg            double precision CHECK (tilt_deg BETWEEN 0 AND 90),
    installed_at        timestamptz NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX mppts_external_live ON mppts (grid_id, external_reference) WHERE deleted_at IS NULL;
CREATE INDEX mppts_org ON mppts (organization_id, id);

CREATE TABLE poles (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id      bigint NOT NULL REFERENCES organizations (id),
    grid_id              bigint NOT NULL REFERENCES grids (id),
    external_reference   text NOT NULL CHECK (length(btrim(external_reference)) BETWEEN 1 AND 10),
    nickname             text,
    is_virtual           boolean NOT NULL DEFAULT false,
    latitude             double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude            double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    location_accuracy_m  double precision CHECK (location_accuracy_m >= 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    deleted_at           timestamptz
);
CREATE UNIQUE INDEX poles_external_live ON poles (grid_id, external_reference) WHERE deleted_at IS NULL;
CREATE INDEX poles_org ON poles (organization_id, id);

CREATE TABLE connections (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id     bigint NOT NULL REFERENCES organizations (id),
    grid_id             bigint NOT NULL REFERENCES grids (id),
    customer_id         bigint NOT NULL REFERENCES customers (id),
    -- Survey submission id (Epicollect); unique when present.
    upload_uuid         text UNIQUE,
    external_system     text NOT NULL DEFAULT 'EPICOLLECT' CHECK (external_system IN ('EPICOLLECT', 'MANUAL')),
    document_type       text CHECK (document_type IN ('PASSPORT', 'NATIONAL_ID', 'DRIVING_LICENSE', 'VOTERS_CARD')),
    document_id         text,
    -- Connection fees paid so far, minor units of `currency` (the grid's).
    paid_minor          bigint NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    women_impacted      integer NOT NULL DEFAULT 0 CHECK (women_impacted >= 0),
    is_public           boolean NOT NULL DEFAULT false,
    is_commercial       boolean NOT NULL DEFAULT false,
    is_residential      boolean NOT NULL DEFAULT false,
    is_lifeline         boolean,
    is_building_wired   boolean NOT NULL DEFAULT false,
    is_using_led_bulbs  boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX connections_org ON connections (organization_id, id);
CREATE INDEX connections_grid ON connections (grid_id, id) WHERE deleted_at IS NULL;
CREATE INDEX connections_customer ON connections (customer_id);

CREATE TABLE connection_requested_meters (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection_id    bigint NOT NULL REFERENCES connections (id),
    organization_id  bigint NOT NULL REFERENCES organizations (id),
    meter_type       text NOT NULL CHECK (meter_type IN ('HPS', 'FS')),
    meter_phase      text NOT NULL CHECK (meter_phase IN ('SINGLE_PHASE', 'THREE_PHASE')),
    fee_minor        bigint NOT NULL DEFAULT 0 CHECK (fee_minor >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz
);
CREATE INDEX connection_requested_meters_connection ON connection_requested_meters (connection_id);

CREATE TABLE meters (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id         bigint NOT NULL REFERENCES organizations (id),
    external_system         text NOT NULL CHECK (external_system IN ('CALIN', 'ACREL')),
    -- The meter serial; unique per vendor system.
    external_reference      text NOT NULL CHECK (length(btrim(external_reference)) BETWEEN 1 AND 64),
    communication_protocol  text NOT NULL DEFAULT 'CALIN_LORAWAN' CHECK (communication_protocol IN ('CALIN_V1', 'CALIN_V2', 'CALIN_LORAWAN')),
    meter_type              text NOT NULL DEFAULT 'HPS' CHECK (meter_type IN ('HPS', 'FS')),
    meter_phase             text NOT NULL DEFAULT 'SINGLE_PHASE' CHECK (meter_phase IN ('SINGLE_PHASE', 'THREE_PHASE')),
    version                 text,
    nickname                text,
    is_cabin_meter          boolean NOT NULL DEFAULT false,
    -- Power limit (W) applied while full service is off.
    hps_mode_power_limit_w  integer NOT NULL DEFAULT 200 CHECK (hps_mode_power_limit_w >= 0),
    -- Placement: assigned <=> connection_id is set; grid, pole and gateway follow.
    grid_id                 bigint REFERENCES grids (id),
    connection_id           bigint REFERENCES connections (id),
    pole_id                 bigint REFERENCES poles (id),
    dcu_id                  bigint REFERENCES dcus (id),
    assigned_at             timestamptz,
    -- Observed state, as last reported.
    is_on                   boolean,
    credit_wh               bigint,
    power_w                 double precision,
    voltage_v               double precision,
    power_limit_w           integer,
    signal_rssi             integer,
    signal_snr              double precision,
    last_seen_at            timestamptz,
    observed_at             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CHECK ((connection_id IS NULL) = (grid_id IS NULL))
);
CREATE UNIQUE INDEX meters_external ON meters (external_system, external_reference);
CREATE INDEX meters_org ON meters (organization_id, id);
CREATE INDEX meters_grid ON meters (grid_id, id) WHERE deleted_at IS NULL;
CREATE INDEX meters_connection ON meters (connection_id) WHERE connection_id IS NOT NULL;
CREATE INDEX meters_dcu ON meters (dcu_id) WHERE dcu_id IS NOT NULL;
-- One live meter of each type per connection.
CREATE UNIQUE INDEX meters_connection_type ON meters (connection_id, meter_type) WHERE connection_id IS NOT NULL AND deleted_at IS NULL;
