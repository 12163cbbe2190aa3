DROP TABLE ledger_entries;
DROP TABLE ledger_transactions;
DROP FUNCTION ledger_transaction_balances();
DROP FUNCTION ledger_append_only();
DROP TABLE orders;
DROP TABLE wallets;
