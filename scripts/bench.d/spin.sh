# shellcheck shell=bash
# shellcheck disable=SC2154  # RESULTS, runtime_config, pids and the rest are set by scripts/bench
# The `spin` part of scripts/bench: both builds of the application on a real Spin 4 (the
# `spin` on PATH; skipped with a warning when there is none, or it is older than 4), the
# same load against each, beside do-nothing WASIp2 and WASIp3 components served by the
# same Spin. Writes the section `spin` of docs/benchmarks.md.
# Uses what scripts/bench set up: RESULTS, the test services, the mock Gemini, tokens.

# spin_up NAME MANIFEST PORT [spin up arguments]: one Spin serving MANIFEST on PORT.
spin_up() {
  local name="$1" manifest="$2" port="$3"
  shift 3
  SPIN_VARIABLE_REDIS_URL="$REDIS_BENCH" SPIN_VARIABLE_REDIS_HOST="127.0.0.1:$REDIS_PORT" \
    SPIN_VARIABLE_PG_URL="$PG_URL" SPIN_VARIABLE_PG_HOST="127.0.0.1:$PG_PORT" \
    SPIN_VARIABLE_ADMIN_TOKEN=bench-admin-token SPIN_VARIABLE_METRICS_TOKEN=bench-metrics-token \
    SPIN_VARIABLE_JWT_SECRET="$SECRET" SPIN_VARIABLE_GEMINI_API_KEY="$GEMINI_KEY" \
    SPIN_VARIABLE_GEMINI_BASE_URL="http://127.0.0.1:$MOCK_PORT" \
    SPIN_VARIABLE_CHAT_RATE_LIMIT_PER_MINUTE=0 \
    spin up -f "$manifest" --listen "127.0.0.1:$port" --runtime-config-file "$runtime_config" \
    "$@" >"$RESULTS/spin-$name.log" 2>&1 &
  pids+=($!)
}

# An HTTP-only copy of MANIFEST with absolute component paths, to be written outside the
# repository (the cron plugin is not needed to serve requests, and more cron triggers
# would run the jobs during the load).
http_only() {
  python3 - "$1" "$EVOLVE_ROOT" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"\[\[trigger\.cron\]\]\n(?:[^\[\n].*\n|\n)*", "", text)
print(re.sub(r'^source = "', f'source = "{sys.argv[2]}/', text, flags=re.M), end="")
PY
}

