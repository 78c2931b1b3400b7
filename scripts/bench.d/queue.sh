# shellcheck shell=bash
# shellcheck disable=SC2153,SC2154  # RESULTS, runtime_config, pids, PG_* and the rest come from scripts/bench and lib.sh
# The `queue` part of scripts/bench: the work queue (Redis Streams) on the local host,
# against the test Redis (scripts/bench's database) and a scratch PostgreSQL database
# (created here, dropped at the end). In this one run:
#   1. drain throughput of no-op probe tasks: BENCH_QUEUE_TASKS (default 20,000) enqueued
#      through POST /admin/queues/probe (timed), drained by one loop of
#      POST /admin/queues/drain, then again by three concurrent loops, on a host without
#      the Redis trigger and the cron schedules (only the measured drains work); beside
#      them redis-benchmark XADD with 1 and 3 connections on the same Redis;
#   2. a chat turn's enqueue cost: POST /api/chat on one connection with
#      analysis_every_turns=0 and =1 (when this build has the variable);
#   3. a broadcast to BENCH_QUEUE_RECIPIENTS (default 100,000) seeded users with the
#      worker running (Redis trigger and its cron): recipients/s unpaced, and chat p99 on
#      16 connections without a broadcast, beside an unpaced one, and beside one at the
#      manifest's broadcast_recipients_per_second (when this build has the routes).
# The figures go to docs/benchmarks.md, section `queue`.
# Uses what scripts/bench set up: RESULTS, the mock Gemini, the tokens, free_port,
# wait_http, warm_cache.

QUEUE_TASKS="${BENCH_QUEUE_TASKS:-20000}"
QUEUE_RECIPIENTS="${BENCH_QUEUE_RECIPIENTS:-100000}"
QUEUE_BROADCAST_TIMEOUT="${BENCH_QUEUE_BROADCAST_TIMEOUT:-90}"
QUEUE_DB=evolve_bench_queue
QUEUE_ADMIN=bench-admin-token
# The wake-up channel of the part's hosts: Redis pub/sub ignores the database number, so
# on the default channel every enqueue here would wake any other host's worker listening
# on the same Redis (and theirs would wake this part's worker).
QUEUE_CHANNEL=evolve:bench:queue:wake

# queue_host NAME PORT MANIFEST [evolve-host arguments]: the application on PORT, on the
# scratch database; its pid goes to queue_pids (and pids, for scripts/bench's cleanup).
queue_host() {
  local name="$1" port="$2" manifest="$3"
  shift 3
  target/release/evolve-host up --manifest "$manifest" --listen "127.0.0.1:$port" \
    --runtime-config-file "$runtime_config" \
    --variable "redis_url=$REDIS_BENCH" --variable "redis_host=127.0.0.1:$REDIS_PORT" \
    --variable "pg_url=$QUEUE_PG_URL" --variable "pg_host=127.0.0.1:$PG_PORT" \
    --variable "admin_token=$QUEUE_ADMIN" --variable metrics_token=bench-metrics-token \
    --variable "jwt_secret=$SECRET" \
    --variable "gemini_api_key=$GEMINI_KEY" --variable "gemini_base_url=http://127.0.0.1:$MOCK_PORT" \
    --variable chat_rate_limit_per_minute=0 --variable "queue_channel=$QUEUE_CHANNEL" \
    "$@" >"$RESULTS/queue-host-$name.log" 2>&1 &
  pids+=($!)
  queue_pids+=($!)
  wait_http "http://127.0.0.1:$port/health"
}

queue_stop_hosts() {
  local pid
  for pid in "${queue_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  queue_pids=()
}

# queue_clear: removes the queue's keys (streams, delayed, dead letters, counters).
queue_clear() {
  redis-cli -p "$REDIS_PORT" -n "$BENCH_DB" --scan --pattern 'evolve:{queue}:*' \
    | xargs -r -n 500 redis-cli -p "$REDIS_PORT" -n "$BENCH_DB" del >/dev/null
}

queue_py() { python3 scripts/bench.d/queue.py "$@"; }

