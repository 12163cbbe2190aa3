-- Fails while energy sales are on the books (an order then has two postings): ledger rows are
-- append-only.
ALTER TABLE payouts DROP COLUMN transfer_order_id;
DROP INDEX ledger_transactions_energy_sale;
DROP INDEX ledger_transactions_order_posting;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check;
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_kind_check
    CHECK (kind IN ('TRANSFER', 'PAYMENT', 'REVERSAL', 'PAYOUT'));
ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_order_id_key UNIQUE (order_id);
