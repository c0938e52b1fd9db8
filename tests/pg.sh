#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: `tests/pg.sh start` prints a DATABASE_URL,
# `tests/pg.sh stop` stops it. Runs initdb/pg_ctl as the `postgres` user when we are root,
# since PostgreSQL refuses to run as root.
# Environment: TESTPG_DIR (default /tmp/warden-test-pg), TESTPG_PORT (default 54329); not
# WARDEN_*, which wardend (and its configuration tests) read as configuration.
set -euo pipefail
dir=${TESTPG_DIR:-/tmp/warden-test-pg}
port=${TESTPG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found: run tests/deps.sh" >&2; exit 1; }
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "${1:-start}" in
start)
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
        as_pg "$bin/initdb" -D "$dir" -A trust -U postgres >/dev/null
    fi
    if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        # Durability settings stay at their safe defaults: the tests prove ACK-after-commit.
        as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
    fi
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null 2>&1 || true
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 64
    ;;
esac
