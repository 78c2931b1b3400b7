# shellcheck shell=bash
# shellcheck disable=SC2153  # PG_*, REDIS_* and RESULTS come from lib.sh and scripts/bench
# The `retention` part of scripts/bench, sourced by it after the test services are up, the
# build is done and `env_setup test` has run (it uses RESULTS, BENCH_DB and lib.sh's helpers).
#
# In a scratch database on the test PostgreSQL (created here, dropped at the end), it fills
# chat_history with BENCH_RETENTION_ROWS rows (default 5,000,000) spread evenly over
# BENCH_RETENTION_MONTHS months (default 6) for 10,000 users, with generate_series, and an
# unpartitioned copy of the same rows with the same indexes. Then, in this one run:
#   - a user's history page (the chat API's first-page query) read with pgbench on both;
#   - retention of 30 days: the real `cleanup` job (fired through the local host: it drops
#     the expired month partitions and deletes the rest of the boundary month in batches)
#     against one `DELETE ... WHERE created_at < cutoff` on the copy, and the VACUUM each
#     leaves to do.
# The figures go to docs/benchmarks.md, section `retention`.

RETENTION_ROWS="${BENCH_RETENTION_ROWS:-5000000}"
RETENTION_MONTHS="${BENCH_RETENTION_MONTHS:-6}"
RETENTION_USERS=10000
RETENTION_DAYS=30
RETENTION_BATCH=5000
RETENTION_DB=evolve_bench_retention

