#!/usr/bin/env bash
# PostgreSQL and Redis for the test suite (docs/servers.md). Sourced by ./test, after
# scripts/setup.sh (which makes .venv with psycopg and redis); ./demo does not need it.
#
#   source scripts/servers.sh
#   trap census_servers_down EXIT   # stops what census_servers_up started, whatever happens
#   census_servers_up               # exports CENSUS_TEST_POSTGRES and CENSUS_TEST_REDIS
#
# For each server, in order:
#   1. CENSUS_TEST_POSTGRES / CENSUS_TEST_REDIS already set: use that server; fail if it
#      does not answer.
#   2. The machine's own server on 127.0.0.1:5432 (as `postgres`, then `root`, without a
#      password) / 127.0.0.1:6379 (PING answered): use it. Redis database 5, not 0.
#   3. Otherwise a private server: Debian's postgresql / redis-server (apt-get installed when
#      missing), started on a free port under a temporary directory, stopped and removed by
#      census_servers_down.
# A server that cannot be had stops ./test with a message that names it and says why.
#
# Knobs (mostly for trying the private path on a machine that has servers):
#   CENSUS_TEST_SERVERS=private          skip step 2 and start private servers
#   CENSUS_PG_PROBE_HOST / _PORT         where step 2 looks for PostgreSQL (127.0.0.1, 5432)
#   CENSUS_REDIS_PROBE_HOST / _PORT      where step 2 looks for Redis (127.0.0.1, 6379)
#   CENSUS_PG_BINDIR                     directory with initdb, pg_ctl and postgres
#   CENSUS_REDIS_SERVER                  the redis-server binary
set -euo pipefail

CENSUS_SERVERS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Redis database the tests use on a shared server: 5 keeps them off the default database 0.
_census_redis_db=5

# State of the private servers, read by census_servers_down.
_census_pg_dir=""
_census_pg_bindir=""
_census_redis_dir=""

_census_py() {
  local py="${CENSUS_SERVERS_PYTHON:-$CENSUS_SERVERS_ROOT/.venv/bin/python}"
  "$py" "$CENSUS_SERVERS_ROOT/scripts/servers_probe.py" "$@"
}

_census_die() {  # _census_die SERVER WHY...
  local server="$1"
  shift
  {
    echo
    echo "!! ./test needs $server and cannot have it: $*"
    echo "!! Point the tests at a server of yours instead: see docs/servers.md."
  } >&2
  exit 1
}

_census_sudo() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo "$@"
  fi
}

