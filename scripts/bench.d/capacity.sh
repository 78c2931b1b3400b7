# shellcheck shell=bash
# shellcheck disable=SC2153,SC2154  # RESULTS, pids, USERS, SECRET, GEMINI_KEY and the helpers come from scripts/bench and lib.sh
# The `capacity` part of scripts/bench: what one request of each kind costs Redis,
# PostgreSQL and the instance serving it, and from that the request rates at which each
# of them runs out of CPU. Writes the whole of docs/capacity.md.
#
# Redis' commandstats and CPU, pg_stat_statements and PostgreSQL's processes count
# everything their server does, so this part runs a Redis and a PostgreSQL cluster of its
# own (127.0.0.1, free ports, data under RESULTS, no persistence for Redis), stopped and
# removed at the end; it never touches the dev or test services.
#
# One local host serves spin.toml's HTTP routes (the spin-sdk 6 build; no Redis trigger,
# no cron), the mock Gemini answers at 0 ms, BENCH_USERS users in turn. The kinds, one
# after the other, each after a warm-up:
#   profile  GET /api/profile, every user's profile cached first
#   chat     POST /api/chat (chat_rate_limit_per_minute=0, analysis_every_turns=0)
#   history  GET /api/chat/history (first page, default limit)
#   queue    BENCH_CAPACITY_TASKS (default 20,000) no-op probe tasks: POST
#            /admin/queues/probe, then POST /admin/queues/drain until the queue is empty
# The HTTP kinds run wrk with BENCH_CAPACITY_CONNECTIONS (default 16) connections for
# BENCH_CAPACITY_DURATION (default 10s), after BENCH_CAPACITY_WARMUP (default 2s). First an
# idle window of 5 s measures what the servers spend with no load.
#
# Around each measured run (its "window") the part reads, before and after:
#   Redis        INFO all: commandstats calls, total_connections_received, used_cpu_*
#   PostgreSQL   pg_stat_statements calls in the application's database, the log's
#                `connection authorized` lines for it (log_connections), and the CPU of
#                the postmaster and all its children (see capacity.py cpu)
#   host         utime+stime of the evolve-host process (and of the mock Gemini)
#   the machine  user, system, interrupt and steal time from /proc/stat, so that the
#                report can show what the rest of the machine (wrk, any other process)
#                used meanwhile
# and samples pg_stat_activity for the application's database every 0.2 s during it.
# Before each window: VACUUM ANALYZE and CHECKPOINT, so that the previous kind's writes
# are not cleaned up (and billed) in the next one's window.

CAP_CONNECTIONS="${BENCH_CAPACITY_CONNECTIONS:-16}"
CAP_DURATION="${BENCH_CAPACITY_DURATION:-10s}"
CAP_WARMUP="${BENCH_CAPACITY_WARMUP:-2s}"
CAP_TASKS="${BENCH_CAPACITY_TASKS:-20000}"
CAP_IDLE_SECONDS=5
CAP_ADMIN=bench-admin-token
CAP_DB=evolve
CAP_PG_USER=evolve
CAP_PG_PASSWORD=evolve
# Set once the servers exist, so that capacity_cleanup stops only what was started.
CAP_REDIS_PID=""
CAP_PG_DATA=""

cap_py() { python3 scripts/bench.d/capacity.py "$@"; }

# cap_seconds 10s|2m|7: whole seconds, for the connection sampler.
cap_seconds() {
  case "$1" in
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

# capacity_cleanup: stops this part's Redis and PostgreSQL and removes their data (the raw
# figures stay in RESULTS). Called at the part's end and by scripts/bench's exit trap.
capacity_cleanup() {
  if [[ -n "$CAP_REDIS_PID" ]]; then
    kill "$CAP_REDIS_PID" 2>/dev/null || true
    wait "$CAP_REDIS_PID" 2>/dev/null || true
    rm -rf "$RESULTS/capacity-redis"
    CAP_REDIS_PID=""
  fi
  if [[ -n "$CAP_PG_DATA" ]]; then
    if [[ -f "$CAP_PG_DATA/postmaster.pid" ]]; then
      as_postgres "$CAP_PG_BIN/pg_ctl" -D "$CAP_PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 \
        || warn "capacity: could not stop the PostgreSQL cluster in $CAP_PG_DATA"
    fi
    cp "$RESULTS/capacity-pg/postgres.log" "$CAP_DIR/postgres.log" 2>/dev/null || true
    rm -rf "$RESULTS/capacity-pg"
    CAP_PG_DATA=""
  fi
}

capacity_start_redis() {
  CAP_REDIS_PORT=$(free_port)
  mkdir -p "$RESULTS/capacity-redis"
  log "capacity: redis-server on 127.0.0.1:$CAP_REDIS_PORT (no persistence)"
  redis-server --port "$CAP_REDIS_PORT" --bind 127.0.0.1 --dir "$RESULTS/capacity-redis" \
    --save "" --appendonly no --logfile "$RESULTS/capacity-redis/redis.log" &
  CAP_REDIS_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ "$(redis-cli -h 127.0.0.1 -p "$CAP_REDIS_PORT" ping 2>/dev/null || true)" == PONG ]] && return 0
    sleep 0.1
  done
  die "capacity: redis-server did not answer on 127.0.0.1:$CAP_REDIS_PORT"
}

