#!/usr/bin/env bash
# Benchmark: GET /api/v1/customers?limit=50 through the API (oha) against the same SQL run
# directly by pgbench, at the same concurrency, on the same database and machine.
#
# Then the same for GET /api/v1/meters?grid_id=..&limit=100 over a grid of 10,000 meters, and the
# WebSocket fan-out: 5,000 subscribers over 100 grids, time from a grid state change to delivery.
#
# Tunables: BENCH_CONCURRENCY (32), BENCH_DURATION seconds (20), BENCH_CUSTOMERS (20000),
# BENCH_METERS (10000), BENCH_WS_SUBSCRIBERS (5000), BENCH_WS_GRIDS (100),
# BENCH_PORT (18181), BENCH_POOL (API's DB pool size, 16).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

conc=${BENCH_CONCURRENCY:-32}
dur=${BENCH_DURATION:-20}
customers=${BENCH_CUSTOMERS:-20000}
meters=${BENCH_METERS:-10000}
subscribers=${BENCH_WS_SUBSCRIBERS:-5000}
ws_grids=${BENCH_WS_GRIDS:-100}
port=${BENCH_PORT:-18181}
pool=${BENCH_POOL:-16}

say() { printf 'bench: %s\n' "$*" >&2; }

cargo_bin="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
case ":$PATH:" in *":$cargo_bin:"*) ;; *) export PATH="$cargo_bin:$PATH" ;; esac
if ! command -v oha >/dev/null 2>&1; then
    say "installing oha (HTTP load generator) with cargo install oha --locked"
    cargo install oha --locked
fi
pgbench_bin=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$pgbench_bin" ] || { say "pgbench not found (it ships with PostgreSQL)"; exit 1; }

admin=$(bash scripts/db.sh url)
bench_url=$(printf '%s' "$admin" | sed -E 's#/[^/?]*(\?|$)#/tiamat_bench\1#')
say "database: $bench_url"
psql -q "$admin" -c "DROP DATABASE IF EXISTS tiamat_bench WITH (FORCE)" -c "CREATE DATABASE tiamat_bench" >/dev/null

cargo build --release -q -p tiamat -p loadgen
bin=${CARGO_TARGET_DIR:-target}/release/tiamat
export TIAMAT_DATABASE_URL="$bench_url"
export TIAMAT_JWT_SECRET="bench-secret-bench-secret-bench-secret-00"
export TIAMAT_LOG=warn TIAMAT_LISTEN="127.0.0.1:$port" TIAMAT_DB_POOL_SIZE="$pool"
export TIAMAT_CHIRPSTACK_WEBHOOK_SECRET="bench-webhook-secret-0123456789"
unset TIAMAT_JWKS_URL TIAMAT_SUPABASE_URL TIAMAT_SUPABASE_SERVICE_ROLE_KEY

"$bin" migrate 2>/dev/null
boot=$("$bin" bootstrap --org-name "Bench Solar" --email bench@bench.test --demo-grid 2>/dev/null)
field() { printf '%s' "$boot" | grep -oE "\"$1\":(\"[^\"]*\"|[0-9]+)" | head -n1 | sed -E 's/^"[^"]*"://; s/"//g'; }
key=$(field api_key)
org=$(field organization_id)
grid=$(field grid_id)

say "seeding $customers customers"
psql -q "$bench_url" <<SQL >/dev/null
WITH a AS (
    INSERT INTO accounts (organization_id, auth_user_id, full_name, phone)
    SELECT $org, gen_random_uuid(), 'Customer ' || g, '+234800' || lpad(g::text, 7, '0')
      FROM generate_series(1, $customers) g
    RETURNING id
)
INSERT INTO customers (account_id, organization_id, grid_id, latitude, longitude)
SELECT id, $org, $grid, 6.5, 3.4 FROM a;
-- A grid of $meters metered connections for the meter list.
WITH c AS (
    SELECT id FROM customers WHERE organization_id = $org ORDER BY id LIMIT $meters
), cn AS (
    INSERT INTO connections (organization_id, grid_id, customer_id, currency)
    SELECT $org, $grid, id, 'NGN' FROM c
    RETURNING id
)
INSERT INTO meters (organization_id, external_system, external_reference, grid_id, connection_id,
                    assigned_at, is_on, credit_wh, voltage_v, power_w, last_seen_at)
