#!/usr/bin/env bash
# Benchmark: GET /api/v1/customers?limit=50 through the API (oha) against the same SQL run
# directly by pgbench, at the same concurrency, on the same database and machine.
#
# Tunables: BENCH_CONCURRENCY (32), BENCH_DURATION seconds (20), BENCH_CUSTOMERS (20000),
# BENCH_PORT (18181), BENCH_POOL (API's DB pool size, 16).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

conc=${BENCH_CONCURRENCY:-32}
dur=${BENCH_DURATION:-20}
customers=${BENCH_CUSTOMERS:-20000}
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

cargo build --release -q -p tiamat
bin=${CARGO_TARGET_DIR:-target}/release/tiamat
export TIAMAT_DATABASE_URL="$bench_url"
export TIAMAT_JWT_SECRET="bench-secret-bench-secret-bench-secret-00"
export TIAMAT_LOG=warn TIAMAT_LISTEN="127.0.0.1:$port" TIAMAT_DB_POOL_SIZE="$pool"
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

say "warming up"
oha --no-tui -n 2000 -c "$conc" -H "X-API-Key: $key" "$url" >/dev/null
say "API: ${dur}s at concurrency $conc"
oha --no-tui --output-format json -z "${dur}s" -c "$conc" -H "X-API-Key: $key" "$url" >/tmp/tiamat-bench-oha.json
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT

read -r api_rps api_p50 api_p99 api_ok <<<"$(python3 - <<'PY' 2>/dev/null || echo "0 0 0 0"
import json
d = json.load(open("/tmp/tiamat-bench-oha.json"))
s = d["summary"]; p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
print(f'{s["requestsPerSec"]:.0f} {p["p50"]*1000:.2f} {p["p99"]*1000:.2f} {s["successRate"]*100:.1f}')
PY
)"

# The list query as Diesel sends it, prepared, with the same page size (+1 to detect a next page).
cat >/tmp/tiamat-bench.sql <<SQL
SELECT customers.id, customers.account_id, customers.organization_id, customers.grid_id, customers.gender,
       customers.generator_owned, customers.is_hidden_from_reporting, customers.lives_primarily_in_the_community,
       customers.latitude, customers.longitude, customers.total_connection_fee_minor,
       customers.total_connection_paid_minor, customers.created_at, customers.updated_at,
       accounts.auth_user_id, accounts.full_name, accounts.email, accounts.phone
  FROM customers INNER JOIN accounts ON customers.account_id = accounts.id
 WHERE customers.deleted_at IS NULL AND customers.organization_id = $org
 ORDER BY customers.id ASC LIMIT 51;
SQL
say "pgbench: ${dur}s at concurrency $conc"
pg_tps=$("$pgbench_bin" -n -M prepared -c "$conc" -j 2 -T "$dur" -f /tmp/tiamat-bench.sql "$bench_url" 2>/dev/null |
    awk '/^tps/ {print int($3); exit}')

ratio=$(awk -v a="$api_rps" -v b="$pg_tps" 'BEGIN { if (b > 0) printf "%.0f", 100 * a / b; else print "n/a" }')
cat <<OUT

GET /api/v1/customers?limit=50   ($customers customers, concurrency $conc, ${dur}s, $(nproc) cores)
  API (oha)           ${api_rps} req/s   p50 ${api_p50} ms   p99 ${api_p99} ms   success ${api_ok}%   peak RSS $((rss_kb / 1024)) MB
  SQL only (pgbench)  ${pg_tps} tps
  API / pgbench       ${ratio} %      (targets: >= 50 %, p99 < 25 ms, RSS < 100 MB)
OUT