bench_queue() {
  local started
  started=$(date +%s)
  local bin out
  bin="$(pg_bin_dir)" || die "PostgreSQL client tools not found"
  out="$RESULTS/queue.txt"
  : >"$out"
  record() { printf '%s=%s\n' "$1" "$2" >>"$out"; }
  # The 1-minute load average before each step: the machine may be shared.
  record_load() { record "load_$1" "$(cut -d ' ' -f 1 /proc/loadavg)"; }
  queue_pids=()
  export PGPASSWORD="$PG_PASSWORD" PGSSLMODE=disable
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -X -A -t -q -v ON_ERROR_STOP=1)
  QUEUE_PG_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$QUEUE_DB?sslmode=disable"

  log "queue: scratch database $QUEUE_DB"
  "${psql[@]}" -d "$PG_DB" -c "DROP DATABASE IF EXISTS $QUEUE_DB WITH (FORCE)" -c "CREATE DATABASE $QUEUE_DB"
  DATABASE_URL="$QUEUE_PG_URL" target/release/evolve-migrate >/dev/null
  redis-cli -p "$REDIS_PORT" -n "$BENCH_DB" flushdb >/dev/null

  record duration "$DURATION"
  record users "$USERS"
  local setting
  for setting in queue_batch queue_concurrency queue_drain_budget_ms; do
    record "$setting" "$(sed -n "s/^$setting = { default = \"\\([0-9]*\\)\" }.*/\\1/p" "$HOST_MANIFEST")"
  done
  queue_py manifest manual "$HOST_MANIFEST" "$EVOLVE_ROOT" >"$RESULTS/queue-manual.toml"
  queue_py manifest worker "$HOST_MANIFEST" "$EVOLVE_ROOT" >"$RESULTS/queue-worker.toml"

  # 1. Drain throughput, on a host where nothing else drains.
  local manual manual_analysis
  manual=$(free_port)
  queue_host manual "$manual" "$RESULTS/queue-manual.toml" --no-cron --variable analysis_every_turns=0
  record_load drain
  log "queue: enqueue $QUEUE_TASKS probe tasks, drain them with 1 drain"
  queue_py enqueue "$manual" "$QUEUE_ADMIN" "$QUEUE_TASKS" enqueue >>"$out"
  queue_py drain "$manual" "$QUEUE_ADMIN" 1 drain1 >>"$out"
  log "queue: enqueue $QUEUE_TASKS probe tasks, drain them with 3 concurrent drains"
  queue_py enqueue "$manual" "$QUEUE_ADMIN" "$QUEUE_TASKS" enqueue_again >>"$out"
  queue_py drain "$manual" "$QUEUE_ADMIN" 3 drain3 >>"$out"
  local connections
  for connections in 1 3; do
    log "queue: redis-benchmark XADD, $connections connection(s)"
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" --dbnum "$BENCH_DB" -n 200000 -P 1 -c "$connections" \
      XADD evolve:bench:xadd '*' task 0123456789abcdef0123456789abcdef kind probe payload '{}' \
      attempt 0 ref '' enqueued 1700000000000 >"$RESULTS/xadd-$connections.txt" 2>&1
    redis-cli -p "$REDIS_PORT" -n "$BENCH_DB" del evolve:bench:xadd >/dev/null
  done

  # 2. A chat turn's enqueue cost: the same turns with analysis off and on every turn.
  manual_analysis=$(free_port)
  queue_host manual-analysis "$manual_analysis" "$RESULTS/queue-manual.toml" --no-cron \
    --variable analysis_every_turns=1
  warm_cache "$manual"
  local token turn
  token=$(head -n 1 "$BENCH_TOKENS")
  for turn in 1 2 3; do
    curl -s -o /dev/null -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"message\": \"analysis check $turn\"}" "http://127.0.0.1:$manual_analysis/api/chat"
  done
  queue_py drain "$manual_analysis" "$QUEUE_ADMIN" 1 analysis_check >"$RESULTS/queue-analysis-check.txt"
  if queue_py has-kind "$manual_analysis" "$QUEUE_ADMIN" analysis; then
    record analysis yes
    record_load analysis
    queue_clear
    # Twice each, alternating, so that the machine's drift shows beside the difference.
    local round queued=0 now
    for round in 1 2; do
      log "queue: wrk chat, one connection, analysis_every_turns=0, $DURATION (round $round)"
      BENCH_METHOD=POST wrk -t1 -c1 -d"$DURATION" --latency -s scripts/bench.d/users.lua \
        "http://127.0.0.1:$manual/api/chat" >"$RESULTS/chat-analysis-0-$round.txt"
      log "queue: wrk chat, one connection, analysis_every_turns=1, $DURATION (round $round)"
      BENCH_METHOD=POST wrk -t1 -c1 -d"$DURATION" --latency -s scripts/bench.d/users.lua \
        "http://127.0.0.1:$manual_analysis/api/chat" >"$RESULTS/chat-analysis-1-$round.txt"
      now=$(queue_py queued "$manual_analysis" "$QUEUE_ADMIN")
      record "analysis_added_$round" $((now - queued))
      queued=$now
    done
  else
    warn "queue: no analysis tasks with analysis_every_turns=1: the enqueue-cost runs are skipped"
    record analysis no
  fi
  queue_stop_hosts
  queue_clear

  # 3. A broadcast to every user, with the worker running as spin.toml runs it: unpaced
  # (broadcast_recipients_per_second=0) for the delivery rate and chat beside it, then at
  # the manifest's pace for chat beside it.
  local worker probe pace
  pace=$(sed -n 's/^broadcast_recipients_per_second = { default = "\([0-9]*\)" }.*/\1/p' "$HOST_MANIFEST")
  worker=$(free_port)
  queue_host worker "$worker" "$RESULTS/queue-worker.toml" --variable analysis_every_turns=0 \
    --variable broadcast_recipients_per_second=0
  record broadcast_timeout "$QUEUE_BROADCAST_TIMEOUT"
  if probe=$(queue_py broadcasts "$worker" "$QUEUE_ADMIN"); then
    record broadcast yes
    record broadcast_pace "${pace:-0}"
    log "queue: seeding $QUEUE_RECIPIENTS users"
    "${psql[@]}" -d "$QUEUE_DB" \
      -c "INSERT INTO users (external_id) SELECT 'bench-bc-' || i FROM generate_series(1, $QUEUE_RECIPIENTS) i" \
      -c "INSERT INTO profiles (user_id) SELECT id FROM users WHERE external_id LIKE 'bench-bc-%'" \
      -c "VACUUM ANALYZE users" -c "VACUUM ANALYZE profiles"
    record seeded "$QUEUE_RECIPIENTS"
    record_load broadcast
    log "queue: broadcast 1 to every user, unpaced, alone (at most ${QUEUE_BROADCAST_TIMEOUT} s)"
    queue_py broadcast "$worker" "$QUEUE_ADMIN" "$QUEUE_BROADCAST_TIMEOUT" bc1 >>"$out"
    # chat_run NAME [BROADCAST]: wrk chat on 16 connections, with a broadcast posted as it
    # starts when BROADCAST names one (its figures go to queue.txt under that name). The
    # rows earlier broadcasts wrote are vacuumed first, not by autovacuum during the run.
    chat_run() {
      "${psql[@]}" -d "$QUEUE_DB" -c "VACUUM ANALYZE chat_history, broadcast_deliveries, broadcasts"
      local bc=""
      if [[ -n "${2:-}" ]]; then
        queue_py broadcast "$worker" "$QUEUE_ADMIN" "$QUEUE_BROADCAST_TIMEOUT" "$2" >"$RESULTS/queue-$2.txt" &
        bc=$!
      fi
      log "queue: wrk chat, 16 connections, $DURATION, run $1"
      BENCH_METHOD=POST wrk -t2 -c16 -d"$DURATION" --latency -s scripts/bench.d/users.lua \
        "http://127.0.0.1:$worker/api/chat" >"$RESULTS/chat-16-$1.txt"
      if [[ -n "$bc" ]]; then
        wait "$bc" || die "broadcast $2 failed"
        cat "$RESULTS/queue-$2.txt" >>"$out"
      fi
    }
    chat_run idle-1
    chat_run unpaced bc2
    queue_stop_hosts
    queue_host worker "$worker" "$RESULTS/queue-worker.toml" --variable analysis_every_turns=0
    chat_run idle-2
    chat_run paced bc3
  else
    warn "queue: POST /admin/broadcasts answered $probe: the broadcast runs are skipped"
    record broadcast no
    record broadcast_probe "$probe"
  fi
  queue_stop_hosts
  queue_clear

  "${psql[@]}" -d "$PG_DB" -c "DROP DATABASE $QUEUE_DB WITH (FORCE)"
  python3 scripts/bench.d/queue.py report "$RESULTS" \
    "scripts/bench queue (BENCH_QUEUE_TASKS=$QUEUE_TASKS BENCH_QUEUE_RECIPIENTS=$QUEUE_RECIPIENTS BENCH_DURATION=$DURATION BENCH_USERS=$USERS)"
  ok "queue part done in $(since "$started")"
}
