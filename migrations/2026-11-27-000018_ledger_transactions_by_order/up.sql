-- Reading an order's postings (refunds, payout reversals, refund checks) filters by order and a
-- kind chosen at run time, which neither partial unique index of migration 000013 can serve:
-- without this, each such read scans the ledger's largest table but one.
CREATE INDEX ledger_transactions_by_order ON ledger_transactions (order_id);
