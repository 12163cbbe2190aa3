-- Money (issue 5): wallets on a double-entry ledger, and orders (transfers between wallets).
--
-- Invariants the schema itself enforces (the store also checks them, with better messages):
-- * a wallet has exactly one owner and one currency; only SYSTEM wallets may go below zero;
-- * ledger entries and transactions are append-only (corrections are reversing postings);
-- * every ledger transaction balances per currency (checked at commit);
-- * an order is posted at most once (one ledger transaction per order) and a provider's
--   reference or transaction id names at most one order.

CREATE TABLE wallets (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_type             text NOT NULL
                           CHECK (owner_type IN ('ORGANIZATION', 'AGENT', 'CUSTOMER', 'METER', 'CONNECTION', 'SYSTEM')),
    owner_organization_id  bigint REFERENCES organizations (id),
    agent_id               bigint REFERENCES agents (id),
    customer_id            bigint REFERENCES customers (id),
    meter_id               bigint REFERENCES meters (id),
    connection_id          bigint REFERENCES connections (id),
    -- SYSTEM wallets: the provider money enters and leaves through ('FLUTTERWAVE', 'CASH', ...).
    system_key             text CHECK (system_key ~ '^[A-Z][A-Z0-9_]{0,31}$'),
    -- The tenant; NULL only for SYSTEM wallets, which belong to the platform.
    organization_id        bigint REFERENCES organizations (id),
    currency               char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Cache of the sum of the wallet's ledger entries (`tiamat ledger verify` proves it).
    balance_minor          bigint NOT NULL DEFAULT 0,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallets_one_owner CHECK (
        num_nonnulls(owner_organization_id, agent_id, customer_id, meter_id, connection_id, system_key) = 1),
    CONSTRAINT wallets_owner_type CHECK (
        CASE owner_type
            WHEN 'ORGANIZATION' THEN owner_organization_id IS NOT NULL
            WHEN 'AGENT' THEN agent_id IS NOT NULL
            WHEN 'CUSTOMER' THEN customer_id IS NOT NULL
            WHEN 'METER' THEN meter_id IS NOT NULL
            WHEN 'CONNECTION' THEN connection_id IS NOT NULL
            ELSE system_key IS NOT NULL
        END),
    CONSTRAINT wallets_tenant CHECK ((owner_type = 'SYSTEM') = (organization_id IS NULL)),
    CONSTRAINT wallets_not_overdrawn CHECK (owner_type = 'SYSTEM' OR balance_minor >= 0)
);
-- An organization holds one wallet per currency it operates grids in; every other owner one.
CREATE UNIQUE INDEX wallets_organization_owner ON wallets (owner_organization_id, currency) WHERE owner_organization_id IS NOT NULL;
CREATE UNIQUE INDEX wallets_agent_owner ON wallets (agent_id) WHERE agent_id IS NOT NULL;
CREATE UNIQUE INDEX wallets_customer_owner ON wallets (customer_id) WHERE customer_id IS NOT NULL;
CREATE UNIQUE INDEX wallets_meter_owner ON wallets (meter_id) WHERE meter_id IS NOT NULL;
CREATE UNIQUE INDEX wallets_connection_owner ON wallets (connection_id) WHERE connection_id IS NOT NULL;
CREATE UNIQUE INDEX wallets_system_owner ON wallets (system_key, currency) WHERE system_key IS NOT NULL;
CREATE INDEX wallets_org ON wallets (organization_id, id);

