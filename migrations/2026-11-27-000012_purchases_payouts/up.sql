-- Meter credit purchases and grid-owner payouts (issue 5).

-- A meter may be sold energy at its own tariff instead of its grid's HPS/FS tariff.
ALTER TABLE meters ADD COLUMN tariff_minor_per_kwh bigint CHECK (tariff_minor_per_kwh > 0);

-- Capacity rental a grid owner pays per month (payouts), priced in `rental_currency` (NULL: the
-- grid's currency).
ALTER TABLE grids
    ADD COLUMN pv_rental_minor_per_kwp_month bigint NOT NULL DEFAULT 0
        CHECK (pv_rental_minor_per_kwp_month >= 0),
    ADD COLUMN storage_rental_minor_per_kwh_month bigint NOT NULL DEFAULT 0
        CHECK (storage_rental_minor_per_kwh_month >= 0),
    ADD COLUMN rental_currency char(3) CHECK (rental_currency ~ '^[A-Z]{3}$');

-- One purchase per completed ENERGY_TOPUP order to a meter wallet: the energy it bought and the
-- TOP_UP interaction carrying its token.
CREATE TABLE meter_purchases (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id       bigint NOT NULL REFERENCES organizations (id),
    -- Exactly one purchase per order, however many workers see its completion.
    order_id              bigint NOT NULL UNIQUE REFERENCES orders (id),
    meter_id              bigint NOT NULL REFERENCES meters (id),
    grid_id               bigint REFERENCES grids (id),
    amount_minor          bigint NOT NULL CHECK (amount_minor > 0),
    currency              char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- 0 when it could not be priced (then it is FAILED).
    energy_wh             bigint NOT NULL CHECK (energy_wh >= 0),
    tariff_minor_per_kwh  bigint CHECK (tariff_minor_per_kwh > 0),
    tariff_source         text CHECK (tariff_source IN ('METER', 'GRID_HPS', 'GRID_FS')),
    status                text NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED', 'REFUNDED')),
    failure_reason        text,
    -- The TOP_UP carrying the current token (NULL while it is being created, or never priced).
    interaction_id        bigint REFERENCES meter_interactions (id),
    attempts              integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Set while a worker or an operator creates the TOP_UP; a claim left behind means the
    -- creation was interrupted (the purchase is then failed, never retried blindly).
    claimed_at            timestamptz,
    payer_wallet_id       bigint NOT NULL REFERENCES wallets (id),
    meter_wallet_id       bigint NOT NULL REFERENCES wallets (id),
    refund_order_id       bigint REFERENCES orders (id),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT meter_purchases_priced CHECK (status = 'FAILED' OR status = 'REFUNDED' OR energy_wh > 0),
    CONSTRAINT meter_purchases_refund CHECK ((status = 'REFUNDED') = (refund_order_id IS NOT NULL))
);
CREATE INDEX meter_purchases_org ON meter_purchases (organization_id, id);
CREATE INDEX meter_purchases_pending ON meter_purchases (id) WHERE status = 'PENDING';
CREATE INDEX meter_purchases_interaction ON meter_purchases (interaction_id);
CREATE INDEX meter_purchases_meter ON meter_purchases (meter_id, id);
-- The purchase worker's scan: recently completed top-ups (those without a purchase are few).
CREATE INDEX orders_completed_top_ups ON orders (completed_at)
    WHERE status = 'COMPLETED' AND order_type = 'ENERGY_TOPUP';

-- Settlement of a grid's month to its owner.
CREATE TABLE payouts (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id         bigint NOT NULL REFERENCES organizations (id),
    grid_id                 bigint NOT NULL REFERENCES grids (id),
    month                   text NOT NULL CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    period_start            timestamptz NOT NULL,
    period_end              timestamptz NOT NULL CHECK (period_end > period_start),
    currency                char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- What the formula gives; negative when the owner owes the rental.
    proposed_amount_minor   bigint NOT NULL,
    approved_amount_minor   bigint CHECK (approved_amount_minor > 0),
    status                  text NOT NULL CHECK (status IN ('WAITING_FOR_APPROVAL', 'APPROVED', 'PROCESSING', 'PAID', 'FAILED')),
    -- Every figure of the formula (payments::payouts::PayoutBreakdown).
    breakdown               jsonb NOT NULL,
    bank_code               text,
    account_number          text,
    account_name            text,
    approved_by_account_id  bigint REFERENCES accounts (id),
    approved_by_api_key_id  bigint REFERENCES api_keys (id),
    approved_at             timestamptz,
    -- Our reference of the current transfer (the provider's idempotency key), and its attempt.
    transfer_reference      text UNIQUE,
    transfer_attempt        integer NOT NULL DEFAULT 0,
    provider_transfer_id    text,
    failure_reason          text,
    paid_at                 timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payouts_one_per_month UNIQUE (grid_id, month),
    CONSTRAINT payouts_approved CHECK (
        status = 'WAITING_FOR_APPROVAL'
        OR (approved_amount_minor IS NOT NULL AND bank_code IS NOT NULL AND account_number IS NOT NULL))
);
CREATE INDEX payouts_org ON payouts (organization_id, id);
CREATE INDEX payouts_processing ON payouts (transfer_reference) WHERE status = 'PROCESSING';