# PostgreSQL's defaults (fsync on), plus pg_stat_statements (with planning times) and
# log_connections.
capacity_start_pg() {
  CAP_PG_BIN="$(pg_bin_dir)" || die "PostgreSQL server not installed: run scripts/bootstrap"
  id postgres >/dev/null 2>&1 || die "OS user 'postgres' missing: run scripts/bootstrap"
  CAP_PG_PORT=$(free_port)
  local dir="$RESULTS/capacity-pg"
  # The postgres user must reach its directory inside RESULTS (made 0700 by mktemp).
  chmod 711 "$RESULTS"
  mkdir -p "$dir/data" "$dir/run"
  chown -R postgres:postgres "$dir"
  chmod 700 "$dir/data"
  CAP_PG_DATA="$dir/data"
  CAP_PG_SOCKET="$dir/run"
  CAP_PG_LOG="$dir/postgres.log"
  log "capacity: initdb in $CAP_PG_DATA"
  if ! as_postgres "$CAP_PG_BIN/initdb" -D "$CAP_PG_DATA" -U postgres -E UTF8 --locale=C \
       --auth-local=peer --auth-host=scram-sha-256 >"$CAP_DIR/initdb.log" 2>&1; then
    cat "$CAP_DIR/initdb.log" >&2
    die "capacity: initdb failed"
  fi
  {
    printf "\nlisten_addresses = '127.0.0.1'\n"
    printf 'port = %s\n' "$CAP_PG_PORT"
    printf "unix_socket_directories = '%s'\n" "$CAP_PG_SOCKET"
    printf 'max_connections = 200\n'
    printf 'shared_buffers = 128MB\n'
    printf "timezone = 'UTC'\n"
    printf "log_timezone = 'UTC'\n"
    printf "shared_preload_libraries = 'pg_stat_statements'\n"
    printf 'pg_stat_statements.track_planning = on\n'
    printf 'log_connections = on\n'
  } >>"$CAP_PG_DATA/postgresql.conf"
  log "capacity: PostgreSQL on 127.0.0.1:$CAP_PG_PORT"
  if ! as_postgres "$CAP_PG_BIN/pg_ctl" -D "$CAP_PG_DATA" -l "$CAP_PG_LOG" -w -t 60 start >/dev/null; then
    tail -n 20 "$CAP_PG_LOG" >&2 || true
    die "capacity: PostgreSQL did not start"
  fi
  cap_psql -c "CREATE ROLE $CAP_PG_USER LOGIN CREATEDB PASSWORD '$CAP_PG_PASSWORD'" \
    -c "CREATE DATABASE $CAP_DB OWNER $CAP_PG_USER" -c "CREATE EXTENSION pg_stat_statements"
  CAP_PG_URL="postgres://$CAP_PG_USER:$CAP_PG_PASSWORD@127.0.0.1:$CAP_PG_PORT/$CAP_DB?sslmode=disable"
  DATABASE_URL="$CAP_PG_URL" target/release/evolve-migrate >/dev/null
}