_census_apt_install() {  # _census_apt_install SERVER PACKAGE
  local server="$1" package="$2" log
  echo "==> installing Debian's $package (for $server)"
  log="$(mktemp)"
  if ! command -v apt-get >/dev/null 2>&1; then
    rm -f "$log"
    _census_die "$server" "it is not running and this machine has no apt-get to install $package"
  fi
  if ! { _census_sudo apt-get update -qq &&
    _census_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package"; } \
    >"$log" 2>&1 </dev/null; then
    tail -n 15 "$log" >&2
    rm -f "$log"
    if [ "$(id -u)" -eq 0 ]; then
      _census_die "$server" "'apt-get install $package' failed; its output is above"
    fi
    _census_die "$server" "'sudo apt-get install $package' failed (it needs root, or sudo);" \
      "its output is above"
  fi
  rm -f "$log"
}

# Runs a command as the user PostgreSQL runs as: itself, or `postgres` when we are root
# (PostgreSQL refuses to run as root).
_census_as_pg() {
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
  fi
}

# The directory holding initdb, pg_ctl and postgres: CENSUS_PG_BINDIR, else the newest
# Debian /usr/lib/postgresql/<version>/bin, else initdb on PATH (symlinks followed).
_census_pg_find_bindir() {
  local dir candidates=()
  if [ -n "${CENSUS_PG_BINDIR:-}" ]; then
    candidates+=("$CENSUS_PG_BINDIR")
  fi
  while IFS= read -r dir; do
    candidates+=("$dir")
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | grep -v '[*]' | sort -t/ -k5,5Vr)
  if command -v initdb >/dev/null 2>&1; then
    candidates+=("$(dirname "$(readlink -f "$(command -v initdb)")")")
  fi
  for dir in "${candidates[@]}"; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

_census_pg_private() {
  local why="$1" port dir log attempt
  echo "==> PostgreSQL: $why; starting a private one"
  if ! _census_pg_bindir="$(_census_pg_find_bindir)"; then
    _census_apt_install PostgreSQL postgresql
    _census_pg_bindir="$(_census_pg_find_bindir)" ||
      _census_die PostgreSQL "'apt-get install postgresql' left no initdb/pg_ctl/postgres" \
        "under /usr/lib/postgresql/*/bin"
  fi
  if [ "$(id -u)" -eq 0 ] && ! id -u postgres >/dev/null 2>&1; then
    echo "==> creating the postgres system user (PostgreSQL does not run as root)"
    useradd --system --user-group --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin postgres ||
      _census_die PostgreSQL "could not create the postgres system user to run it as"
  fi
  # Under /tmp when root: the postgres user must be able to reach it.
  if [ "$(id -u)" -eq 0 ]; then
    dir="$(mktemp -d /tmp/census-pg.XXXXXX)"
  else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/census-pg.XXXXXX")"
  fi
  _census_pg_dir="$dir"
  log="$dir/postgres.log"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$dir"
  fi
  if ! (cd "$dir" && _census_as_pg "$_census_pg_bindir/initdb" -D "$dir/data" -U postgres \
    --auth=trust --encoding=UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1); then
    tail -n 15 "$dir/initdb.log" >&2
    _census_die PostgreSQL "initdb ($_census_pg_bindir/initdb) failed; output above"
  fi
  # A free port can be taken between the probe and the start: try a few.
  for attempt in 1 2 3; do
    port="$(_census_py free-port)"
    if (cd "$dir" && _census_as_pg "$_census_pg_bindir/pg_ctl" -D "$dir/data" -l "$log" \
      -w -t 60 -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null); then
      CENSUS_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$port/postgres"
      local probe
      if probe="$(_census_py postgres "$CENSUS_TEST_POSTGRES" --wait 10 2>&1)"; then
        echo "==> PostgreSQL: private $probe on 127.0.0.1:$port (data in $dir)"
        return 0
      fi
      _census_die PostgreSQL "the private server on 127.0.0.1:$port started but: $probe"
    fi
    echo "==> PostgreSQL: could not start on port $port (attempt $attempt)" >&2
  done
  if [ -s "$log" ]; then
    tail -n 15 "$log" >&2
  fi
  _census_die PostgreSQL "$_census_pg_bindir/pg_ctl start failed (3 tries on free ports);" \
    "its log, if any, is above"
}

_census_postgres_up() {
  local probe url user why
  if [ -n "${CENSUS_TEST_POSTGRES:-}" ]; then
    probe="$(_census_py postgres "$CENSUS_TEST_POSTGRES" 2>&1)" ||
      _census_die PostgreSQL "CENSUS_TEST_POSTGRES=$CENSUS_TEST_POSTGRES: $probe"
    echo "==> PostgreSQL: $probe from CENSUS_TEST_POSTGRES"
    return 0
  fi
  if [ "${CENSUS_TEST_SERVERS:-}" = private ]; then
    _census_pg_private "CENSUS_TEST_SERVERS=private"
    return 0
  fi
  local host="${CENSUS_PG_PROBE_HOST:-127.0.0.1}" port="${CENSUS_PG_PROBE_PORT:-5432}"
  why="nothing usable on $host:$port"
  for user in postgres root; do
    url="postgresql://$user@$host:$port/postgres"
    # Trust auth only: no password from the environment or ~/.pgpass.
    if probe="$(
      unset PGPASSWORD
      export PGPASSFILE=/nonexistent
      _census_py postgres "$url" 2>&1
    )"; then
      CENSUS_TEST_POSTGRES="$url"
      echo "==> PostgreSQL: using $probe on $host:$port"
      return 0
    elif [ $? -eq 2 ]; then
      why="nothing answers on $host:$port"
      break
    fi
    why="$host:$port answers, but not as wanted (as $user: $probe)"
  done
  _census_pg_private "$why"
}

