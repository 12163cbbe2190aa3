#!/usr/bin/env bash
# Benchmark: end-to-end command latency, from POST /meters/{id}/commands to SUCCESSFUL, through
# the whole pipeline (intake, delivery worker, ChirpStack gRPC adapter, meter-sim decoding the
# CALIN frame and answering with txack/ack/up webhooks, inbox worker, completion) on a release
# build, with zero simulated network latency. Commands are sent one at a time, so the per-grid
# LoRaWAN pacing (2 s by default) is set to 0 here: what is measured is what the pipeline itself
# adds on top of the radio.
#
# Tunables: BENCH_PORT (18183), BENCH_SIM (127.0.0.1:18191), BENCH_COMMANDS (300).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

port=${BENCH_PORT:-18183}
sim=${BENCH_SIM:-127.0.0.1:18191}
commands=${BENCH_COMMANDS:-300}

say() { printf 'bench-pipeline: %s\n' "$*" >&2; }

admin=$(bash scripts/db.sh url)
bench_url=$(printf '%s' "$admin" | sed -E 's#/[^/?]*(\?|$)#/tiamat_bench_pipeline\1#')
psql -q "$admin" -c "DROP DATABASE IF EXISTS tiamat_bench_pipeline WITH (FORCE)" \
    -c "CREATE DATABASE tiamat_bench_pipeline" >/dev/null

cargo build --release -q -p tiamat -p loadgen
bin=${CARGO_TARGET_DIR:-target}/release/tiamat
export TIAMAT_DATABASE_URL="$bench_url"
export TIAMAT_JWT_SECRET="bench-secret-bench-secret-bench-secret-00"
export TIAMAT_LOG=warn TIAMAT_LISTEN="127.0.0.1:$port"
export TIAMAT_CHIRPSTACK_WEBHOOK_SECRET="bench-webhook-secret-0001"
export TIAMAT_CHIRPSTACK_API_URL="http://$sim"
export TIAMAT_CHIRPSTACK_API_TOKEN="bench-sim-token"
export TIAMAT_CHIRPSTACK_APPLICATION_ID="00000000-0000-4000-8000-000000000001"
export TIAMAT_CHIRPSTACK_DEVICE_PROFILE_ID="00000000-0000-4000-8000-000000000002"
export TIAMAT_CHIRPSTACK_APP_KEY="00112233445566778899aabbccddeeff"
export TIAMAT_LORAWAN_DOWNLINK_INTERVAL_MS=0
unset TIAMAT_JWKS_URL TIAMAT_SUPABASE_URL TIAMAT_SUPABASE_SERVICE_ROLE_KEY

"$bin" migrate 2>/dev/null
boot=$("$bin" bootstrap --org-name "Bench Solar" --email bench@bench.test --demo-grid 2>/dev/null)
field() { printf '%s' "$boot" | grep -oE "\"$1\":(\"[^\"]*\"|[0-9]+)" | head -n1 | sed -E 's/^"[^"]*"://; s/"//g'; }
key=$(field api_key)
grid=$(field grid_id)

"$bin" serve 2>/tmp/tiamat-bench-pipeline.log &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
done

say "$commands commands, one at a time, through meter-sim (zero simulated latency)"
out=$("${CARGO_TARGET_DIR:-target}/release/loadgen" pipeline --url "http://127.0.0.1:$port" --key "$key" \
    --grid "$grid" --secret "$TIAMAT_CHIRPSTACK_WEBHOOK_SECRET" --sim-listen "$sim" --commands "$commands")
echo
echo "End-to-end command latency (POST -> SUCCESSFUL, through meter-sim, $(nproc) cores)"
echo "  $out"