# cap_psql [psql arguments]: as the superuser over the cluster's socket, database postgres
# (where pg_stat_statements is installed; it reports every database).
cap_psql() {
  as_postgres "$CAP_PG_BIN/psql" -h "$CAP_PG_SOCKET" -p "$CAP_PG_PORT" -U postgres -d postgres \
    -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# cap_snapshot DIR start|end: the counters. The CPU is read innermost (last at the start,
# first at the end), so the snapshot's own queries fall outside its window; they go to
# the database postgres, which the statement and connection counts leave out.
cap_snapshot() {
  local dir="$1" when="$2"
  if [[ "$when" == end ]]; then
    cap_py cpu "$CAP_PG_DATA" "$CAP_HOST_PID" "$CAP_MOCK_PID" >"$dir/end.cpu"
    redis-cli -h 127.0.0.1 -p "$CAP_REDIS_PORT" info all >"$dir/end.redis"
  fi
  cap_psql -c "COPY (SELECT s.queryid, s.calls, s.total_exec_time, s.total_plan_time, s.query FROM pg_stat_statements s
                     JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '$CAP_DB')
               TO STDOUT WITH (FORMAT csv)" >"$dir/$when.pgss.csv"
  stat -c %s "$CAP_PG_LOG" >"$dir/$when.pglog"
  if [[ "$when" == start ]]; then
    # The snapshot's psql backend exits now; let the postmaster reap it before the CPU read.
    sleep 0.2
    redis-cli -h 127.0.0.1 -p "$CAP_REDIS_PORT" info all >"$dir/start.redis"
    cap_py cpu "$CAP_PG_DATA" "$CAP_HOST_PID" "$CAP_MOCK_PID" >"$dir/start.cpu"
  fi
}

# cap_settle: outside the windows, the previous kind's dead rows vacuumed and its dirty
# pages written, then a second for the servers to go quiet.
cap_settle() {
  cap_psql -d "$CAP_DB" -c "VACUUM ANALYZE" -c "CHECKPOINT"
  sleep 1
}

# cap_sampler DIR SECONDS: pg_stat_activity of the application's database every 0.2 s, on
# one connection of its own (to the database postgres, so it counts neither itself nor
# its statements), each SELECT its own transaction so each sees the present.
cap_sampler() {
  local dir="$1" n=$(( $2 * 5 )) i
  for ((i = 0; i < n; i++)); do
    printf "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity WHERE datname = '%s';\n" "$CAP_DB"
    printf 'SELECT pg_sleep(0.2);\n'
  done | PGPASSWORD="$CAP_PG_PASSWORD" "$CAP_PG_BIN/psql" -h 127.0.0.1 -p "$CAP_PG_PORT" \
    -U "$CAP_PG_USER" -d postgres -X -q -A -t -F ' ' >"$dir/connections.txt" &
  # Not in pids: its script ends by itself, and a fast stop of the cluster ends it too.
  CAP_SAMPLER_PID=$!
}

# cap_sampler_stop: the sampler has done its part once the window is closed.
cap_sampler_stop() {
  kill "$CAP_SAMPLER_PID" 2>/dev/null || true
  wait "$CAP_SAMPLER_PID" 2>/dev/null || true
}

# cap_http KIND METHOD PATH: the warm-up, then the measured wrk run inside a window.
cap_http() {
  local kind="$1" method="$2" path="$3" dir="$CAP_DIR/$1"
  mkdir -p "$dir"
  log "capacity: $kind warm-up, $CAP_CONNECTIONS connections, $CAP_WARMUP"
  BENCH_METHOD="$method" wrk -t2 -c"$CAP_CONNECTIONS" -d"$CAP_WARMUP" -s scripts/bench.d/users.lua \
    "http://127.0.0.1:$CAP_APP$path" >"$dir/warmup.txt"
  cap_settle
  cap_snapshot "$dir" start
  cap_sampler "$dir" "$(cap_seconds "$CAP_DURATION")"
  log "capacity: $kind, $CAP_CONNECTIONS connections, $CAP_DURATION"
  BENCH_METHOD="$method" wrk -t2 -c"$CAP_CONNECTIONS" -d"$CAP_DURATION" --latency -s scripts/bench.d/users.lua \
    "http://127.0.0.1:$CAP_APP$path" >"$dir/wrk.txt"
  # Requests still in the host when wrk stops finish (and record their metrics).
  sleep 0.5
  cap_snapshot "$dir" end
  cap_sampler_stop
}

