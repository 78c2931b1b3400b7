# shellcheck shell=bash
# shellcheck disable=SC2034  # variables here are used by the scripts that source this file
# Shared helpers for scripts/*. Source it after `cd "$(dirname "$0")/.."`:
#   . scripts/lib.sh
# It defines logging, the package lists, and per-environment ports, URLs and paths.

EVOLVE_ROOT="$(pwd -P)"
export EVOLVE_ROOT

# Native crates: built, linted and tested on the host (always with --release).
NATIVE_PKGS=(evolve-core evolve-migrate evolve-host evolve-mock-gemini)
# WebAssembly crates: built and linted with --target wasm32-wasip2 --release.
# The evolve-fixture-* crates are test-only components that the host's tests run.
WASM_PKGS=(evolve-platform evolve-ready evolve-chat evolve-admin evolve-jobs evolve-fixture-probe evolve-fixture-cron evolve-fixture-redis evolve-fixture-noop)
WASM_TARGET=wasm32-wasip2

# Native binaries that the scripts run (subset of NATIVE_PKGS).
NATIVE_BIN_PKGS=(evolve-host evolve-migrate evolve-mock-gemini)

# `pkg_args evolve-a evolve-b` sets PKG_ARGS=(-p evolve-a -p evolve-b).
pkg_args() {
  PKG_ARGS=()
  local p
  for p in "$@"; do
    PKG_ARGS+=(-p "$p")
  done
}

# --- logging -----------------------------------------------------------------
if [[ -t 2 ]]; then
  _c_blue=$'\033[1;34m' _c_yellow=$'\033[1;33m' _c_red=$'\033[1;31m' _c_green=$'\033[1;32m' _c_off=$'\033[0m'
else
  _c_blue='' _c_yellow='' _c_red='' _c_green='' _c_off=''
fi
_script_name="$(basename "$0")"

log()  { printf '%s[%s]%s %s\n' "$_c_blue" "$_script_name" "$_c_off" "$*" >&2; }
ok()   { printf '%s[%s]%s %s\n' "$_c_green" "$_script_name" "$_c_off" "$*" >&2; }
warn() { printf '%s[%s] warning:%s %s\n' "$_c_yellow" "$_script_name" "$_c_off" "$*" >&2; }
die()  { printf '%s[%s] error:%s %s\n' "$_c_red" "$_script_name" "$_c_off" "$*" >&2; exit 1; }

# --- environments --------------------------------------------------------------
# `env_setup dev|test` sets, for that environment:
#   EVOLVE_ENV DATA_DIR REDIS_PORT REDIS_URL REDIS_DIR REDIS_PIDFILE REDIS_LOG
#   PG_PORT PG_DB PG_USER PG_PASSWORD PG_URL PG_DATA PG_SOCKET_DIR PG_LOG
env_setup() {
  local env="${1:-}"
  case "$env" in
    dev)
      REDIS_PORT="${EVOLVE_DEV_REDIS_PORT:-6390}"
      PG_PORT="${EVOLVE_DEV_PG_PORT:-5440}"
      PG_DB=evolve
      ;;
    test)
      # Overridable so that two checkouts on one machine can each run their tests.
      REDIS_PORT="${EVOLVE_TEST_REDIS_PORT:-6391}"
      PG_PORT="${EVOLVE_TEST_PG_PORT:-5441}"
      PG_DB=evolve_test
      ;;
    *) die "unknown environment '${env}' (expected dev or test)" ;;
  esac
  EVOLVE_ENV="$env"
  PG_USER=evolve
  PG_PASSWORD=evolve
  DATA_DIR="$EVOLVE_ROOT/.data/$env"
  REDIS_DIR="$DATA_DIR/redis"
  REDIS_PIDFILE="$DATA_DIR/redis.pid"
  REDIS_LOG="$DATA_DIR/redis.log"
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  PG_DATA="$DATA_DIR/pg"
  PG_LOG="$DATA_DIR/postgres.log"
  PG_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
  # The test server also speaks TLS with a self-signed certificate (for the TLS tests);
  # every other test connects in plain text, as the URL says.
  PG_TLS_CERT="$PG_DATA/server.crt"
  if [[ "$env" == test ]]; then
    PG_URL="$PG_URL?sslmode=disable"
  fi
  # Unix socket paths are limited to ~107 bytes; fall back to /tmp for deep checkouts.
  PG_SOCKET_DIR="$DATA_DIR/run"
  if (( ${#PG_SOCKET_DIR} + ${#PG_PORT} + 12 > 100 )); then
    PG_SOCKET_DIR="/tmp/evolve-$env-pg-$PG_PORT"
  fi
}

# Directory of the newest installed PostgreSQL server binaries (/usr/lib/postgresql/<ver>/bin).
pg_bin_dir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || continue
    if [[ -z "$best" ]] || [[ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n1)" == "$d" ]]; then
      best="$d"
    fi
  done
  [[ -n "$best" ]] || return 1
  printf '%s\n' "$best"
}

# Run a command as the `postgres` OS user (PostgreSQL refuses to run as root), from `/`
# so that an unreadable current directory does not matter.
as_postgres() {
  (cd / && runuser -u postgres -- "$@")
}

# Human-readable duration since a `date +%s` timestamp.
since() {
  local s=$(( $(date +%s) - $1 ))
  if (( s >= 60 )); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}
