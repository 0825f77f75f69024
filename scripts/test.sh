#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what is
# missing, starts a throwaway PostgreSQL on a port of its own, runs every
# test of the workspace against it (and SQLite), then stops it.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p witness-api  # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh

need_build_tools
need_postgres

PG_DIR=$(mktemp -d /tmp/witness-pg.XXXXXX)
# PostgreSQL refuses to run as root: run it as the `postgres` user the
# package creates.
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PG_DIR"

stop_pg() {
    run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
trap stop_pg EXIT

run_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U witness -A trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log"; exit 1; }
started=
for attempt in 1 2 3 4 5 6 7 8; do
    PG_PORT=$(( 20000 + (RANDOM % 20000) ))
    if run_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" start >/dev/null; then
        started=1
        break
    fi
done
[ -n "$started" ] || { echo "PostgreSQL did not start:"; cat "$PG_DIR/server.log"; exit 1; }
export WITNESS_TEST_PG_URL="postgres://witness@127.0.0.1:$PG_PORT/postgres"
echo "==> PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (data in $PG_DIR)"

cargo test --workspace --all-targets "$@"
# Doc examples are tests too (cargo test --all-targets skips them).
cargo test --workspace --doc "$@"
