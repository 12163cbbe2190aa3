-- Refunds to be made at a payment provider (the card, mobile-money or bank account that paid).
--
-- A row is written in the transaction that posts the ledger's reversing order of an order paid
-- through a provider (its `provider_transaction_id` set), so the ledger never says "refunded"
-- without the provider being asked. The refund worker sends it (PENDING -> SENT) and reads it back
-- until the provider settles it (COMPLETED or FAILED). A FAILED row does not undo the ledger
-- reversal: an operator settles it at the provider.
CREATE TABLE provider_refunds (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id         bigint NOT NULL REFERENCES organizations (id),
    -- The reversing order (one provider refund per reversal) and the order it reverses.
    order_id                bigint NOT NULL UNIQUE REFERENCES orders (id),
    original_order_id       bigint NOT NULL REFERENCES orders (id),
    provider                text NOT NULL,
    provider_transaction_id text NOT NULL,
    amount_minor            bigint NOT NULL CHECK (amount_minor > 0),
    currency                char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status                  text NOT NULL DEFAULT 'PENDING'
                            CHECK (status IN ('PENDING', 'SENT', 'COMPLETED', 'FAILED')),
    -- The provider's id of the refund, once known (SENT and after).
    provider_refund_id      text,
    -- Send attempts made (each may have reached the provider: a later one reads back first).
    attempts                integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the worker looks at it next (a claim pushes it out by a lease).
    next_attempt_at         timestamptz NOT NULL DEFAULT now(),
    last_error              text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    completed_at            timestamptz,
    CONSTRAINT provider_refunds_sent_has_id
        CHECK (status NOT IN ('SENT', 'COMPLETED') OR provider_refund_id IS NOT NULL)
);
-- The worker's queue: open rows by due time.
CREATE INDEX provider_refunds_due ON provider_refunds (next_attempt_at)
    WHERE status IN ('PENDING', 'SENT');
CREATE INDEX provider_refunds_original ON provider_refunds (original_order_id);