_census_redis_private() {
  local why="$1" server port dir probe attempt
  echo "==> Redis: $why; starting a private one"
  server="${CENSUS_REDIS_SERVER:-$(command -v redis-server || true)}"
  if [ -z "$server" ] || [ ! -x "$server" ]; then
    _census_apt_install Redis redis-server
    server="$(command -v redis-server || echo /usr/bin/redis-server)"
    [ -x "$server" ] || _census_die Redis "'apt-get install redis-server' left no redis-server"
  fi
  dir="$(mktemp -d "${TMPDIR:-/tmp}/census-redis.XXXXXX")"
  _census_redis_dir="$dir"
  for attempt in 1 2 3; do
    port="$(_census_py free-port)"
    if (cd "$dir" && "$server" --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
      --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      </dev/null >/dev/null 2>&1); then
      CENSUS_TEST_REDIS="redis://127.0.0.1:$port/$_census_redis_db"
      if probe="$(_census_py redis "$CENSUS_TEST_REDIS" --wait 10 2>&1)"; then
        echo "==> Redis: private $probe on 127.0.0.1:$port, database $_census_redis_db"
        return 0
      fi
      echo "==> Redis: no answer on port $port (attempt $attempt): $probe" >&2
      _census_redis_kill
    else
      echo "==> Redis: $server did not start on port $port (attempt $attempt)" >&2
    fi
  done
  if [ -s "$dir/redis.log" ]; then
    tail -n 15 "$dir/redis.log" >&2
  fi
  _census_die Redis "$server did not start (3 tries on free ports); its log, if any, is above"
}

_census_redis_up() {
  local probe url why
  if [ -n "${CENSUS_TEST_REDIS:-}" ]; then
    probe="$(_census_py redis "$CENSUS_TEST_REDIS" 2>&1)" ||
      _census_die Redis "CENSUS_TEST_REDIS=$CENSUS_TEST_REDIS: $probe"
    echo "==> Redis: $probe from CENSUS_TEST_REDIS"
    return 0
  fi
  if [ "${CENSUS_TEST_SERVERS:-}" = private ]; then
    _census_redis_private "CENSUS_TEST_SERVERS=private"
    return 0
  fi
  local host="${CENSUS_REDIS_PROBE_HOST:-127.0.0.1}" port="${CENSUS_REDIS_PROBE_PORT:-6379}"
  url="redis://$host:$port/$_census_redis_db"
  if probe="$(_census_py redis "$url" 2>&1)"; then
    CENSUS_TEST_REDIS="$url"
    echo "==> Redis: using $probe on $host:$port, database $_census_redis_db"
    return 0
  elif [ $? -eq 2 ]; then
    why="nothing answers on $host:$port"
  else
    why="$host:$port answers, but not as wanted ($probe)"
  fi
  _census_redis_private "$why"
}

census_servers_up() {
  local py="${CENSUS_SERVERS_PYTHON:-$CENSUS_SERVERS_ROOT/.venv/bin/python}"
  if ! "$py" -c "import psycopg, redis" 2>/dev/null; then
    _census_die "PostgreSQL and Redis" "$py cannot import psycopg and redis (scripts/setup.sh" \
      "installs them with the test extra: source it first)"
  fi
  _census_postgres_up
  _census_redis_up
  export CENSUS_TEST_POSTGRES CENSUS_TEST_REDIS
}

_census_pg_stop() {
  local dir="$_census_pg_dir" pid=""
  [ -n "$dir" ] || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    pid="$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)"
    if ! (cd "$dir" && _census_as_pg "$_census_pg_bindir/pg_ctl" -D "$dir/data" -m fast -w \
      -t 20 stop >/dev/null 2>&1); then
      if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "==> PostgreSQL: pg_ctl stop failed; killing postmaster $pid" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  rm -rf "$dir"
  _census_pg_dir=""
}

_census_redis_kill() {  # the private redis-server, by the pid in its pidfile
  local dir="$_census_redis_dir" pid=""
  if [ -f "$dir/redis.pid" ]; then
    pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
  fi
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/redis.pid"
}

_census_redis_stop() {
  [ -n "$_census_redis_dir" ] || return 0
  _census_redis_kill
  rm -rf "$_census_redis_dir"
  _census_redis_dir=""
}

# Stops the private servers census_servers_up started (none when it used existing ones).
# Safe to call twice, and from an EXIT trap: it never changes the exit status.
census_servers_down() {
  set +e
  if [ -n "$_census_pg_dir" ]; then
    echo "==> PostgreSQL: stopping the private server"
  fi
  _census_pg_stop
  if [ -n "$_census_redis_dir" ]; then
    echo "==> Redis: stopping the private server"
  fi
  _census_redis_stop
}