SELECT $org, 'CALIN', 'SN' || lpad(id::text, 9, '0'), $grid, id, now(), true, 5000, 230.0, 42.0, now()
  FROM cn;
VACUUM ANALYZE;
SQL

"$bin" serve 2>/tmp/tiamat-bench-serve.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
url="http://127.0.0.1:$port/api/v1/customers?limit=50"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "$url")
[ "$status" = 200 ] || { say "API answered $status"; exit 1; }

# measure NAME URL SQLFILE: oha against the API, pgbench against the SQL; prints one block.
measure() {
    local name=$1 url=$2 sql=$3
    say "$name: warming up"
    oha --no-tui -n 2000 -c "$conc" -H "X-API-Key: $key" "$url" >/dev/null
    say "$name: API ${dur}s at concurrency $conc"
    oha --no-tui --output-format json -z "${dur}s" -c "$conc" -H "X-API-Key: $key" "$url" >/tmp/tiamat-bench-oha.json
    local api_rps api_p50 api_p99 api_ok pg_tps ratio
    read -r api_rps api_p50 api_p99 api_ok <<<"$(python3 - <<'PY' 2>/dev/null || echo "0 0 0 0"
import json
d = json.load(open("/tmp/tiamat-bench-oha.json"))
s = d["summary"]; p = d["latencyPercentiles"]
print(f'{s["requestsPerSec"]:.0f} {p["p50"]*1000:.2f} {p["p99"]*1000:.2f} {s["successRate"]*100:.1f}')
PY
)"
    say "$name: pgbench ${dur}s at concurrency $conc"
    pg_tps=$("$pgbench_bin" -n -M prepared -c "$conc" -j 2 -T "$dur" -f "$sql" "$bench_url" 2>/dev/null |
        awk '/^tps/ {print int($3); exit}')
    ratio=$(awk -v a="$api_rps" -v b="$pg_tps" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "n/a" }')
    results+=("$(printf '%s\n  API (oha)           %s req/s   p50 %s ms   p99 %s ms   success %s%%\n  SQL only (pgbench)  %s tps\n  API / pgbench       %s %%' \
        "$name" "$api_rps" "$api_p50" "$api_p99" "$api_ok" "$pg_tps" "$ratio")")
}
results=()

# The list queries as Diesel sends them, prepared, with the same page sizes (+1 to detect a next page).
cat >/tmp/tiamat-bench-customers.sql <<SQL
SELECT customers.id, customers.account_id, customers.organization_id, customers.grid_id, customers.gender,
       customers.generator_owned, customers.is_hidden_from_reporting, customers.lives_primarily_in_the_community,
       customers.latitude, customers.longitude, customers.total_connection_fee_minor,
       customers.total_connection_paid_minor, customers.created_at, customers.updated_at,
       accounts.auth_user_id, accounts.full_name, accounts.email, accounts.phone
  FROM customers INNER JOIN accounts ON customers.account_id = accounts.id
 WHERE customers.deleted_at IS NULL AND customers.organization_id = $org
 ORDER BY customers.id ASC LIMIT 51;
SQL
cat >/tmp/tiamat-bench-meters.sql <<SQL
SELECT meters.id, meters.organization_id, meters.external_system, meters.external_reference,
       meters.communication_protocol, meters.meter_type, meters.meter_phase, meters.version, meters.nickname,
       meters.is_cabin_meter, meters.hps_mode_power_limit_w, meters.grid_id, meters.connection_id,
       meters.pole_id, meters.dcu_id, meters.assigned_at, meters.is_on, meters.credit_wh, meters.power_w,
       meters.voltage_v, meters.power_limit_w, meters.signal_rssi, meters.signal_snr, meters.last_seen_at,
       meters.observed_at, meters.created_at, meters.updated_at, connections.customer_id, accounts.full_name
  FROM meters
  LEFT JOIN connections ON connections.id = meters.connection_id
  LEFT JOIN customers ON customers.id = connections.customer_id
  LEFT JOIN accounts ON accounts.id = customers.account_id
 WHERE meters.deleted_at IS NULL AND meters.organization_id = $org AND meters.grid_id = $grid
 ORDER BY meters.id ASC LIMIT 101;
