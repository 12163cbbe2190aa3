# tiamat: everyday tasks. `just run` starts the API with a demo organization, `just test` runs
# every test. Both start a local PostgreSQL when none is configured (see scripts/db.sh).
# Variables from a .env file, if present, apply to every recipe (see .env.example).

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := true
set positional-arguments := true

# The release binary (honours CARGO_TARGET_DIR).
bin := env("CARGO_TARGET_DIR", "target") / "release" / "tiamat"
sim_bin := env("CARGO_TARGET_DIR", "target") / "release" / "meter-sim"

# List the recipes.
default:
    @"{{ just_executable() }}" --justfile "{{ justfile() }}" --list

# Build and start the API with a demo organization, grid and API key (local PostgreSQL if needed).
# Without TIAMAT_CHIRPSTACK_API_URL, meter-sim stands in for ChirpStack and the meters.
run: _dev-jwt-secret _dev-chirpstack-secret
    #!/usr/bin/env bash
    set -euo pipefail
    DB=$(bash scripts/db.sh url)
    bash scripts/deps.sh
    cargo build --release -p tiamat -p meter-sim
    export TIAMAT_DATABASE_URL="$DB"
    dev_secret=""
    if [ -z "${TIAMAT_JWT_SECRET:-}" ] && [ -z "${TIAMAT_JWKS_URL:-}" ]; then
        TIAMAT_JWT_SECRET=$(cat .data/dev-jwt-secret)
        export TIAMAT_JWT_SECRET
        dev_secret=yes
    fi
    "{{ bin }}" migrate

    # The demo data. The API key is shown once, so the answer is kept (per database) in
    # .data/ and shown again if bootstrap cannot run twice on the same database.
    saved=".data/bootstrap.$(printf '%s' "$DB" | cksum | cut -d' ' -f1).json"
    if boot=$("{{ bin }}" bootstrap --org-name "Demo Solar Co" --email admin@demo.example --demo-grid); then
        (umask 077 && printf '%s\n' "$boot" >"$saved")
    elif [ -s "$saved" ]; then
        echo "just run: bootstrap failed (see above); showing the demo data it created before" >&2
        boot=$(cat "$saved")
    else
        echo "just run: bootstrap failed" >&2
        exit 1
    fi
    field() { # value of "$1" in the JSON object in $boot: a string or a number
        printf '%s\n' "$boot" | grep -oE "\"$1\"[[:space:]]*:[[:space:]]*(\"[^\"]*\"|-?[0-9]+)" |
            head -n 1 | sed -E 's/^"[^"]*"[[:space:]]*:[[:space:]]*//; s/^"(.*)"$/\1/'
    }
    api_key=$(field api_key)
    org_id=$(field organization_id)
    grid_id=$(field grid_id)

    listen="${TIAMAT_LISTEN:-127.0.0.1:8080}"
    host="${listen%:*}"
    port="${listen##*:}"
    case "$host" in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
    base="http://$host:$port"

    # No ChirpStack configured: meter-sim serves its gRPC API and posts its events to this tiamat,
    # and stops when tiamat does. Secrets go to it through the environment, not the command line.
    sim_pid=""
    if [ -z "${TIAMAT_CHIRPSTACK_API_URL:-}" ]; then
        if [ -z "${TIAMAT_CHIRPSTACK_WEBHOOK_SECRET:-}" ]; then
            TIAMAT_CHIRPSTACK_WEBHOOK_SECRET=$(cat .data/dev-chirpstack-webhook-secret)
            export TIAMAT_CHIRPSTACK_WEBHOOK_SECRET
        fi
        sim_listen="${METER_SIM_GRPC_LISTEN:-127.0.0.1:8091}"
        sim_token=$(cat .data/dev-chirpstack-api-token)
        export TIAMAT_CHIRPSTACK_API_URL="http://$sim_listen"
        export TIAMAT_CHIRPSTACK_API_TOKEN="$sim_token"
        export TIAMAT_CHIRPSTACK_APPLICATION_ID="00000000-0000-4000-8000-0000000000a1"
        export TIAMAT_CHIRPSTACK_DEVICE_PROFILE_ID="00000000-0000-4000-8000-0000000000b1"
        export TIAMAT_CHIRPSTACK_APP_KEY="000102030405060708090a0b0c0d0e0f"
        METER_SIM_GRPC_LISTEN="$sim_listen" \
            METER_SIM_WEBHOOK_URL="$base/api/v1/integrations/chirpstack/events" \
            METER_SIM_WEBHOOK_SECRET="$TIAMAT_CHIRPSTACK_WEBHOOK_SECRET" \
            METER_SIM_API_TOKEN="$sim_token" \
            "{{ sim_bin }}" >.data/meter-sim.log 2>&1 &
        sim_pid=$!
        trap 'kill "$sim_pid" 2>/dev/null || true' EXIT
        sleep 0.5
        if ! kill -0 "$sim_pid" 2>/dev/null; then
            echo "just run: meter-sim did not start (is $sim_listen in use? set METER_SIM_GRPC_LISTEN):" >&2
            tail -n 5 .data/meter-sim.log >&2
            exit 1
        fi
    fi
    echo
    echo "  tiamat is starting"
    echo "  ------------------"
    echo "  API:       $base/api/v1"
    echo "  Docs:      $base/docs"
    echo "  API key:   ${api_key:-<not found in: $boot>}"
    echo "             (SUPERADMIN of the platform organization \"Demo Solar Co\", organization ${org_id:-?}, demo grid ${grid_id:-?}; login admin@demo.example)"
    echo "  Try:       curl -H \"X-API-Key: ${api_key:-<key>}\" $base/api/v1/me"
    echo "  Database:  $DB"
    if [ -n "$dev_secret" ]; then
        echo "  JWT:       dashboard tokens are HS256, signed with the dev secret in .data/dev-jwt-secret"
    fi
    if [ -n "$sim_pid" ]; then
        echo "  Meters:    simulated by meter-sim (ChirpStack gRPC on $sim_listen, log .data/meter-sim.log)"
    fi
    echo "  Stop with Ctrl-C. PostgreSQL keeps running; stop it with: just db-stop"
    echo
    if [ -z "$sim_pid" ]; then
        exec "{{ bin }}" serve
    fi
    # With meter-sim: once the API answers, put three simulated meters on the demo grid (once per
    # database) so commands can be tried at once; the server stays in the foreground.
    "{{ bin }}" serve &
    api_pid=$!
    trap 'kill "$api_pid" "$sim_pid" 2>/dev/null || true' EXIT
    have_curl=""
    if command -v curl >/dev/null 2>&1; then
        have_curl=yes
        for _ in $(seq 1 100); do
            curl -fsS "$base/health/ready" >/dev/null 2>&1 && break
            sleep 0.2
        done
    fi
    if [ -n "$have_curl" ] && [ -n "${api_key:-}" ] && [ -n "${grid_id:-}" ] &&
        meters=$(bash scripts/demo-meters.sh "$base" "$api_key" "$grid_id" 2>/dev/null); then
        first=${meters%% *}
        echo
        echo "  Demo meters on the demo grid (simulated): ids $meters"
        echo "  Try:       curl -H \"X-API-Key: $api_key\" -H 'content-type: application/json' \\"
        echo "               -d '{\"kind\":\"TURN_OFF\"}' $base/api/v1/meters/$first/commands"
        echo "             then GET $base/api/v1/interactions/<id>/delivery: SUCCESSFUL within a second"
        echo
    else
        echo "just run: could not add the demo meters (see above); the API is running" >&2
    fi
    wait "$api_pid"

