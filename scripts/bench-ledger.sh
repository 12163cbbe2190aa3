#!/usr/bin/env bash
# Benchmark: wallet-to-wallet transfers at concurrency 32 over 1,000 agent wallets through
# POST /api/v1/orders (auth, validation, permission check on the locked wallets, one database
# transaction: both wallets FOR UPDATE in id order, funds check, order row, ledger transaction,
# two entries, cached balances, audit event), against pgbench running the same statements
# (tiamat's SQL, prepared) at the same concurrency. Ends with `tiamat ledger verify` over the
# result: every balance equals its entries and every transaction balances.
#
# Tunables: BENCH_CONCURRENCY (32), BENCH_DURATION seconds (20), BENCH_WALLETS (1000),
# BENCH_PORT (18183), BENCH_POOL (API's DB pool size, 6).
#
# Pool 6: PostgreSQL runs on the same 2 cores, so every extra backend only queues for CPU and
# adds lock contention, and starves the API's own threads between a transaction's statements.
# Measured (10 s runs): pool 4 1,517/s, 6 1,718/s, 8 1,756/s, 12 1,779/s, 16 1,755/s, 32 1,457/s
# (p99 33 ms at 6, 100 ms at 32).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

conc=${BENCH_CONCURRENCY:-32}
dur=${BENCH_DURATION:-20}
wallets=${BENCH_WALLETS:-1000}
port=${BENCH_PORT:-18183}
pool=${BENCH_POOL:-6}

say() { printf 'bench-ledger: %s\n' "$*" >&2; }

pgbench_bin=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$pgbench_bin" ] || { say "pgbench not found (it ships with PostgreSQL)"; exit 1; }

admin=$(bash scripts/db.sh url)
bench_url=$(printf '%s' "$admin" | sed -E 's#/[^/?]*(\?|$)#/tiamat_bench_ledger\1#')
say "database: $bench_url"
psql -q "$admin" -c "DROP DATABASE IF EXISTS tiamat_bench_ledger WITH (FORCE)" \
    -c "CREATE DATABASE tiamat_bench_ledger" >/dev/null

cargo build --release -q -p tiamat -p loadgen
bin=${CARGO_TARGET_DIR:-target}/release/tiamat
loadgen=${CARGO_TARGET_DIR:-target}/release/loadgen
export TIAMAT_DATABASE_URL="$bench_url"
export TIAMAT_JWT_SECRET="bench-secret-bench-secret-bench-secret-00"
export TIAMAT_LOG=warn TIAMAT_LISTEN="127.0.0.1:$port" TIAMAT_DB_POOL_SIZE="$pool"
unset TIAMAT_JWKS_URL TIAMAT_SUPABASE_URL TIAMAT_SUPABASE_SERVICE_ROLE_KEY TIAMAT_CHIRPSTACK_API_URL

"$bin" migrate 2>/dev/null
boot=$("$bin" bootstrap --org-name "Bench Solar" --email bench@bench.test --demo-grid 2>/dev/null)
field() { printf '%s' "$boot" | grep -oE "\"$1\":(\"[^\"]*\"|[0-9]+)" | head -n1 | sed -E 's/^"[^"]*"://; s/"//g'; }
key=$(field api_key)
org=$(field organization_id)
grid=$(field grid_id)

# Agents with wallets, each funded from the CASH system wallet by a balanced posting (so the
# ledger verifies before and after the run).
say "seeding $wallets agent wallets with 1,000,000 minor units each"
psql -q -v ON_ERROR_STOP=1 "$bench_url" <<SQL >/dev/null
WITH a AS (
    INSERT INTO accounts (organization_id, auth_user_id, full_name, phone)
    SELECT $org, gen_random_uuid(), 'Agent ' || g, '+235800' || lpad(g::text, 7, '0')
      FROM generate_series(1, $wallets) g
    RETURNING id
), ag AS (
    INSERT INTO agents (account_id, organization_id, grid_id) SELECT id, $org, $grid FROM a RETURNING id
)
INSERT INTO wallets (owner_type, agent_id, organization_id, currency, balance_minor)
SELECT 'AGENT', id, $org, 'NGN', 1000000 FROM ag;
INSERT INTO wallets (owner_type, system_key, currency) VALUES ('SYSTEM', 'CASH', 'NGN')
    ON CONFLICT DO NOTHING;
BEGIN;
-- One funding order per agent, as real top-ups would be: statistics from a single giant posting
-- (1,001 entries under one transaction id) would make the ledger tables look like one row each.
WITH sys AS (SELECT id FROM wallets WHERE system_key = 'CASH' AND currency = 'NGN'),
ag AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM wallets WHERE owner_type = 'AGENT'),
o AS (
    INSERT INTO orders (organization_id, sender_wallet_id, receiver_wallet_id, amount_minor, currency,
                        order_type, status, sender_owner_type, receiver_owner_type, provider, completed_at)
    SELECT $org, sys.id, ag.id, 1000000, 'NGN', 'AGENT_TOPUP', 'COMPLETED', 'SYSTEM', 'AGENT', 'CASH', now()
      FROM sys, ag ORDER BY ag.k
    RETURNING id, receiver_wallet_id
), t AS (INSERT INTO ledger_transactions (order_id, kind) SELECT id, 'TRANSFER' FROM o RETURNING id, order_id)
INSERT INTO ledger_entries (transaction_id, wallet_id, currency, amount_minor, balance_after_minor)
SELECT t.id, o.receiver_wallet_id, 'NGN', 1000000, 1000000 FROM t JOIN o ON o.id = t.order_id
UNION ALL
SELECT t.id, sys.id, 'NGN', -1000000, -1000000::bigint * ag.k
  FROM t JOIN o ON o.id = t.order_id JOIN ag ON ag.id = o.receiver_wallet_id, sys;