bench_retention() {
  local started
  started=$(date +%s)
  local bin url redis_url out
  bin="$(pg_bin_dir)" || die "PostgreSQL client tools not found"
  url="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$RETENTION_DB?sslmode=disable"
  redis_url="redis://127.0.0.1:$REDIS_PORT/$BENCH_DB"
  out="$RESULTS/retention.txt"
  : >"$out"
  export PGPASSWORD="$PG_PASSWORD"
  # The test server also offers TLS; the application's test URL (and so these reads) does not use it.
  export PGSSLMODE=disable
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -X -A -t -v ON_ERROR_STOP=1)

  # sql_ms NAME SQL...: runs the statements, records their total time as NAME_ms.
  sql_ms() {
    local name="$1" text ms
    shift
    local args=(-c '\timing on')
    local statement
    for statement in "$@"; do
      args+=(-c "$statement")
    done
    text="$("${psql[@]}" -d "$RETENTION_DB" "${args[@]}")"
    printf '%s\n' "$text" >>"$RESULTS/retention-psql.log"
    ms="$(printf '%s\n' "$text" | awk '/^Time: / { t += $2 } END { printf "%.1f", t }')"
    printf '%s_ms=%s\n' "$name" "$ms" >>"$out"
    LAST_OUTPUT="$text"
  }
  value() { "${psql[@]}" -q -d "$RETENTION_DB" -c "$1"; }
  record() { printf '%s=%s\n' "$1" "$2" >>"$out"; }

  log "retention: scratch database $RETENTION_DB"
  "${psql[@]}" -q -d "$PG_DB" -c "DROP DATABASE IF EXISTS $RETENTION_DB WITH (FORCE)" \
    -c "CREATE DATABASE $RETENTION_DB"
  DATABASE_URL="$url" target/release/evolve-migrate >/dev/null

  log "retention: $RETENTION_ROWS rows over $RETENTION_MONTHS months, $RETENTION_USERS users"
  # Month partitions for the generated months (the migration made this month and the next).
  value "DO \$\$
    DECLARE month_start timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
            first_day timestamp;
    BEGIN
      FOR i IN 1..$((RETENTION_MONTHS + 1)) LOOP
        first_day := month_start - make_interval(months => i);
        EXECUTE format('CREATE TABLE %I PARTITION OF chat_history FOR VALUES FROM (%L) TO (%L)',
          'chat_history_y' || to_char(first_day, 'YYYY') || 'm' || to_char(first_day, 'MM'),
          first_day AT TIME ZONE 'UTC', (first_day + interval '1 month') AT TIME ZONE 'UTC');
      END LOOP;
    END \$\$" >/dev/null
  value "INSERT INTO users (external_id)
         SELECT 'bench-' || i FROM generate_series(1, $RETENTION_USERS) i" >/dev/null
  sql_ms generate \
    "INSERT INTO chat_history (user_id, role, content, created_at)
     SELECT 1 + i % $RETENTION_USERS,
            CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,
            'benchmark message number ' || i || ', about as long as a short chat line',
            now() - (i::float8 / $RETENTION_ROWS) * ($RETENTION_MONTHS * interval '30 days')
     FROM generate_series(1, $RETENTION_ROWS) i"
  sql_ms copy \
    "CREATE TABLE chat_history_flat (LIKE chat_history INCLUDING DEFAULTS)" \
    "INSERT INTO chat_history_flat SELECT * FROM chat_history" \
    "ALTER TABLE chat_history_flat ADD PRIMARY KEY (user_id, created_at, id)" \
    "CREATE INDEX chat_history_flat_created_at_brin ON chat_history_flat USING brin (created_at)"
  sql_ms analyze "VACUUM ANALYZE chat_history" "VACUUM ANALYZE chat_history_flat"
  record months "$RETENTION_MONTHS"
  record rows "$(value "SELECT count(*) FROM chat_history")"
  record partitions "$(value "SELECT count(*) FROM pg_inherits WHERE inhparent = 'chat_history'::regclass")"
  record partitioned_bytes_before "$(value "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('chat_history')")"
  record flat_bytes_before "$(value "SELECT pg_total_relation_size('chat_history_flat')")"

  # A user's history page, as GET /api/chat/history reads it (sql::HISTORY_FIRST_PAGE):
  # read_history NAME TABLE BOUND runs it with pgbench, 4 clients for 5 s, random users,
  # in the extended protocol (`:name` variables travel as bound parameters, and each query
  # is planned anew, as the application's driver does). BOUND is the retention bound:
  # `now() - ...` in SQL (partitions pruned only when the query starts), or the chat SQL's
  # own bound, `to_timestamp(:cutoff / 1000.0)` with the cut-off as a parameter (pruned
  # when it is planned).
  read_history() {
    local name="$1" table="$2" bound="$3"
    cat >"$RESULTS/history-$name.sql" <<EOF_SQL
\set uid random(1, $RETENTION_USERS)
\set cutoff $cutoff_ms
SELECT id, role, content, degraded, (extract(epoch FROM created_at) * 1000000)::int8 AS created_at_us
FROM $table
WHERE user_id = :uid AND created_at >= $bound
ORDER BY created_at DESC, id DESC
LIMIT 50;
EOF_SQL
    log "retention: pgbench history page, $name (4 clients, 5 s)"
    "$bin/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -n -M extended -c 4 -j 2 -T 5 \
      -f "$RESULTS/history-$name.sql" "$RETENTION_DB" >"$RESULTS/pgbench-$name.txt" 2>&1
    record "read_${name}_tps" "$(awk '/^tps = / { print $3; exit }' "$RESULTS/pgbench-$name.txt")"
    record "read_${name}_latency_ms" "$(awk '/^latency average = / { print $4; exit }' "$RESULTS/pgbench-$name.txt")"
  }
  local now_bound="now() - make_interval(days => $RETENTION_DAYS)" cutoff_ms
  local bound_parameter="to_timestamp(:cutoff::int8 / 1000.0)"
  cutoff_ms="$(value "SELECT (extract(epoch FROM now() - make_interval(days => $RETENTION_DAYS)) * 1000)::int8")"
  record retention_days "$RETENTION_DAYS"
  record batch "$RETENTION_BATCH"
  read_history partitioned chat_history "$now_bound"
  read_history partitioned_constant chat_history "$bound_parameter"
  read_history flat chat_history_flat "$now_bound"
  value "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
         SELECT id FROM chat_history
         WHERE user_id = 4242 AND created_at >= now() - make_interval(days => $RETENTION_DAYS)
         ORDER BY created_at DESC, id DESC LIMIT 50" >"$RESULTS/explain-history.txt"

  # Retention, partitioned: the cleanup job itself, through the local host, with a budget
  # large enough to finish in one run.
  log "retention: cleanup job on the partitioned table"
  local rc="$RESULTS/runtime-config-retention.toml" job_key
  target/release/evolve-host runtime-config --cache-redis "$redis_url" >"$rc"
  for job_key in lease slot last skipped history; do
    redis-cli -p "$REDIS_PORT" -n "$BENCH_DB" del "evolve:{job:cleanup}:$job_key" >/dev/null
  done
  record partitioned_count_before "$(value "SELECT count(*) FROM chat_history WHERE created_at < now() - make_interval(days => $RETENTION_DAYS)")"
  target/release/evolve-host cron --manifest "$HOST_MANIFEST" --component job-cleanup \
    --runtime-config-file "$rc" \
    --variable "redis_url=$redis_url" --variable "redis_host=127.0.0.1:$REDIS_PORT" \
    --variable "pg_url=$url" --variable "pg_host=127.0.0.1:$PG_PORT" \
    --variable admin_token=bench --variable metrics_token=bench --variable jwt_secret=bench \
    --variable gemini_api_key=bench --variable "history_retention_days=$RETENTION_DAYS" \
    --variable "cleanup_batch_size=$RETENTION_BATCH" \
    --variable job_budget_ms=600000 >"$RESULTS/cleanup-job.log" 2>&1 \
    || { cat "$RESULTS/cleanup-job.log" >&2; die "the cleanup job failed"; }
  redis-cli -p "$REDIS_PORT" -n "$BENCH_DB" get "evolve:{job:cleanup}:last" >"$RESULTS/cleanup-record.json"
  record partitioned_rows_left "$(value "SELECT count(*) FROM chat_history")"
  record partitioned_bytes_after "$(value "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('chat_history')")"
  sql_ms partitioned_vacuum "VACUUM chat_history"
  record partitioned_bytes_vacuumed "$(value "SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('chat_history')")"
  record partitions_after "$(value "SELECT count(*) FROM pg_inherits WHERE inhparent = 'chat_history'::regclass")"
  read_history partitioned_after chat_history "$now_bound"

  # Retention, unpartitioned: one DELETE, then the VACUUM it needs to reuse the space.
  log "retention: one DELETE on the unpartitioned copy"
  sql_ms flat_delete "DELETE FROM chat_history_flat WHERE created_at < now() - make_interval(days => $RETENTION_DAYS)"
  record flat_deleted "$(printf '%s\n' "$LAST_OUTPUT" | awk '/^DELETE / { print $2 }')"
  record flat_rows_left "$(value "SELECT count(*) FROM chat_history_flat")"
  record flat_bytes_after "$(value "SELECT pg_total_relation_size('chat_history_flat')")"
  sql_ms flat_vacuum "VACUUM chat_history_flat"
  record flat_bytes_vacuumed "$(value "SELECT pg_total_relation_size('chat_history_flat')")"
  record pg_version "$(value "SHOW server_version")"

  "${psql[@]}" -q -d "$PG_DB" -c "DROP DATABASE $RETENTION_DB WITH (FORCE)"
  python3 scripts/bench.d/retention.py "$RESULTS" \
    "scripts/bench retention (BENCH_RETENTION_ROWS=$RETENTION_ROWS BENCH_RETENTION_MONTHS=$RETENTION_MONTHS)"
  ok "retention part done in $(since "$started")"
}