# Run every test against a local PostgreSQL (extra arguments go to nextest or cargo test).
test *args:
    #!/usr/bin/env bash
    set -euo pipefail
    DB=$(bash scripts/db.sh url)
    bash scripts/deps.sh
    export TIAMAT_TEST_DATABASE_URL="$DB"
    if cargo nextest --version >/dev/null 2>&1; then
        cargo nextest run --workspace --no-fail-fast "$@"
    else
        echo "just test: cargo-nextest not found, using cargo test" >&2
        cargo test --workspace --no-fail-fast "$@"
    fi

# Run the benchmarks (scripts/bench.sh).
bench *args:
    bash scripts/deps.sh
    bash scripts/bench.sh "$@"

# Only the directive batch benchmark (10,000 meters; scripts/bench-batches.sh).
bench-batches:
    bash scripts/deps.sh
    bash scripts/bench-batches.sh

# Only the end-to-end command latency benchmark through meter-sim (scripts/bench-pipeline.sh).
bench-pipeline:
    bash scripts/deps.sh
    bash scripts/bench-pipeline.sh

# Only the ledger transfer benchmark (1,000 wallets, concurrency 32, vs pgbench; scripts/bench-ledger.sh).
bench-ledger:
    bash scripts/deps.sh
    bash scripts/bench-ledger.sh

