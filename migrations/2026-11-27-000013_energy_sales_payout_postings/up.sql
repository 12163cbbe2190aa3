-- Money of delivered energy and of payouts moves in the ledger.
--
-- * ENERGY_SALE: when a meter credit purchase is delivered, its amount moves from the meter's
--   wallet to the grid organization's wallet. It is posted on the purchase's top-up order, so an
--   order may now carry two postings: its own (TRANSFER, PAYMENT, REVERSAL, PAYOUT,
--   PAYOUT_REVERSAL) and at most one energy sale.
-- * PAYOUT / PAYOUT_REVERSAL: a payout transfer attempt is an ORGANIZATION_WITHDRAWAL order
--   (organization wallet -> the provider's system wallet); a failed or unsent transfer is undone by
--   an order reversing it (at most once: orders_refunded_once).
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_order_id_key;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('TRANSFER', 'PAYMENT', 'REVERSAL', 'PAYOUT', 'PAYOUT_REVERSAL', 'ENERGY_SALE'));
-- One posting of its own per order (a second credit of the same order cannot be written) ...
CREATE UNIQUE INDEX ledger_transactions_order_posting ON ledger_transactions (order_id)
    WHERE kind <> 'ENERGY_SALE';
-- ... and the energy it paid for is sold at most once.
CREATE UNIQUE INDEX ledger_transactions_energy_sale ON ledger_transactions (order_id)
    WHERE kind = 'ENERGY_SALE';

-- The withdrawal order of the payout's current (or last) transfer attempt.
ALTER TABLE payouts ADD COLUMN transfer_order_id bigint REFERENCES orders (id);