CREATE TABLE orders (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The tenant the order belongs to: the receiver's, or the sender's when money leaves.
    organization_id          bigint NOT NULL REFERENCES organizations (id),
    sender_wallet_id         bigint NOT NULL REFERENCES wallets (id),
    receiver_wallet_id       bigint NOT NULL REFERENCES wallets (id),
    amount_minor             bigint NOT NULL CHECK (amount_minor > 0),
    currency                 char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- NULL where the predecessor's inference names no type (e.g. meter -> organization).
    order_type               text CHECK (order_type IN ('ENERGY_TOPUP', 'CONNECTION_PAYMENT', 'CONNECTION_REFUND',
                                 'AGENT_WITHDRAWAL', 'AGENT_TOPUP', 'ORGANIZATION_TOPUP',
                                 'ORGANIZATION_WITHDRAWAL', 'CUSTOMER_TOPUP')),
    status                   text NOT NULL
                             CHECK (status IN ('INITIALISED', 'PENDING', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT', 'IGNORED')),
    sender_owner_type        text NOT NULL,
    receiver_owner_type      text NOT NULL,
    -- Revenue attribution (the predecessor's historical_grid_id): the receiver's grid, else the sender's.
    grid_id                  bigint REFERENCES grids (id),
    is_hidden_from_reporting boolean NOT NULL DEFAULT false,
    -- External payments: the provider, our unguessable reference (its tx_ref) and its transaction id.
    provider                 text,
    external_reference       text,
    provider_transaction_id  text,
    payment_method           text,
    payment_channel          text,
    author_account_id        bigint REFERENCES accounts (id),
    author_api_key_id        bigint REFERENCES api_keys (id),
    idempotency_key          text,
    -- A refund is an order reversing another one.
    reverses_order_id        bigint REFERENCES orders (id),
    failure_reason           text,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    completed_at             timestamptz,
    CONSTRAINT orders_two_wallets CHECK (sender_wallet_id <> receiver_wallet_id),
    CONSTRAINT orders_reference_has_provider CHECK (external_reference IS NULL OR provider IS NOT NULL)
);
CREATE UNIQUE INDEX orders_provider_reference ON orders (provider, external_reference) WHERE external_reference IS NOT NULL;
CREATE UNIQUE INDEX orders_provider_transaction ON orders (provider, provider_transaction_id) WHERE provider_transaction_id IS NOT NULL;
-- An order is refunded at most once (a failed refund may be tried again).
CREATE UNIQUE INDEX orders_refunded_once ON orders (reverses_order_id)
    WHERE reverses_order_id IS NOT NULL AND status IN ('PENDING', 'COMPLETED');
CREATE INDEX orders_org ON orders (organization_id, id);
CREATE INDEX orders_sender ON orders (sender_wallet_id, id);
CREATE INDEX orders_receiver ON orders (receiver_wallet_id, id);
CREATE INDEX orders_revenue ON orders (grid_id, created_at) WHERE status = 'COMPLETED';
CREATE INDEX orders_initialised ON orders (created_at) WHERE status = 'INITIALISED';

CREATE TABLE ledger_transactions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- One posting per order: a second credit of the same order cannot be written.
    order_id    bigint NOT NULL UNIQUE REFERENCES orders (id),
    kind        text NOT NULL CHECK (kind IN ('TRANSFER', 'PAYMENT', 'REVERSAL', 'PAYOUT')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id       bigint NOT NULL REFERENCES ledger_transactions (id),
    wallet_id            bigint NOT NULL REFERENCES wallets (id),
    currency             char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Signed: credits positive, debits negative.
    amount_minor         bigint NOT NULL CHECK (amount_minor <> 0),
    balance_after_minor  bigint NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_wallet ON ledger_entries (wallet_id, id);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger rows are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'check_violation';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- Debits equal credits per currency in every transaction, checked when the writing database
-- transaction commits (entries are inserted one by one).
CREATE FUNCTION ledger_transaction_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id
               GROUP BY currency HAVING sum(amount_minor) <> 0) THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', NEW.transaction_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balances();

-- Existing owners get their wallets: organizations one per currency of their grids, the others in
-- their grid's currency (a meter once it is on a grid).
INSERT INTO wallets (owner_type, owner_organization_id, organization_id, currency)
SELECT DISTINCT 'ORGANIZATION', g.organization_id, g.organization_id, g.currency
FROM grids g WHERE g.deleted_at IS NULL;
INSERT INTO wallets (owner_type, agent_id, organization_id, currency)
SELECT 'AGENT', a.id, a.organization_id, g.currency FROM agents a JOIN grids g ON g.id = a.grid_id;
INSERT INTO wallets (owner_type, customer_id, organization_id, currency)
SELECT 'CUSTOMER', c.id, c.organization_id, g.currency FROM customers c JOIN grids g ON g.id = c.grid_id;
INSERT INTO wallets (owner_type, connection_id, organization_id, currency)
SELECT 'CONNECTION', c.id, c.organization_id, c.currency FROM connections c;
INSERT INTO wallets (owner_type, meter_id, organization_id, currency)
SELECT 'METER', m.id, m.organization_id, g.currency FROM meters m JOIN grids g ON g.id = m.grid_id;
