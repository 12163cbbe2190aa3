#!/usr/bin/env bash
# scripts/db.sh: a PostgreSQL server for development and tests, with no setup.
#
#   scripts/db.sh url       make sure a server is reachable; print ONE line on stdout: the URL
#                           of database `tiamat` on a server where the user may CREATE DATABASE
#   scripts/db.sh status    show the project-local cluster (exit 0 running, 3 stopped)
#   scripts/db.sh stop      stop the project-local cluster
#   scripts/db.sh psql ...  open psql on the URL that `url` prints
#   scripts/db.sh destroy   stop the project-local cluster and delete its data
#
# `url` tries, in order:
#   a) $TIAMAT_DATABASE_URL (else $DATABASE_URL), used as given, if psql can connect to it;
#   b) a server on 127.0.0.1:5432 that lets user `postgres` in without a password;
#   c) a project-local cluster: data in <project>/.data/pg (git-ignored), port 54329
#      ($TIAMAT_PG_PORT), 127.0.0.1 only, trust auth, superuser `postgres`, tuned for tests
#      (fsync off). It is created and started when needed; its log is <project>/.data/pg.log.
# Progress goes to stderr, so `DB=$(scripts/db.sh url)` is safe.
#
# PostgreSQL refuses to run as root: as root, the cluster runs as OS user `postgres` (created
# if missing). When that user cannot reach <project>/.data, the cluster lives in
# /var/tmp/tiamat-pg-<hash of the project path>/pg instead. When no PostgreSQL is installed,
# root gets it from apt-get; anyone else is told what to install.
# shellcheck disable=SC2016 # single-quoted scripts for sh -c are meant literally
set -euo pipefail

PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DATA_ROOT="$PROJECT_DIR/.data"
PORT="${TIAMAT_PG_PORT:-54329}"
DB_NAME=tiamat
SUPERUSER=postgres  # database role
PG_OS_USER=postgres # OS user that runs the server when we are root
PG_MIN_MAJOR=15
LOCK_TIMEOUT=300

log() { printf 'db.sh: %s\n' "$*" >&2; }
die() {
    printf 'db.sh: error: %s\n' "$*" >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

case "$PORT" in
'' | *[!0-9]*) die "TIAMAT_PG_PORT must be a port number, not '$PORT'" ;;
esac

path_hash() {
    if command -v sha256sum >/dev/null 2>&1; then
        printf '%s' "$PROJECT_DIR" | sha256sum | cut -c1-12
    else
        printf '%s' "$PROJECT_DIR" | cksum | cut -d' ' -f1
    fi
}
HASH=$(path_hash)
FALLBACK_ROOT="/var/tmp/tiamat-pg-$HASH"
PGDATA_PROJECT="$DATA_ROOT/pg"
PGDATA_FALLBACK="$FALLBACK_ROOT/pg"
LOCAL_URL="postgres://$SUPERUSER@127.0.0.1:$PORT/$DB_NAME"

# ---------------------------------------------------------------------------------------------
# Binaries
# ---------------------------------------------------------------------------------------------
BINDIR=""          # directory with initdb, pg_ctl, postgres (empty: none found)
PSQL=""
PG_ISREADY=""

server_bin_ok() { [ -n "$1" ] && [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] && [ -x "$1/postgres" ]; }

# Major version of the server binaries in directory $1 ("15" for 15.13, "17" for 17devel).
pg_major() {
    "$1/postgres" --version 2>/dev/null | awk '{print $3}' | sed 's/[^0-9].*//'
}

find_server_bindir() {
    local d tool p
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if server_bin_ok "$d"; then
            echo "$d"
            return 0
        fi
    fi
    # Debian/Ubuntu, RHEL/Fedora (PGDG), Homebrew: highest version first.
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin /usr/pgsql-*/bin \
        /opt/homebrew/opt/postgresql@*/bin /usr/local/opt/postgresql@*/bin | sort -rV); do
        if server_bin_ok "$d"; then
            echo "$d"
            return 0
        fi
    done
    for tool in initdb pg_ctl postgres; do
        p=$(command -v "$tool" 2>/dev/null) || continue
        d=$(dirname "$(readlink -f "$p" 2>/dev/null || echo "$p")")
        if server_bin_ok "$d"; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

