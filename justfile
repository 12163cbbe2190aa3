# tiamat: everyday tasks. `just run` starts the API with a demo organization, `just test` runs
# every test. Both start a local PostgreSQL when none is configured (see scripts/db.sh).
# Variables from a .env file, if present, apply to every recipe (see .env.example).

set shell := ["bash", "-euo", "pipefail", "-c"]
set dotenv-load := true
set positional-arguments := true

# The release binary (honours CARGO_TARGET_DIR).
bin := env("CARGO_TARGET_DIR", "target") / "release" / "tiamat"

# List the recipes.
default:
    @"{{ just_executable() }}" --justfile "{{ justfile() }}" --list

# Build and start the API with a demo organization, grid and API key (local PostgreSQL if needed).
run: _dev-jwt-secret
    #!/usr/bin/env bash
    set -euo pipefail
    DB=$(bash scripts/db.sh url)
    bash scripts/deps.sh
    cargo build --release -p tiamat
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
    echo "  Stop with Ctrl-C. PostgreSQL keeps running; stop it with: just db-stop"
    echo
    exec "{{ bin }}" serve

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
