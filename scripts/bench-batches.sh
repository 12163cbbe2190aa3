#!/usr/bin/env bash
# Benchmark: one directive batch execution over a grid of 10,000 meters, through the real path
# (HTTP POST /api/v1/directive-batches/{id}/executions: gatekeeper, intake planning, bulk writes,
# junction, live events, audit), on a release build.
#
#   1. SCAN READ_CREDIT            every meter gets a new read
#   2. SCAN READ_CREDIT again      every meter coalesces into the waiting read
#   3. FS_OFF (dual-meter grid)    a TURN_OFF per meter, shadows created
#   4. FS_ON                       a TURN_ON per meter, the 10,000 TURN_OFFs superseded, shadows updated
#
# Tunables: BENCH_METERS (10000), BENCH_PORT (18182), BENCH_POOL (16).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

meters=${BENCH_METERS:-10000}
port=${BENCH_PORT:-18182}
pool=${BENCH_POOL:-16}

say() { printf 'bench-batches: %s\n' "$*" >&2; }

admin=$(bash scripts/db.sh url)
bench_url=$(printf '%s' "$admin" | sed -E 's#/[^/?]*(\?|$)#/tiamat_bench_batches\1#')
say "database: $bench_url"
psql -q "$admin" -c "DROP DATABASE IF EXISTS tiamat_bench_batches WITH (FORCE)" \
    -c "CREATE DATABASE tiamat_bench_batches" >/dev/null

cargo build --release -q -p tiamat
bin=${CARGO_TARGET_DIR:-target}/release/tiamat
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

say "seeding $meters FS meters on an energised dual-meter grid with an online LoRaWAN gateway"
psql -q "$bench_url" <<SQL >/dev/null
UPDATE grids SET uses_dual_meter_setup = true, is_hps_on = true WHERE id = $grid;
INSERT INTO dcus (organization_id, grid_id, external_system, external_reference, communication_protocol, is_online)
VALUES ($org, $grid, 'CHIRPSTACK', 'gw-bench', 'CALIN_LORAWAN', true);
WITH a AS (
    INSERT INTO accounts (organization_id, auth_user_id, full_name)
    SELECT $org, gen_random_uuid(), 'Customer ' || g FROM generate_series(1, $meters) g
    RETURNING id
), c AS (
    INSERT INTO customers (account_id, organization_id, grid_id, latitude, longitude)
    SELECT id, $org, $grid, 6.5, 3.4 FROM a
    RETURNING id
), cn AS (
    INSERT INTO connections (organization_id, grid_id, customer_id, currency)
    SELECT $org, $grid, id, 'NGN' FROM c
    RETURNING id
)
INSERT INTO meters (organization_id, external_system, external_reference, meter_type, grid_id,
                    connection_id, assigned_at, last_seen_at)
SELECT $org, 'CALIN', 'SN' || lpad(id::text, 9, '0'), 'FS', $grid, id, now(), now() FROM cn;
VACUUM ANALYZE;
SQL

"$bin" serve 2>/tmp/tiamat-bench-batches.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
api="http://127.0.0.1:$port/api/v1"

rule() {
    curl -fsS -H "X-API-Key: $key" -H 'content-type: application/json' -d "$1" "$api/directive-batches" |
        grep -oE '"id":[0-9]+' | head -n1 | cut -d: -f2
}
# run NAME RULE: times the execution request; prints one line with the counts it answered.
run() {
    local name=$1 id=$2 out
    out=$(curl -sS -o /tmp/tiamat-bench-batches.json -w '%{http_code} %{time_total}' \
        -X POST -H "X-API-Key: $key" "$api/directive-batches/$id/executions")
    local status=${out% *} secs=${out#* }
    [ "$status" = 201 ] || { say "$name answered $status: $(cat /tmp/tiamat-bench-batches.json)"; exit 1; }
    local counts
    counts=$(python3 - <<'PY'
import json
d = json.load(open("/tmp/tiamat-bench-batches.json"))
print("meters %(meter_count)s  created %(created_count)s  coalesced %(coalesced_count)s" % d)
PY
)
    results+=("$(printf '  %-34s %6.0f ms   %s' "$name" "$(awk -v s="$secs" 'BEGIN { print s * 1000 }')" "$counts")")
}
results=()

scan=$(rule "{\"grid_id\": $grid, \"local_time\": \"06:00\", \"is_repeating\": true, \"action\": \"SCAN\", \"scan_kind\": \"READ_CREDIT\"}")
off=$(rule "{\"grid_id\": $grid, \"local_time\": \"22:00\", \"is_repeating\": true, \"action\": \"FS_OFF\"}")
on=$(rule "{\"grid_id\": $grid, \"local_time\": \"07:00\", \"is_repeating\": true, \"action\": \"FS_ON\"}")
say "SCAN READ_CREDIT, twice"
run "SCAN READ_CREDIT (creates)" "$scan"
run "SCAN READ_CREDIT (coalesces)" "$scan"
say "FS_OFF, then FS_ON"
run "FS_OFF (creates, shadows)" "$off"
run "FS_ON (creates, supersedes)" "$on"

# Every meter: one waiting read, one waiting TURN_ON, the TURN_OFF superseded.
check=$(psql -tA "$bench_url" -c "SELECT count(*) FILTER (WHERE kind = 'READ_CREDIT' AND status = 'QUEUED') || ' reads queued, ' ||
    count(*) FILTER (WHERE kind = 'TURN_ON' AND status = 'QUEUED') || ' TURN_ON queued, ' ||
    count(*) FILTER (WHERE kind = 'TURN_OFF' AND status = 'SUPERSEDED') || ' TURN_OFF superseded'
    FROM meter_interactions")
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT

echo
echo "Directive batch over $meters meters (HTTP POST /directive-batches/{id}/executions, one request each), $(nproc) cores"
for r in "${results[@]}"; do
    printf '%s\n' "$r"
done
printf '  afterwards: %s\n  server peak RSS: %s MB   (target: each run < 2000 ms)\n' "$check" "$((rss_kb / 1024))"