# The server binaries for major version $1, if installed.
bindir_for_major() {
    local d
    for d in "$BINDIR" /usr/lib/postgresql/"$1"/bin /usr/pgsql-"$1"/bin \
        /opt/homebrew/opt/postgresql@"$1"/bin /usr/local/opt/postgresql@"$1"/bin; do
        if server_bin_ok "$d" && [ "$(pg_major "$d")" = "$1" ]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

find_tools() {
    BINDIR=$(find_server_bindir || true)
    PSQL="" PG_ISREADY=""
    if [ -n "$BINDIR" ] && [ -x "$BINDIR/psql" ]; then PSQL="$BINDIR/psql"; fi
    if [ -n "$BINDIR" ] && [ -x "$BINDIR/pg_isready" ]; then PG_ISREADY="$BINDIR/pg_isready"; fi
    [ -n "$PSQL" ] || PSQL=$(command -v psql 2>/dev/null || true)
    [ -n "$PG_ISREADY" ] || PG_ISREADY=$(command -v pg_isready 2>/dev/null || true)
}

install_postgres() {
    if is_root && command -v apt-get >/dev/null 2>&1; then
        log "PostgreSQL is not installed; installing it with apt-get (takes a minute or two)..."
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends postgresql >&2 ||
            die "apt-get install postgresql failed"
        find_tools
        return 0
    fi
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres; version $PG_MIN_MAJOR or newer) were not found.
  Install PostgreSQL, for example:
    Debian/Ubuntu:  sudo apt-get install postgresql
    Fedora/RHEL:    sudo dnf install postgresql-server
    macOS:          brew install postgresql@17
  or set TIAMAT_DATABASE_URL to a server where your user may CREATE DATABASE."
}

ensure_client_tools() {
    [ -n "$PSQL" ] || install_postgres
    [ -n "$PSQL" ] || die "psql not found even after installing PostgreSQL"
}

ensure_server_tools() {
    [ -n "$BINDIR" ] || install_postgres
    [ -n "$BINDIR" ] || die "PostgreSQL server binaries not found even after installing PostgreSQL"
    [ -n "$PSQL" ] || die "psql not found next to $BINDIR"
    local major
    major=$(pg_major "$BINDIR")
    if [ -n "$major" ] && [ "$major" -lt "$PG_MIN_MAJOR" ]; then
        log "warning: PostgreSQL $major found in $BINDIR; tiamat needs $PG_MIN_MAJOR or newer"
    fi
}

# ---------------------------------------------------------------------------------------------
# Running things as the PostgreSQL OS user
# ---------------------------------------------------------------------------------------------
# File descriptors 3 (our real stdout) and 9 (the lock) are closed for everything run this
# way, so a server started from here never holds the caller's pipe or our lock.
as_pg() {
    if ! is_root; then
        "$@" 3>&- 9>&-
    elif command -v runuser >/dev/null 2>&1; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@" 3>&- 9>&-)
    else
        (cd / && su -s /bin/sh -c 'exec "$0" "$@"' "$PG_OS_USER" "$@" 3>&- 9>&-)
    fi
}

ensure_pg_os_user() {
    is_root || return 0
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
    log "creating OS user '$PG_OS_USER' to run PostgreSQL (it refuses to run as root)"
    if command -v useradd >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
            --shell /bin/sh "$PG_OS_USER"
    else
        adduser --system --group --home /var/lib/postgresql --no-create-home \
            --shell /bin/sh "$PG_OS_USER"
    fi
}

# ---------------------------------------------------------------------------------------------
# SQL helpers
# ---------------------------------------------------------------------------------------------
# psql for our own servers (b, c): no password, no settings from the environment.
local_psql() {
    env -u PGPASSWORD -u PGSSLMODE -u PGOPTIONS -u PGSERVICE -u PGSERVICEFILE -u PGREQUIRESSL \
        -u PGTARGETSESSIONATTRS -u PGHOSTADDR PGPASSFILE=/dev/null/none PGCONNECT_TIMEOUT=5 \
        "$PSQL" -X -w -q -A -t -v ON_ERROR_STOP=1 "$@" 3>&- 9>&-
}
# psql for a URL given by the user: the environment is theirs.
user_psql() {
    PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}" "$PSQL" -X -w -q -A -t -v ON_ERROR_STOP=1 "$@" 3>&- 9>&-
}

