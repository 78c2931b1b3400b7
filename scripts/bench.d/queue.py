"""Helpers of the `queue` part of scripts/bench (scripts/bench.d/queue.sh).

Usage:
  queue.py manifest manual|worker MANIFEST ROOT   a copy of MANIFEST for the part's hosts
  queue.py enqueue PORT TOKEN COUNT PREFIX        COUNT probe tasks, timed
  queue.py drain PORT TOKEN LOOPS PREFIX          LOOPS concurrent drain loops until empty
  queue.py stats PORT TOKEN                       GET /admin/queues
  queue.py queued PORT TOKEN                      tasks waiting: streams and delayed retries
  queue.py has-kind PORT TOKEN KIND               exit 0 when GET /admin/queues counts KIND
  queue.py broadcasts PORT TOKEN                  whether POST /admin/broadcasts is routed
  queue.py broadcast PORT TOKEN TIMEOUT PREFIX    one broadcast to every user, timed
  queue.py report RESULTS COMMAND                 writes the section `queue`

The measuring subcommands print `name=value` lines for RESULTS/queue.txt.
"""
import http.client
import json
import os
import re
import sys
import threading
import time

# report.py's readers and section writer; imported without leaving bytecode behind.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import machine, redis, wrk, write_section  # noqa: E402