UPDATE wallets SET balance_minor = -1000000::bigint * $wallets WHERE system_key = 'CASH';
COMMIT;
VACUUM ANALYZE;
SQL
lo=$(psql -tA "$bench_url" -c "SELECT min(id) FROM wallets WHERE owner_type = 'AGENT'")
hi=$(psql -tA "$bench_url" -c "SELECT max(id) FROM wallets WHERE owner_type = 'AGENT'")
"$bin" ledger verify >/dev/null || { say "the seeded ledger does not verify"; exit 1; }

"$bin" serve 2>/tmp/tiamat-bench-ledger-serve.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

say "warming up"
"$loadgen" ledger --url "http://127.0.0.1:$port" --key "$key" --concurrency "$conc" --seconds 3 >/dev/null
say "API: transfers for ${dur}s at concurrency $conc over $wallets wallets"
api=$("$loadgen" ledger --url "http://127.0.0.1:$port" --key "$key" --concurrency "$conc" --seconds "$dur")
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT
# The wallets' table holds 1,000 rows; it stays a few hundred kB while old row versions are
# pruned, and swells when something holds back the cleanup horizon (a clue when a run is slow).
wallets_size=$(psql -tA "$bench_url" -c "SELECT pg_size_pretty(pg_relation_size('wallets'))")

# The same transaction as tiamat sends it: lock both wallets in id order (reading their balances
# for the funds check), insert the order, post the ledger transaction with both entries and the
# cached balances in one statement, audit, commit.
cat >/tmp/tiamat-bench-ledger.sql <<SQL
\set a random($lo, $hi)
\set d random(1, $((hi - lo)))
\set b $lo + ((:a - $lo + :d) % ($hi - $lo + 1))
\set amt random(1, 100)
BEGIN;
SELECT max(balance_minor) FILTER (WHERE id = :a) AS ba, max(balance_minor) FILTER (WHERE id = :b) AS bb
  FROM (SELECT w.id, w.balance_minor FROM wallets w WHERE w.id IN (:a, :b) ORDER BY w.id FOR UPDATE OF w) l \gset
\set sender_after :ba - :amt
\set receiver_after :bb + :amt
\set debit -1 * :amt
INSERT INTO orders (organization_id, sender_wallet_id, receiver_wallet_id, amount_minor, currency, order_type,
                    status, sender_owner_type, receiver_owner_type, grid_id, is_hidden_from_reporting, completed_at)
VALUES ($org, :a, :b, :amt, 'NGN', 'AGENT_TOPUP', 'COMPLETED', 'AGENT', 'AGENT', $grid, false, now())
RETURNING id AS order_id \gset
WITH t AS (INSERT INTO ledger_transactions (order_id, kind) VALUES (:order_id, 'TRANSFER') RETURNING id),
e AS (INSERT INTO ledger_entries (transaction_id, wallet_id, currency, amount_minor, balance_after_minor)
      SELECT t.id, x.w, 'NGN', x.amount, x.after FROM t,
             unnest(ARRAY[:a, :b]::bigint[], ARRAY[:debit, :amt]::bigint[], ARRAY[:sender_after, :receiver_after]::bigint[])
             AS x(w, amount, after) RETURNING 1),
u AS (UPDATE wallets w SET balance_minor = v.balance, updated_at = now()
      FROM unnest(ARRAY[:a, :b]::bigint[], ARRAY[:sender_after, :receiver_after]::bigint[]) AS v(id, balance)
      WHERE w.id = v.id RETURNING 1)
SELECT t.id FROM t;
INSERT INTO audit_events (organization_id, action, resource_type, resource_id, details)
VALUES ($org, 'order.transferred', 'order', :order_id, '{"status": "COMPLETED"}'::jsonb);
END;
SQL
say "pgbench: the same transaction for ${dur}s at concurrency $conc"
pg_out=$("$pgbench_bin" -n -M prepared -c "$conc" -j 2 -T "$dur" -r -f /tmp/tiamat-bench-ledger.sql "$bench_url" 2>&1)
pg_tps=$(printf '%s\n' "$pg_out" | awk '/^tps/ {print int($3); exit}')
pg_lat=$(printf '%s\n' "$pg_out" | awk '/^latency average/ {print $4; exit}')
pg_failed=$(printf '%s\n' "$pg_out" | awk '/number of failed transactions/ {print $5; exit}')

say "tiamat ledger verify"
if verify=$("$bin" ledger verify 2>&1); then verified="sound"; else verified="NOT SOUND"; fi

api_tps=$(printf '%s' "$api" | grep -oE '"transfers_per_second":[0-9.]+' | cut -d: -f2)
ratio=$(awk -v a="${api_tps:-0}" -v b="${pg_tps:-0}" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "n/a" }')
echo
echo "Ledger transfers: $wallets wallets, concurrency $conc, ${dur}s per run, $(nproc) cores (API, PostgreSQL and load share them)"
echo "  API (POST /api/v1/orders)  $api"
echo "  SQL only (pgbench)         $pg_tps tps   latency avg ${pg_lat:-?} ms   failed ${pg_failed:-0}"
echo "  API / pgbench              $ratio %"
echo "  ledger verify afterwards   $verified: $(printf '%s' "$verify" | tail -n1)"
echo "  wallets table after the API run: $wallets_size"
echo "  target: >= 1000 completed transfers/s through the API"