CAN_CREATEDB_SQL="select rolsuper or rolcreatedb from pg_roles where rolname = current_user"

# URL with any password hidden, for messages.
redact() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }

# Make sure database $DB_NAME exists on the server reached by admin URL $1.
ensure_database() {
    local admin_url=$1 exists
    exists=$(local_psql -d "$admin_url" -c "select 1 from pg_database where datname = '$DB_NAME'")
    [ "$exists" = 1 ] && return 0
    log "creating database $DB_NAME"
    if ! local_psql -d "$admin_url" -c "create database \"$DB_NAME\"" >&2; then
        exists=$(local_psql -d "$admin_url" -c "select 1 from pg_database where datname = '$DB_NAME'")
        [ "$exists" = 1 ] || die "could not create database $DB_NAME"
    fi
}

# ---------------------------------------------------------------------------------------------
# Locking: one db.sh at a time per project
# ---------------------------------------------------------------------------------------------
acquire_lock() {
    if ! command -v flock >/dev/null 2>&1; then
        log "warning: flock not found; not guarding against concurrent runs"
        return 0
    fi
    local lock="$DATA_ROOT/db.lock"
    [ -d "$DATA_ROOT" ] || mkdir -m 0755 "$DATA_ROOT" 2>/dev/null || true
    if [ -w "$lock" ] || { [ ! -e "$lock" ] && [ -w "$DATA_ROOT" ]; }; then
        exec 9>>"$lock"
    elif [ -r "$lock" ]; then
        exec 9<"$lock" # flock works on a read-only descriptor too
    else
        lock="${TMPDIR:-/tmp}/tiamat-db-$HASH.lock"
        if ! { exec 9>>"$lock"; } 2>/dev/null; then
            log "warning: cannot open a lock file ($lock); not guarding against concurrent runs"
            return 0
        fi
        chmod 0666 "$lock" 2>/dev/null || true
    fi
    if ! flock -n 9; then
        log "waiting for another scripts/db.sh to finish (lock $lock)..."
        flock -w "$LOCK_TIMEOUT" 9 || die "timed out after ${LOCK_TIMEOUT}s waiting for $lock"
    fi
}

# ---------------------------------------------------------------------------------------------
# The project-local cluster
# ---------------------------------------------------------------------------------------------
PGDATA=""
PGLOG=""

# The data directory of the project-local cluster, without creating anything: the project one
# unless only the /var/tmp fallback exists.
resolve_pgdata() {
    if [ ! -e "$PGDATA_PROJECT" ] && [ -e "$PGDATA_FALLBACK" ]; then
        PGDATA="$PGDATA_FALLBACK"
    else
        PGDATA="$PGDATA_PROJECT"
    fi
    PGLOG="$(dirname "$PGDATA")/pg.log"
}

# Is process $1 alive? A zombie (dead, not yet reaped: seen where pid 1 reaps slowly) is not.
proc_alive() {
    local state
    if [ -d /proc/self ]; then
        state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
        case "$state" in '' | Z | X | x) return 1 ;; esac
        return 0
    fi
    kill -0 "$1" 2>/dev/null
}

# Is $1 the pid of the postmaster of $PGDATA (and not a stale pid, reused by another process)?
is_our_postmaster() {
    local pid=$1 cwd comm
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ "$pid" -gt 1 ] || return 1
    proc_alive "$pid" || return 1
    if [ -d /proc/self ]; then
        if cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null); then
            [ "$cwd" = "$(cd "$PGDATA" 2>/dev/null && pwd -P)" ]
            return
        fi
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        [ "$comm" = postgres ] || [ "$comm" = postmaster ]
        return
    fi
    kill -0 "$pid" 2>/dev/null
}

postmaster_pid() { head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true; }
postmaster_port() { sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null || true; }
cluster_running() { is_our_postmaster "$(postmaster_pid)"; }

# pg_isready on our port: 0 accepting, 1 rejecting (starting or stopping), 2 no answer.
port_state() {
    local rc=0
    if [ -n "$PG_ISREADY" ]; then
        "$PG_ISREADY" -q -h 127.0.0.1 -p "$PORT" -U "$SUPERUSER" -d postgres -t 3 3>&- 9>&- || rc=$?
    else
        local_psql -d "postgres://$SUPERUSER@127.0.0.1:$PORT/postgres" -c 'select 1' \
            >/dev/null 2>&1 || rc=2
    fi
    return "$rc"
}