def request(port, token, method, path, body=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = text
    return response.status, data


def expect(port, token, method, path, statuses, body=None):
    status, data = request(port, token, method, path, body)
    if status not in statuses:
        sys.exit(f"{method} {path}: {status} {data}")
    return data


def emit(name, value):
    print(f"{name}={value}", flush=True)


def manifest(mode, path, root):
    """The application's manifest with absolute sources, and of its triggers: for
    `manual`, HTTP only (nothing drains but the measured POST /admin/queues/drain; an
    enqueue still publishes its wake-up, to no subscriber); for `worker`, HTTP and the
    worker's two triggers (Redis wake-ups and its 5 s cron), without the scheduled jobs."""
    text = open(path).read()

    def keep(block):
        if mode == "manual":
            return ""
        if block.group(1) == "redis":
            return block.group(0)
        return block.group(0) if re.search(r'^component = "worker-cron"$', block.group(0), re.M) else ""

    text = re.sub(r"^\[\[trigger\.(cron|redis)\]\]\n(?:[^\[\n].*\n|\n)*", keep, text, flags=re.M)
    print(re.sub(r'^source = "(?!/)', f'source = "{root}/', text, flags=re.M), end="")


def queued(port, token):
    stats = expect(port, token, "GET", "/admin/queues", {200})
    return sum(s["length"] for s in stats["streams"]) + stats["delayed"]


def enqueue(port, token, count, prefix):
    started = time.monotonic()
    added = 0
    while added < count:
        n = min(10_000, count - added)
        data = expect(port, token, "POST", f"/admin/queues/probe?count={n}&priority=default", {200, 202})
        if data["enqueued"] != n:
            sys.exit(f"probe enqueued {data['enqueued']} of {n}")
        added += n
    elapsed = time.monotonic() - started
    emit(f"{prefix}_tasks", added)
    emit(f"{prefix}_s", f"{elapsed:.3f}")
    emit(f"{prefix}_per_s", f"{added / elapsed:.0f}")


def drain(port, token, loops, prefix):
    """LOOPS threads, each POSTing /admin/queues/drain until the streams are empty."""
    before = queued(port, token)
    done_before = probe_done(port, token)
    totals = {"drains": 0, "claimed": 0, "done": 0, "duplicates": 0, "retried": 0, "dead": 0,
              "released": 0, "lost": 0, "duration_ms": 0}
    lock = threading.Lock()
    errors = []

    def loop():
        try:
            while True:
                report = expect(port, token, "POST", "/admin/queues/drain", {200})
                with lock:
                    totals["drains"] += 1
                    for key in totals:
                        if key != "drains":
                            totals[key] += int(report.get(key, 0))
                if queued(port, token) == 0:
                    return
                if report.get("claimed", 0) == 0:
                    time.sleep(0.01)
        except BaseException as error:  # noqa: BLE001 - reported after the join
            errors.append(error)

    started = time.monotonic()
    threads = [threading.Thread(target=loop) for _ in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        sys.exit(f"drain loop failed: {errors[0]}")
    done = probe_done(port, token) - done_before
    emit(f"{prefix}_tasks", before)
    emit(f"{prefix}_s", f"{elapsed:.3f}")
    emit(f"{prefix}_per_s", f"{before / elapsed:.0f}")
    emit(f"{prefix}_probe_done", done)
    for key, value in totals.items():
        emit(f"{prefix}_{key}", value)


def probe_done(port, token):
    stats = expect(port, token, "GET", "/admin/queues", {200})
    return stats["kinds"].get("probe", {}).get("done", 0)


def has_kind(port, token, kind):
    stats = expect(port, token, "GET", "/admin/queues", {200})
    sys.exit(0 if kind in stats["kinds"] else 1)


def broadcasts(port, token):
    """0 when the route exists: a body without a message is refused by it, not a 404."""
    status, _ = request(port, token, "POST", "/admin/broadcasts", {})
    print(status)
    sys.exit(1 if status in (404, 405) else 0)


def broadcast(port, token, timeout, prefix):
    posted = time.time()
    data = expect(port, token, "POST", "/admin/broadcasts", {200, 201, 202},
                  {"message": "Benchmark broadcast: hello from the operators.", "segment": "all"})
    ident = data["id"]
    emit(f"{prefix}_id", ident)
    status = {}
    while time.time() - posted < timeout:
        status = expect(port, token, "GET", f"/admin/broadcasts/{ident}", {200})
        if status.get("status") in ("done", "cancelled"):
            break
        time.sleep(0.1)
    seen = time.time()
    finished_ms = status.get("finished_ms") or 0
    if status.get("status") == "done" and finished_ms:
        elapsed = finished_ms / 1000 - posted
    else:
        elapsed = seen - posted
    delivered = int(status.get("delivered") or 0)
    emit(f"{prefix}_status", status.get("status", "unknown"))
    emit(f"{prefix}_total", int(status.get("total") or 0))
    emit(f"{prefix}_delivered", delivered)
    emit(f"{prefix}_s", f"{elapsed:.3f}")
    emit(f"{prefix}_per_s", f"{delivered / elapsed:.0f}")
    started_ms = status.get("started_ms") or 0
    if started_ms:
        emit(f"{prefix}_wait_s", f"{max(0.0, started_ms / 1000 - posted):.3f}")


# --- the section ---------------------------------------------------------------------


def report(results, command):
    r = {}
    for line in open(os.path.join(results, "queue.txt")):
        name, _, value = line.rstrip("\n").partition("=")
        r[name] = value
    num = lambda name: f"{float(r[name]):,.0f}"  # noqa: E731
    sec = lambda name: f"{float(r[name]):,.2f} s"  # noqa: E731

    def turn(name):
        rps, p50, p99, errors = wrk(os.path.join(results, name))
        return rps, p50, p99, errors

    def xadd(name):
        rps, p50, p99, _ = redis(os.path.join(results, name))
        return rps, p50, p99

    finished = time.gmtime(os.path.getmtime(os.path.join(results, "queue.txt")))
    tasks = int(r["enqueue_tasks"])
    lines = [
        "<!-- bench:queue -->",
        "## Work queue",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', finished)} on {machine()}.",
        f"Command: `{command}`. Load generator and servers share the machine; the test "
        "Redis (its own database) and a scratch PostgreSQL database, loopback.",
        "",
        "### Drain throughput (no-op probe tasks)",
        "",
        "The local host served the application from a copy of spin.toml without the Redis "
        "trigger and the cron schedules, so no worker ran: only the measured "
        "`POST /admin/queues/drain` calls drained. Queue settings at their defaults "
        f"(queue_batch {r['queue_batch']}, queue_concurrency {r['queue_concurrency']}, "
        f"queue_drain_budget_ms {r['queue_drain_budget_ms']}); every host of this part "
        "publishes its wake-ups on a channel of its own. 1-minute load average of the "
        f"machine before these runs: {r['load_drain']}.",
        "",
        "| run | what | tasks | wall time | tasks/s |",
        "|---|---|---:|---:|---:|",
        f"| enqueue | `POST /admin/queues/probe?count=10000`, {tasks // 10_000} calls one after "
        "the other (one enqueue script per task: XADD and PUBLISH) | "
        f"{tasks:,} | {sec('enqueue_s')} | {num('enqueue_per_s')} |",
    ]
    for prefix, what in (("drain1", "1 drain: one loop of `POST /admin/queues/drain` until the streams are empty"),
                         ("drain3", "3 concurrent drains: three such loops at once")):
        calls = int(r[prefix + "_drains"])
        lines.append(f"| {prefix} | {what} ({calls} drain call{'' if calls == 1 else 's'}) | "
                     f"{int(r[prefix + '_tasks']):,} | {sec(prefix + '_s')} | **{num(prefix + '_per_s')}** |")
    for name, connections in (("xadd-1", 1), ("xadd-3", 3)):
        rps, p50, p99 = xadd(f"{name}.txt")
        lines.append(f"| {name} | `redis-benchmark -P 1 -c {connections} -n 200000 XADD` of a "
                     f"probe task's fields, same Redis (p50 {p50:.3f} ms, p99 {p99:.3f} ms) | "
                     f"200,000 | {200_000 / rps:,.2f} s | {rps:,.0f} |")
    lines += [
        "",
        f"The 1-drain run finished {int(r['drain1_probe_done']):,} probe tasks "
        f"({int(r['drain1_retried'])} retried, {int(r['drain1_dead'])} dead, "
        f"{int(r['drain1_released'])} released); the 3-drain run finished "
        f"{int(r['drain3_probe_done']):,} ({int(r['drain3_retried'])} retried, "
        f"{int(r['drain3_dead'])} dead, {int(r['drain3_released'])} released, "
        f"{int(r['drain3_duplicates'])} finished twice).",
        "",
        "### Enqueue cost on a chat turn",
        "",
    ]
    if r.get("analysis") == "yes":
        lines += [
            f"`POST /api/chat`, wrk with one connection for {r['duration']}, mock Gemini at "
            f"0 ms, {int(r['users']):,} users in turn, on two hosts without the worker (the "
            "tasks wait, nothing runs them), one with `analysis_every_turns=0` (no analysis "
            "enqueue), one with `analysis_every_turns=1` (on every turn, the one script that "
            "counts the turn and enqueues an analysis); the two runs alternate, twice. 1-minute load average of "
            f"the machine before these runs: {r['load_analysis']}.",
            "",
            "| run | analysis_every_turns | turns/s | p50 ms | p99 ms | non-2xx | analysis tasks added |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for round in (1, 2):
            for every in (0, 1):
                rps, p50, p99, errors = turn(f"chat-analysis-{every}-{round}.txt")
                added = f"{int(r[f'analysis_added_{round}']):,}" if every else "none"
                name = f"analysis-{'every' if every else 'off'}-{round}"
                lines.append(f"| {name} | {every} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} | {added} |")
    else:
        lines.append("Not measured: route not available in this build (a host with "
                     "`analysis_every_turns=1` counted no analysis task after chat turns and a drain).")
    lines += ["", "### Broadcast to every user", ""]
    if r.get("broadcast") == "yes":

        def delivery(p):
            text = (f"{int(r[p + '_delivered']):,} of {int(r[p + '_total']):,} recipients "
                    f"delivered in {sec(p + '_s')} from the POST to `finished_ms`")
            if p + "_wait_s" in r:
                text += f" (`started_ms` {sec(p + '_wait_s')} after the POST)"
            text += f", **{num(p + '_per_s')} recipients/s**"
            if r[p + "_status"] != "done":
                text += (f" (status `{r[p + '_status']}` when the wait of "
                         f"{r['broadcast_timeout']} s ended: delivered so far over the wait)")
            return text

        pace = int(r["broadcast_pace"])
        lines += [
            f"{int(r['seeded']):,} users seeded in the scratch database (users and profiles, "
            f"one INSERT ... SELECT generate_series each) beside the {int(r['users']):,} chat "
            "users; `POST /admin/broadcasts` to segment `all`, polled with "
            "`GET /admin/broadcasts/{id}` every 100 ms until `done`. The host ran the worker "
            "as spin.toml does (Redis trigger on the queue's wake-ups, cron every 5 s; the "
            "scheduled jobs off; `analysis_every_turns=0`), first with "
            "`broadcast_recipients_per_second=0` (unpaced), then restarted at the manifest's "
            f"pace ({pace:,} recipients/s). Before each chat run, `VACUUM ANALYZE` of the "
            "tables broadcasts write (chat_history, broadcast_deliveries, broadcasts). "
            f"1-minute load average of the machine before these runs: {r['load_broadcast']}.",
            "",
            f"- Broadcast 1, unpaced, alone: {delivery('bc1')}.",
            f"- Broadcast 2, unpaced, posted as the chat run `unpaced` started: {delivery('bc2')}.",
            f"- Broadcast 3, at {pace:,} recipients/s, posted as the chat run `paced` started: "
            f"{delivery('bc3')}.",
            "",
            f"`POST /api/chat`, wrk with 16 connections for {r['duration']}, mock Gemini at 0 ms, "
            f"{int(r['users']):,} users in turn:",
            "",
            "| run | what | turns/s | p50 ms | p99 ms | non-2xx |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, what in (("idle-1", "no broadcast running (unpaced host)"),
                           ("unpaced", f"broadcast 2 (unpaced) running from the start; it took {sec('bc2_s')}"),
                           ("idle-2", "no broadcast running (paced host)"),
                           ("paced", f"broadcast 3 (paced) running from the start; it took {sec('bc3_s')}")):
            rps, p50, p99, errors = turn(f"chat-16-{name}.txt")
            lines.append(f"| {name} | {what} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {errors} |")
    else:
        lines.append("Not measured: route not available in this build (`POST /admin/broadcasts` "
                     f"answered {r.get('broadcast_probe', 'n/a')}).")
    lines.append("<!-- /bench:queue -->")
    write_section("queue", "\n".join(lines))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "manifest":
        manifest(*args)
    elif command == "report":
        report(*args)
    else:
        port, token, rest = int(args[0]), args[1], args[2:]
        if command == "enqueue":
            enqueue(port, token, int(rest[0]), rest[1])
        elif command == "drain":
            drain(port, token, int(rest[0]), rest[1])
        elif command == "stats":
            print(json.dumps(expect(port, token, "GET", "/admin/queues", {200})))
        elif command == "queued":
            print(queued(port, token))
        elif command == "has-kind":
            has_kind(port, token, rest[0])
        elif command == "broadcasts":
            broadcasts(port, token)
        elif command == "broadcast":
            broadcast(port, token, float(rest[0]), rest[1])
        else:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