SQL

measure "GET /api/v1/customers?limit=50   ($customers customers)" \
    "http://127.0.0.1:$port/api/v1/customers?limit=50" /tmp/tiamat-bench-customers.sql
measure "GET /api/v1/meters?grid_id=$grid&limit=100   ($meters meters on the grid)" \
    "http://127.0.0.1:$port/api/v1/meters?grid_id=$grid&limit=100" /tmp/tiamat-bench-meters.sql
rss_http_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

say "WebSocket fan-out: $subscribers subscribers over $ws_grids grids"
ws=$("${CARGO_TARGET_DIR:-target}/release/loadgen" ws-fanout --url "http://127.0.0.1:$port" --key "$key" \
    --grids "$ws_grids" --subscribers "$subscribers" --changes 200 2>/dev/null || echo '{}')
rss_ws_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

say "ChirpStack webhook ingest: 20000 unique uplinks at concurrency $conc"
hook=$("${CARGO_TARGET_DIR:-target}/release/loadgen" webhook --url "http://127.0.0.1:$port" \
    --secret "$TIAMAT_CHIRPSTACK_WEBHOOK_SECRET" --events 20000 --concurrency "$conc" 2>/dev/null || echo '{}')
cat >/tmp/tiamat-bench-inbox.sql <<'SQL'
INSERT INTO inbound_events (source, event_type, dedup_key, dev_eui, payload)
VALUES ('chirpstack', 'up', 'pgb-' || :client_id || '-' || random()::text, '0000000000000001',
        '{"deduplicationId": "x", "deviceInfo": {"devEui": "0000000000000001"}, "fCnt": 1, "fPort": 1, "data": "aGk=", "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -90, "snr": 7.0}]}'::jsonb)
ON CONFLICT DO NOTHING;
SQL
say "pgbench: the same inserts"
hook_pg=$("$pgbench_bin" -n -M prepared -c "$conc" -j 2 -T 10 -f /tmp/tiamat-bench-inbox.sql "$bench_url" 2>/dev/null |
    awk '/^tps/ {print int($3); exit}')
rss_peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT

echo
echo "tiamat benchmark: concurrency $conc, ${dur}s per run, $(nproc) cores (API, PostgreSQL and load share them)"
for r in "${results[@]}"; do
    printf '\n%s\n' "$r"
done
printf '\n  peak RSS after the HTTP runs: %s MB   (target < 100 MB)\n' "$((rss_http_kb / 1024))"
printf '\nWebSocket fan-out (state change -> delivery at every subscriber of the grid)\n  %s\n' "$ws"
printf '  server RSS with all subscribers connected: %s MB, peak %s MB   (target < 300 MB)\n' \
    "$((rss_ws_kb / 1024))" "$((rss_peak_kb / 1024))"
printf '\nChirpStack webhook ingest (stored durably, deduplicated)\n  %s\n  pgbench inserting the same rows: %s tps\n' "$hook" "$hook_pg"
echo "  targets: API >= 50 % of pgbench; p99 < 25 ms (customers), < 30 ms (meters), < 100 ms (fan-out); webhook >= 3000 events/s"

# Directive batch over 10,000 meters (its own database and server).
echo
bash scripts/bench-batches.sh

# End-to-end command latency through meter-sim (its own database and server).
echo
bash scripts/bench-pipeline.sh

# Wallet-to-wallet transfers through the ledger vs pgbench (its own database and server).
echo
bash scripts/bench-ledger.sh