# Leftover server processes (backends etc. of a postmaster that was killed) of $PGDATA.
orphan_pids() {
    [ -d /proc/self ] || return 0
    local real p
    real=$(cd "$PGDATA" 2>/dev/null && pwd -P) || return 0
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = postgres ] || continue
        [ "$(readlink "$p/cwd" 2>/dev/null)" = "$real" ] || continue
        proc_alive "${p#/proc/}" || continue
        echo "${p#/proc/}"
    done
}

# After a crash: remove a postmaster.pid whose process is gone, and wait for (or end) the
# dead postmaster's children, which still hold its shared memory.
clear_stale_state() {
    local pid waited=0
    local -a pids
    pid=$(postmaster_pid)
    if [ -n "$pid" ] && ! is_our_postmaster "$pid"; then
        log "removing stale postmaster.pid (process $pid is gone or is not this cluster's server)"
        rm -f "$PGDATA/postmaster.pid"
    fi
    if ! cluster_running; then rm -f "$PGDATA"/.s.PGSQL.*; fi
    while mapfile -t pids < <(orphan_pids) && [ "${#pids[@]}" -gt 0 ]; do
        if [ "$waited" -eq 0 ]; then log "waiting for leftover server processes to exit: ${pids[*]}"; fi
        if [ "$waited" -ge 20 ]; then
            log "ending leftover server processes: ${pids[*]}"
            kill -QUIT "${pids[@]}" 2>/dev/null || true
            sleep 2
            mapfile -t pids < <(orphan_pids)
            if [ "${#pids[@]}" -gt 0 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
            sleep 1
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# Choose, create and check the data directory for `url`. Sets PGDATA and PGLOG.
prepare_pgdata() {
    resolve_pgdata
    if try_datadir "$PGDATA"; then return 0; fi
    if [ "$PGDATA" = "$PGDATA_PROJECT" ]; then
        log "PostgreSQL (OS user $(if is_root; then echo "$PG_OS_USER"; else id -un; fi)) cannot use $PGDATA_PROJECT; using $PGDATA_FALLBACK instead"
        if try_datadir "$PGDATA_FALLBACK"; then return 0; fi
    fi
    die "no usable data directory for PostgreSQL (tried $PGDATA_PROJECT and $PGDATA_FALLBACK)"
}

# Check that the server's OS user can use data directory $1 (existing or not) and its log.
try_datadir() {
    local dir=$1 parent logf
    parent=$(dirname "$dir")
    logf="$parent/pg.log"
    if [ ! -d "$parent" ]; then mkdir -m 0755 "$parent" 2>/dev/null || return 1; fi
    if [ ! -e "$logf" ]; then : >>"$logf" 2>/dev/null || return 1; fi
    if is_root; then chown "$PG_OS_USER:" "$logf" 2>/dev/null || return 1; fi
    if ! try_datadir_at "$dir" "$parent" "$logf"; then
        # Leave no empty log behind where we could not put the cluster.
        if [ ! -e "$dir" ] && [ ! -s "$logf" ]; then rm -f "$logf"; fi
        return 1
    fi
}

try_datadir_at() {
    local dir=$1 parent=$2 logf=$3 probe mode

    if [ -e "$dir" ]; then
        [ -d "$dir" ] || return 1
        if is_root; then
            if [ -n "$(find "$dir" ! -user "$PG_OS_USER" -print -quit 2>/dev/null)" ]; then
                log "fixing ownership of $dir (giving it to OS user '$PG_OS_USER')"
                chown -R "$PG_OS_USER:" "$dir" || return 1
            fi
        elif [ ! -O "$dir" ]; then
            die "$dir belongs to $(stat -c %U "$dir" 2>/dev/null || echo 'another user'), not to you.
  It was probably created by a run as root. Either run this as root, or take it over:
    sudo chown -R $(id -un) '$dir'"
        fi
        chmod 0700 "$dir" 2>/dev/null || return 1
        probe=$dir
    else
        # Probe with a scratch directory next to where the data directory will be.
        probe="$parent/.pg-probe.$$"
        mkdir -m 0700 "$probe" 2>/dev/null || return 1
        if is_root; then chown "$PG_OS_USER:" "$probe" 2>/dev/null || { rmdir "$probe"; return 1; }; fi
    fi
    # PostgreSQL insists on 0700/0750 and on owning its directory: some file systems can't.
    mode=$(stat -c %a "$probe" 2>/dev/null || echo 700)
    local ok=1
    case "$mode" in 700 | 750) ;; *) ok=0 ;; esac
    if [ "$ok" = 1 ] && ! as_pg sh -c 'cd "$1" && test -w . && test -w "$2"' _ "$probe" "$logf" 2>/dev/null; then
        ok=0
    fi
    [ "$probe" = "$dir" ] || rmdir "$probe" 2>/dev/null || true
    [ "$ok" = 1 ] || return 1
    PGDATA=$(cd "$parent" && pwd -P)/$(basename "$dir")
    PGLOG=$logf
    return 0
}