bench_capacity() {
  local started
  started=$(date +%s)
  CAP_DIR="$RESULTS/capacity"
  mkdir -p "$CAP_DIR"
  local settings="$CAP_DIR/settings.txt"
  record() { printf '%s=%s\n' "$1" "$2" >>"$settings"; }
  : >"$settings"

  capacity_start_redis
  capacity_start_pg
  record started "$started"
  record connections "$CAP_CONNECTIONS"
  record duration "$CAP_DURATION"
  record warmup "$CAP_WARMUP"
  record tasks "$CAP_TASKS"
  record users "$USERS"
  record idle_seconds "$CAP_IDLE_SECONDS"
  record nproc "$(nproc)"
  record clk_tck "$(getconf CLK_TCK)"
  record redis_version "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')"
  record pg_version "$(cap_psql -c 'SHOW server_version')"
  record pg_max_connections "$(cap_psql -c 'SHOW max_connections')"

  local mock_port
  mock_port=$(free_port)
  target/release/mock-gemini --listen "127.0.0.1:$mock_port" --api-key "$GEMINI_KEY" \
    >"$CAP_DIR/mock.log" 2>&1 &
  CAP_MOCK_PID=$!
  pids+=("$CAP_MOCK_PID")
  local redis_url="redis://127.0.0.1:$CAP_REDIS_PORT/0"
  target/release/evolve-host runtime-config --cache-redis "$redis_url" >"$CAP_DIR/runtime-config.toml"
  python3 scripts/bench.d/queue.py manifest manual "$HOST_MANIFEST" "$EVOLVE_ROOT" >"$CAP_DIR/manifest.toml"
  python3 scripts/bench.d/tokens.py "$SECRET" "$USERS" >"$CAP_DIR/tokens.txt"
  export BENCH_TOKENS="$CAP_DIR/tokens.txt"

  CAP_APP=$(free_port)
  target/release/evolve-host up --manifest "$CAP_DIR/manifest.toml" --listen "127.0.0.1:$CAP_APP" --no-cron \
    --runtime-config-file "$CAP_DIR/runtime-config.toml" \
    --variable "redis_url=$redis_url" --variable "redis_host=127.0.0.1:$CAP_REDIS_PORT" \
    --variable "pg_url=$CAP_PG_URL" --variable "pg_host=127.0.0.1:$CAP_PG_PORT" \
    --variable "admin_token=$CAP_ADMIN" --variable metrics_token=bench-metrics-token \
    --variable "jwt_secret=$SECRET" \
    --variable "gemini_api_key=$GEMINI_KEY" --variable "gemini_base_url=http://127.0.0.1:$mock_port" \
    --variable chat_rate_limit_per_minute=0 --variable analysis_every_turns=0 \
    >"$CAP_DIR/host.log" 2>&1 &
  CAP_HOST_PID=$!
  pids+=("$CAP_HOST_PID")
  wait_http "http://127.0.0.1:$CAP_APP/health"

  # What the servers spend doing nothing, for the reader to weigh the windows against.
  mkdir -p "$CAP_DIR/idle"
  cap_settle
  cap_snapshot "$CAP_DIR/idle" start
  log "capacity: idle window, ${CAP_IDLE_SECONDS} s"
  sleep "$CAP_IDLE_SECONDS"
  cap_snapshot "$CAP_DIR/idle" end

  warm_cache "$CAP_APP"
  record profile_x_cache "$(curl -s -o /dev/null -D - -H "authorization: Bearer $(head -n 1 "$BENCH_TOKENS")" \
    "http://127.0.0.1:$CAP_APP/api/profile" | tr -d '\r' | sed -n 's/^x-cache: //ip')"
  cap_http profile GET /api/profile
  cap_http chat POST /api/chat
  record history_rows "$(cap_psql -d "$CAP_DB" -c 'SELECT count(*) FROM chat_history')"
  cap_http history GET /api/chat/history

  # The queue: a warm-up of a tenth of the tasks, then the measured enqueue and drain.
  local dir="$CAP_DIR/queue"
  mkdir -p "$dir"
  log "capacity: queue warm-up, $(( CAP_TASKS / 10 )) probe tasks"
  cap_py queue "$CAP_APP" "$CAP_ADMIN" $(( CAP_TASKS / 10 )) >"$dir/warmup.txt"
  cap_settle
  cap_snapshot "$dir" start
  cap_sampler "$dir" 60
  log "capacity: queue, $CAP_TASKS probe tasks enqueued, then drained by one loop"
  cap_py queue "$CAP_APP" "$CAP_ADMIN" "$CAP_TASKS" >"$dir/queue.txt"
  cap_snapshot "$dir" end
  cap_sampler_stop
  cap_py check-queue "$CAP_APP" "$CAP_ADMIN" "$(( CAP_TASKS + CAP_TASKS / 10 ))" >>"$dir/queue.txt"

  kill "$CAP_HOST_PID" 2>/dev/null || true
  wait "$CAP_HOST_PID" 2>/dev/null || true
  capacity_cleanup
  cap_py report "$RESULTS" \
    "scripts/bench capacity (BENCH_CAPACITY_CONNECTIONS=$CAP_CONNECTIONS BENCH_CAPACITY_DURATION=$CAP_DURATION BENCH_CAPACITY_WARMUP=$CAP_WARMUP BENCH_CAPACITY_TASKS=$CAP_TASKS BENCH_USERS=$USERS)" \
    "$(since "$started")"
  ok "capacity part done in $(since "$started")"
}