# Format the code.
fmt:
    cargo fmt --all

# Check formatting and clippy lints (warnings are errors).
lint:
    bash scripts/deps.sh
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply the database migrations (local PostgreSQL if needed).
migrate: _dev-jwt-secret
    #!/usr/bin/env bash
    set -euo pipefail
    DB=$(bash scripts/db.sh url)
    bash scripts/deps.sh
    cargo build --release -p tiamat
    export TIAMAT_DATABASE_URL="$DB"
    if [ -z "${TIAMAT_JWT_SECRET:-}" ] && [ -z "${TIAMAT_JWKS_URL:-}" ]; then
        TIAMAT_JWT_SECRET=$(cat .data/dev-jwt-secret)
        export TIAMAT_JWT_SECRET
    fi
    "{{ bin }}" migrate

# Print a development access token for a login (the auth_user_id of a member, agent or customer).
token auth_user_id: _dev-jwt-secret
    #!/usr/bin/env bash
    set -euo pipefail
    DB=$(bash scripts/db.sh url)
    bash scripts/deps.sh
    cargo build --release -q -p tiamat
    export TIAMAT_DATABASE_URL="$DB"
    if [ -z "${TIAMAT_JWT_SECRET:-}" ] && [ -z "${TIAMAT_JWKS_URL:-}" ]; then
        TIAMAT_JWT_SECRET=$(cat .data/dev-jwt-secret)
        export TIAMAT_JWT_SECRET
    fi
    "{{ bin }}" token --auth-user-id "{{ auth_user_id }}"

# Print the database URL (starts the local PostgreSQL if needed).
db-url:
    @bash scripts/db.sh url

# Show the local PostgreSQL.
db-status:
    @bash scripts/db.sh status || true

# Stop the local PostgreSQL.
db-stop:
    bash scripts/db.sh stop

# Open psql on the database.
psql *args:
    bash scripts/db.sh psql "$@"

# Create the development ChirpStack webhook secret and meter-sim API token once, for `just run`
# without a ChirpStack.
[private]
_dev-chirpstack-secret:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -z "${TIAMAT_CHIRPSTACK_API_URL:-}" ] || exit 0
    mkdir -p .data
    umask 077
    for f in dev-chirpstack-webhook-secret dev-chirpstack-api-token; do
        [ -s ".data/$f" ] && continue
        od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >".data/$f.tmp"
        mv ".data/$f.tmp" ".data/$f"
    done

# Create .data/dev-jwt-secret once, when no JWT secret or JWKS URL is configured.
[private]
_dev-jwt-secret:
    #!/usr/bin/env bash
    set -euo pipefail
    [ -z "${TIAMAT_JWT_SECRET:-}" ] && [ -z "${TIAMAT_JWKS_URL:-}" ] || exit 0
    [ -s .data/dev-jwt-secret ] && exit 0
    mkdir -p .data
    umask 077
    od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >.data/dev-jwt-secret.tmp
    mv .data/dev-jwt-secret.tmp .data/dev-jwt-secret
    echo "just: generated a development JWT secret in .data/dev-jwt-secret" >&2