# Create the cluster if $PGDATA does not exist yet. initdb writes to a scratch directory that
# is renamed into place only when complete, so an interrupted initdb leaves nothing half-done.
init_cluster() {
    if [ -e "$PGDATA" ]; then
        [ -f "$PGDATA/PG_VERSION" ] && return 0
        if [ -z "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
            rmdir "$PGDATA"
        else
            die "$PGDATA exists but is not a PostgreSQL data directory; move it away or run: scripts/db.sh destroy"
        fi
    fi
    local tmp="$PGDATA.initdb" out
    rm -rf "$tmp"
    mkdir -m 0700 "$tmp"
    if is_root; then chown "$PG_OS_USER:" "$tmp"; fi
    log "creating a PostgreSQL $(pg_major "$BINDIR") cluster in $PGDATA"
    if ! out=$(as_pg "$BINDIR/initdb" -D "$tmp" -U "$SUPERUSER" --auth=trust --encoding=UTF8 \
        --locale=C 2>&1); then
        printf '%s\n' "$out" >&2
        rm -rf "$tmp"
        die "initdb failed"
    fi
    add_include "$tmp"
    mv "$tmp" "$PGDATA"
}

# Make postgresql.conf in data directory $1 read our tiamat.conf.
add_include() {
    grep -qs "^include_if_exists = 'tiamat.conf'" "$1/postgresql.conf" && return 0
    as_pg sh -c 'printf "%s\n" "" "$2" "$3" >>"$1/postgresql.conf"' _ "$1" \
        "# Settings of the tiamat dev/test cluster, rewritten by scripts/db.sh at each start:" \
        "include_if_exists = 'tiamat.conf'"
}

# Write tiamat.conf (port and tuning) into $PGDATA.
write_config() {
    local sockdir q
    # A Unix socket path is limited to 107 bytes; with a long project path use TCP only.
    if [ $((${#PGDATA} + 12 + ${#PORT})) -lt 107 ]; then
        sockdir=$PGDATA
    else
        sockdir=""
    fi
    q=${sockdir//\'/\'\'}
    add_include "$PGDATA"
    as_pg sh -c 'cat >"$1/tiamat.conf"' _ "$PGDATA" <<EOF
# Written by scripts/db.sh at every start: change that script, not this file.
# A throwaway development and test cluster: fast, not crash-safe.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$q'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 400
shared_buffers = 256MB
EOF
}

start_cluster() {
    local attempt
    write_config
    # Keep the log from growing without end.
    if [ -f "$PGLOG" ] && [ "$(wc -c <"$PGLOG")" -gt 52428800 ]; then
        mv -f "$PGLOG" "$PGLOG.1"
        : >"$PGLOG"
        if is_root; then chown "$PG_OS_USER:" "$PGLOG"; fi
    fi
    for attempt in 1 2 3; do
        clear_stale_state
        log "starting PostgreSQL $(pg_major "$BINDIR") on 127.0.0.1:$PORT (data $PGDATA, log $PGLOG)"
        if as_pg "$BINDIR/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 120 -s start >&2; then
            return 0
        fi
        log "start attempt $attempt failed"
        if cluster_running; then
            # Up but slow (e.g. crash recovery): wait_ready below deals with it.
            return 0
        fi
        sleep 2
    done
    log "last lines of $PGLOG:"
    tail -n 25 "$PGLOG" >&2 || true
    die "PostgreSQL did not start (is port $PORT taken? set TIAMAT_PG_PORT to use another)"
}

stop_cluster() {
    local bindir major
    major=$(cat "$PGDATA/PG_VERSION" 2>/dev/null || true)
    bindir=$( { [ -n "$major" ] && bindir_for_major "$major"; } || echo "$BINDIR")
    server_bin_ok "$bindir" || die "no pg_ctl found to stop the cluster in $PGDATA"
    log "stopping PostgreSQL (data $PGDATA)"
    as_pg "$bindir/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop >&2 && return 0
    cluster_running || return 0
    log "fast shutdown failed; trying immediate shutdown"
    as_pg "$bindir/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 -s stop >&2 && return 0
    cluster_running || return 0
    die "could not stop the PostgreSQL server (pid $(postmaster_pid)) of $PGDATA"
}

# Wait up to $1 seconds for the server on our port to accept connections.
wait_ready() {
    local i=0 rc
    while :; do
        rc=0
        port_state || rc=$?
        [ "$rc" -eq 0 ] && return 0
        [ "$i" -ge "$1" ] && return 1
        [ "$i" -eq 0 ] && log "waiting for PostgreSQL on port $PORT to accept connections..."
        sleep 1
        i=$((i + 1))
    done
}

# A server answers on our port: make sure it is one we may use (trust auth as postgres).
local_port_usable() {
    local_psql -d "postgres://$SUPERUSER@127.0.0.1:$PORT/postgres" -c 'select 1' >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
cmd_url() {
    # Only the URL goes to the real stdout (fd 3); everything else goes to stderr.
    exec 3>&1 1>&2
    find_tools
    acquire_lock
    local out rc

    # a) A URL from the environment, used as given.
    local env_url="${TIAMAT_DATABASE_URL:-${DATABASE_URL:-}}"
    local env_name=TIAMAT_DATABASE_URL
    [ -n "${TIAMAT_DATABASE_URL:-}" ] || env_name=DATABASE_URL
    if [ -n "$env_url" ]; then
        if [ -z "$PSQL" ]; then
            log "warning: psql not found, cannot check $env_name; using it as given"
            echo "$env_url" >&3
            return 0
        fi
        rc=0
        out=$(user_psql -d "$env_url" -c "$CAN_CREATEDB_SQL" 2>&1) || rc=$?
        if [ "$rc" -eq 0 ]; then
            [ "$out" = t ] || log "warning: the user of $env_name may not CREATE DATABASE; tests need that"
            log "using $env_name ($(redact "$env_url"))"
            echo "$env_url" >&3
            return 0
        fi
        log "warning: cannot use $env_name ($(redact "$env_url")): $(printf '%s' "$out" | head -n 1)"
        log "trying a local server instead"
    fi

    ensure_client_tools

    # b) A server on the standard port that lets user postgres in without a password.
    local std_admin="postgres://$SUPERUSER@127.0.0.1:5432/postgres"
    if [ "$PORT" != 5432 ] &&
        out=$(local_psql -d "$std_admin" -c "$CAN_CREATEDB_SQL" 2>/dev/null) && [ "$out" = t ]; then
        ensure_database "$std_admin"
        log "using the PostgreSQL server on 127.0.0.1:5432"
        echo "postgres://$SUPERUSER@127.0.0.1:5432/$DB_NAME" >&3
        return 0
    fi

    # c) The project-local cluster. Fast path: it is already up.
    local admin="postgres://$SUPERUSER@127.0.0.1:$PORT/postgres"
    rc=0
    port_state || rc=$?
    if [ "$rc" -eq 0 ]; then
        local_port_usable || die "a PostgreSQL server on 127.0.0.1:$PORT does not let user $SUPERUSER in without a password.
  It is not this project's cluster: stop it, or set TIAMAT_PG_PORT to another port."
        ensure_database "$admin"
        echo "$LOCAL_URL" >&3
        return 0
    fi

    ensure_server_tools
    ensure_pg_os_user
    prepare_pgdata
    if [ -f "$PGDATA/PG_VERSION" ]; then
        local major
        major=$(cat "$PGDATA/PG_VERSION")
        BINDIR=$(bindir_for_major "$major") ||
            die "$PGDATA was made by PostgreSQL $major, but only PostgreSQL $(pg_major "$(find_server_bindir)") is installed.
  Install PostgreSQL $major, or delete the local dev data and start over: scripts/db.sh destroy"
    fi

    if cluster_running; then
        # Up but not answering here: on another port (TIAMAT_PG_PORT changed), or busy
        # starting, recovering or stopping.
        if [ "$(postmaster_port)" != "$PORT" ]; then
            log "the cluster listens on port $(postmaster_port), not $PORT; restarting it"
            stop_cluster
            start_cluster
        elif ! wait_ready 60; then
            log "the cluster runs but does not answer on port $PORT; restarting it"
            stop_cluster
            start_cluster
        fi
    else
        init_cluster
        start_cluster
    fi
    if ! wait_ready 120; then
        tail -n 25 "$PGLOG" >&2 || true
        die "PostgreSQL started but does not accept connections on 127.0.0.1:$PORT (log: $PGLOG)"
    fi
    local_port_usable || die "cannot connect to $admin (log: $PGLOG)"
    ensure_database "$admin"
    echo "$LOCAL_URL" >&3
}

cmd_stop() {
    find_tools
    acquire_lock
    local d stopped=0
    for d in "$PGDATA_PROJECT" "$PGDATA_FALLBACK"; do
        [ -d "$d" ] || continue
        PGDATA=$d
        if ! is_root && [ ! -r "$d/PG_VERSION" ]; then
            if port_state; then
                die "$d belongs to another user; stop it as root: sudo scripts/db.sh stop"
            fi
            continue
        fi
        if cluster_running; then
            stop_cluster
            stopped=1
        fi
    done
    if [ "$stopped" = 1 ]; then
        log "stopped"
    else
        log "the project-local cluster is not running"
    fi
}

cmd_status() {
    find_tools
    resolve_pgdata
    local rc=0 what
    port_state || rc=$?
    if [ -f "$PGDATA/PG_VERSION" ]; then
        what="PostgreSQL $(cat "$PGDATA/PG_VERSION")"
    elif [ -e "$PGDATA" ]; then
        what="not readable by $(id -un)"
    else
        what="not created yet"
    fi
    echo "project:   $PROJECT_DIR"
    echo "data:      $PGDATA ($what)"
    echo "log:       $PGLOG"
    echo "binaries:  ${BINDIR:-none found}"
    if [ -n "${TIAMAT_DATABASE_URL:-${DATABASE_URL:-}}" ]; then
        echo "env URL:   $(redact "${TIAMAT_DATABASE_URL:-${DATABASE_URL:-}}") ('url' tries it first)"
    fi
    if cluster_running; then
        if [ "$rc" -eq 0 ]; then
            echo "server:    running (pid $(postmaster_pid)), accepting connections on 127.0.0.1:$PORT"
        else
            echo "server:    running (pid $(postmaster_pid), port $(postmaster_port)), not answering on port $PORT"
        fi
        echo "url:       $LOCAL_URL"
        return 0
    elif [ "$rc" -eq 0 ]; then
        if [ -r "$PGDATA/PG_VERSION" ]; then
            echo "server:    a server answers on 127.0.0.1:$PORT (not started from $PGDATA)"
        else
            echo "server:    a server answers on 127.0.0.1:$PORT"
        fi
        echo "url:       $LOCAL_URL"
        return 0
    fi
    echo "server:    stopped (start it with: scripts/db.sh url)"
    return 3
}

cmd_destroy() {
    cmd_stop
    local d
    for d in "$PGDATA_PROJECT" "$PGDATA_FALLBACK"; do
        [ -e "$d" ] || continue
        log "deleting $d"
        rm -rf "$d" "$d.initdb" || die "could not delete $d (run as root?)"
        rm -f "$(dirname "$d")/pg.log" "$(dirname "$d")/pg.log.1"
    done
}

cmd_psql() {
    local url
    url=$(bash "${BASH_SOURCE[0]}" url)
    find_tools
    ensure_client_tools
    exec "$PSQL" "$url" "$@"
}

usage() {
    sed -n '2,/^# shellcheck/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
}

case "${1:-}" in
url) cmd_url ;;
stop) cmd_stop ;;
status) cmd_status ;;
destroy) cmd_destroy ;;
psql)
    shift
    cmd_psql "$@"
    ;;
-h | --help | help) usage ;;
*)
    usage
    exit 2
    ;;
esac