bench_spin() {
  if ! command -v spin >/dev/null 2>&1; then
    warn "no spin on PATH: the spin part is skipped"
    return 0
  fi
  local version
  version=$(spin --version | awk '{print $2}')
  if [[ ! "${version%%.*}" =~ ^[0-9]+$ ]] || (( ${version%%.*} < 4 )); then
    warn "spin $version is older than 4 (the WASIp3 build needs Spin 4): the spin part is skipped"
    return 0
  fi

  local p3 p2 p3_single noop
  http_only spin.toml >"$RESULTS/spin.toml"
  http_only spin.p2.toml >"$RESULTS/spin.p2.toml"
  write_noop_manifest "$RESULTS/noop.toml"
  p3=$(free_port)
  spin_up p3 "$RESULTS/spin.toml" "$p3"
  p2=$(free_port)
  spin_up p2 "$RESULTS/spin.p2.toml" "$p2"
  # Spin 4 reuses a WASIp3 instance for up to 128 requests; 1 turns reuse off.
  p3_single=$(free_port)
  spin_up p3-single "$RESULTS/spin.toml" "$p3_single" --max-instance-reuse-count 1
  noop=$(free_port)
  spin_up noop "$RESULTS/noop.toml" "$noop"
  local port
  for port in "$p3" "$p2" "$p3_single"; do
    wait_http "http://127.0.0.1:$port/health"
  done
  wait_http "http://127.0.0.1:$noop/p3"
  warm_cache "$p3"
  seed_kv_read

  run_wrk spin-noop-p2 "$CONNECTIONS" "http://127.0.0.1:$noop/p2"
  run_wrk spin-noop-p3 "$CONNECTIONS" "http://127.0.0.1:$noop/p3"
  run_wrk spin-kv-read-p3 "$CONNECTIONS" "http://127.0.0.1:$noop/kv"
  run_wrk spin-kv-read-p3-deadline "$CONNECTIONS" "http://127.0.0.1:$noop/kv/deadline"
  run_wrk spin-profile-p2 "$CONNECTIONS" "http://127.0.0.1:$p2/api/profile" -s scripts/bench.d/users.lua
  run_wrk spin-profile-p3 "$CONNECTIONS" "http://127.0.0.1:$p3/api/profile" -s scripts/bench.d/users.lua
  run_wrk spin-profile-p3-single "$CONNECTIONS" "http://127.0.0.1:$p3_single/api/profile" -s scripts/bench.d/users.lua
  BENCH_METHOD=POST run_wrk spin-chat-p2 "$CONNECTIONS" "http://127.0.0.1:$p2/api/chat" -s scripts/bench.d/users.lua
  BENCH_METHOD=POST run_wrk spin-chat-p3 "$CONNECTIONS" "http://127.0.0.1:$p3/api/chat" -s scripts/bench.d/users.lua

  local c="$CONNECTIONS connections"
  python3 scripts/bench.d/report.py spin "Both builds on Spin $version" "$RESULTS" \
    "scripts/bench spin (BENCH_CONNECTIONS=$CONNECTIONS BENCH_DURATION=$DURATION BENCH_USERS=$USERS)" <<EOF_RUNS
noop-p2	wrk	spin-noop-p2.txt	WASIp2 component that does nothing (spin-sdk 5.2, a fresh instance per request), $c
noop-p3	wrk	spin-noop-p3.txt	WASIp3 component that does nothing (spin-sdk 6, instances reused), $c
kv-read-p3	wrk	spin-kv-read-p3.txt	WASIp3 component that reads one key (a cached profile's size) through the cache key-value store per request, $c
kv-read-p3-deadline	wrk	spin-kv-read-p3-deadline.txt	same, the read raced against a 250 ms timer as the application bounds every Redis call, $c
profile-p2	wrk	spin-profile-p2.txt	GET /api/profile, WASIp2 build, cache warm over $USERS users, $c
profile-p3	wrk	spin-profile-p3.txt	GET /api/profile, WASIp3 build, same users, $c
profile-p3-single	wrk	spin-profile-p3-single.txt	same, WASIp3 build with instance reuse off (--max-instance-reuse-count 1), $c
chat-p2	wrk	spin-chat-p2.txt	POST /api/chat, WASIp2 build, mock Gemini at 0 ms, $c
chat-p3	wrk	spin-chat-p3.txt	POST /api/chat, WASIp3 build, mock Gemini at 0 ms, $c
EOF_RUNS
}

# bench_compare: after the chat and spin parts of one invocation, the same components'
# figures side by side (section `compare`); skipped when the spin part was.
bench_compare() {
  [[ -f "$RESULTS/spin-noop-p3.txt" && -f "$RESULTS/noop.txt" ]] || return 0
  local c="$CONNECTIONS connections"
  python3 scripts/bench.d/compare.py "The local host against Spin $(spin --version | awk '{print $2}')" "$RESULTS" \
    "scripts/bench (BENCH_CONNECTIONS=$CONNECTIONS BENCH_DURATION=$DURATION BENCH_USERS=$USERS)" <<EOF_PAIRS
noop-p3	noop.txt	spin-noop-p3.txt	WASIp3 component that does nothing, $c
noop-p2	noop-p2.txt	spin-noop-p2.txt	WASIp2 component that does nothing, $c
kv-read	kv-read.txt	spin-kv-read-p3.txt	one key read through the cache key-value store, $c
kv-read-deadline	kv-read-deadline.txt	spin-kv-read-p3-deadline.txt	same, raced against a 250 ms timer, $c
profile	profile.txt	spin-profile-p3.txt	GET /api/profile (spin-sdk 6 build), cache warm over $USERS users, $c
chat	chat.txt	spin-chat-p3.txt	POST /api/chat (spin-sdk 6 build), mock Gemini at 0 ms, $c
EOF_PAIRS
}
