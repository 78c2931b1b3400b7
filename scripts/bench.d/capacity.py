"""The `capacity` part of scripts/bench (scripts/bench.d/capacity.sh) in Python: the CPU
readings /proc gives, the queue kind's load, and the report that turns the part's
snapshots into docs/capacity.md.

Usage:
  capacity.py cpu PGDATA HOST_PID MOCK_PID  CPU ticks of PostgreSQL, the host, the mock and the machine, now
  capacity.py queue PORT TOKEN TASKS        TASKS probe tasks enqueued, then drained, timed
  capacity.py check-queue PORT TOKEN DONE   fails unless the queue is empty with DONE probes done
  capacity.py report RESULTS COMMAND TOOK   writes docs/capacity.md from RESULTS/capacity

The measuring subcommands print `name=value` lines.
"""
import csv
import http.client
import json
import math
import os
import re
import sys
import time

# report.py's readers; imported without leaving bytecode behind.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import machine, wrk  # noqa: E402

KINDS = ("profile", "chat", "history", "queue")
WHAT = {
    "profile": "cached profile read (`GET /api/profile`)",
    "chat": "chat turn (`POST /api/chat`)",
    "history": "history page (`GET /api/chat/history`)",
    "queue": "queue task (no-op probe: enqueue and drain)",
}
# What the host's PostgreSQL pool (deadpool, `Clean` recycling) sends on every checkout.
POOL_RESET = {"CLOSE ALL", "SET SESSION AUTHORIZATION DEFAULT", "RESET ALL", "UNLISTEN *",
              "SELECT pg_advisory_unlock_all()", "DISCARD TEMP", "DISCARD SEQUENCES"}
SHORT = {"profile": "profile read", "chat": "chat turn", "history": "history page", "queue": "queue task"}


def emit(name, value):
    print(f"{name}={value}", flush=True)


# --- measuring ------------------------------------------------------------------------


def admin(port, token, method, path):
    """One admin request without a body; its JSON answer, or exit unless 200 or 202."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    if response.status not in (200, 202):
        sys.exit(f"{method} {path}: {response.status} {body}")
    return json.loads(body)


def stat(pid):
    """(ppid, utime, stime, cutime, cstime) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def cpu(pgdata, host_pid, mock_pid):
    """PostgreSQL's CPU is its postmaster's and every child's: the live children's own
    utime+stime read now, plus the postmaster's cutime+cstime, where the kernel adds a
    child's time once it has exited and been reaped. A child that lives through a window
    counts by its growth; one that exits inside it moves into cutime whole, its part from
    before the window taken off by the first reading. Each child is also listed with its
    process title, so that the report can say which processes spent the time."""
    postmaster = int(open(os.path.join(pgdata, "postmaster.pid")).readline())
    _, utime, stime, cutime, cstime = stat(postmaster)
    own, reaped = utime + stime, cutime + cstime
    pg, pg_sys = own + reaped, stime + cstime
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid, utime, stime, _, _ = stat(entry)
            title = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # exited meanwhile: its time is in the postmaster's cutime now
        if ppid == postmaster:
            pg += utime + stime
            pg_sys += stime
            children.append((entry, utime + stime, " ".join(title.split())))
    _, hutime, hstime, _, _ = stat(host_pid)
    _, mutime, mstime, _, _ = stat(mock_pid)
    # The machine: user nice system idle iowait irq softirq steal ..., in the same ticks.
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:9]]
    emit("time", f"{time.time():.3f}")
    emit("machine_busy_ticks", fields[0] + fields[1] + fields[2])
    emit("machine_irq_ticks", fields[5] + fields[6])
    emit("machine_steal_ticks", fields[7])
    emit("mock_ticks", mutime + mstime)
    emit("pg_ticks", pg)
    emit("pg_sys_ticks", pg_sys)
    emit("host_ticks", hutime + hstime)
    emit("host_sys_ticks", hstime)
    print(f"postmaster {own} {reaped}")
    for pid, ticks, title in children:
        print(f"proc {pid} {ticks} {title}")


def queue(port, token, tasks):
    """Probe tasks through the two admin routes only: POST /admin/queues/probe (at most
    10,000 a call), then POST /admin/queues/drain until a drain claims nothing."""
    started = time.monotonic()
    added = 0
    while added < tasks:
        n = min(10_000, tasks - added)
        data = admin(port, token, "POST", f"/admin/queues/probe?count={n}&priority=default")
        if data["enqueued"] != n:
            sys.exit(f"probe enqueued {data['enqueued']} of {n}")
        added += n
    enqueued = time.monotonic()
    drains = claimed = 0
    while True:
        report = admin(port, token, "POST", "/admin/queues/drain")
        drains += 1
        claimed += int(report.get("claimed", 0))
        if int(report.get("claimed", 0)) == 0:
            break
    drained = time.monotonic()
    emit("tasks", tasks)
    emit("enqueue_s", f"{enqueued - started:.3f}")
    emit("drain_s", f"{drained - enqueued:.3f}")
    emit("drains", drains)
    emit("claimed", claimed)


def check_queue(port, token, done):
    stats = admin(port, token, "GET", "/admin/queues")
    waiting = sum(s["length"] for s in stats["streams"]) + stats["delayed"]
    probe = stats["kinds"].get("probe", {})
    if waiting or probe.get("done", 0) != done or stats.get("dead", 0):
        sys.exit(f"queue not drained as expected: {waiting} waiting, probe {probe}, dead {stats.get('dead')}")
    emit("probe_done", probe.get("done", 0))


# --- reading the snapshots ------------------------------------------------------------


def values(path):
    """The `name=value` lines of a file (a CPU snapshot's process lines are read by pg_processes)."""
    out = {}
    for line in open(path):
        if line.startswith(("proc ", "postmaster ")):
            continue
        name, sep, value = line.rstrip("\n").partition("=")
        if sep:
            out[name] = value
    return out


def pg_processes(path):
    """A CPU snapshot's PostgreSQL processes: ({pid: (ticks, title)}, postmaster's own, reaped)."""
    procs, own, reaped = {}, 0, 0
    for line in open(path):
        if line.startswith("proc "):
            _, pid, ticks, title = (line.rstrip("\n").split(" ", 3) + [""])[:4]
            procs[pid] = (int(ticks), title)
        elif line.startswith("postmaster "):
            own, reaped = (int(v) for v in line.split()[1:3])
    return procs, own, reaped


def role(title):
    """What a PostgreSQL process is, from its title (`postgres: USER DATABASE HOST ...` for
    a connection's backend, `postgres: walwriter` and the like for the others)."""
    words = title.split()
    if len(words) >= 4 and words[2] == "evolve" and words[1] == "evolve":
        return "the application's connections"
    if len(words) >= 4 and ("(" in words[3] or words[3] == "[local]"):
        return "the measurement's own connections"
    if "autovacuum" in title:
        return "autovacuum"
    return " ".join(w for w in words[1:] if not w.startswith("(")) or "other"


def pg_breakdown(d):
    """CPU ticks per kind of PostgreSQL process between a window's two snapshots."""
    p0, own0, reaped0 = pg_processes(os.path.join(d, "start.cpu"))
    p1, own1, reaped1 = pg_processes(os.path.join(d, "end.cpu"))
    out = {"the postmaster": own1 - own0}
    for pid, (ticks, title) in p1.items():
        name = role(title)
        out[name] = out.get(name, 0) + ticks - p0.get(pid, (0, ""))[0]
    # The processes that exited: all their time is in the postmaster's cutime+cstime now.
    gone = sum(ticks for pid, (ticks, _) in p0.items() if pid not in p1)
    out["processes that exited"] = reaped1 - reaped0 - gone
    return {name: ticks for name, ticks in out.items() if ticks}


def redis_info(path):
    calls, fields = {}, {}
    for line in open(path):
        line = line.strip()
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            calls[name[len("cmdstat_"):]] = int(re.search(r"calls=(\d+)", rest).group(1))
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value
    cpu = float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])
    return calls, cpu, float(fields["used_cpu_sys"]), int(fields["total_connections_received"])


def statements(path):
    """queryid -> [calls, execution ms, planning ms, text], summed over the roles and
    levels sharing a queryid."""
    out = {}
    with open(path, newline="") as f:
        for queryid, calls, exec_ms, plan_ms, text in csv.reader(f):
            entry = out.setdefault(queryid, [0, 0.0, 0.0, text])
            entry[0] += int(calls)
            entry[1] += float(exec_ms)
            entry[2] += float(plan_ms)
    return out


def connections_authorized(log, start, end):
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read(end - start).decode(errors="replace")
    return len(re.findall(r"connection authorized: user=evolve database=evolve(?:\s|$)", text, re.M))


def window(results, kind, settings):
    """The deltas of one window."""
    d = os.path.join(results, "capacity", kind)
    calls0, rcpu0, rsys0, rconn0 = redis_info(os.path.join(d, "start.redis"))
    calls1, rcpu1, rsys1, rconn1 = redis_info(os.path.join(d, "end.redis"))
    commands = {c: calls1[c] - calls0.get(c, 0) for c in calls1 if calls1[c] - calls0.get(c, 0)}
    # The end snapshot's INFO finds the start snapshot's INFO (and its connection) counted.
    commands["info"] = commands.get("info", 0) - 1
    if commands["info"] <= 0:
        del commands["info"]
    s0 = statements(os.path.join(d, "start.pgss.csv"))
    s1 = statements(os.path.join(d, "end.pgss.csv"))
    stmts = {}
    for q, (c, ms, plan, t) in s1.items():
        c0, ms0, plan0, _ = s0.get(q, (0, 0.0, 0.0, ""))
        if c - c0:
            stmts[q] = (c - c0, ms - ms0, plan - plan0, t)
    c0, c1 = values(os.path.join(d, "start.cpu")), values(os.path.join(d, "end.cpu"))
    tck = int(settings["clk_tck"])
    log = os.path.join(results, "capacity", "postgres.log")
    pglog0 = int(open(os.path.join(d, "start.pglog")).read())
    pglog1 = int(open(os.path.join(d, "end.pglog")).read())
    w = {
        "seconds": float(c1["time"]) - float(c0["time"]),
        "redis_commands": commands,
        "redis_connections": rconn1 - rconn0 - 1,
        "redis_cpu": rcpu1 - rcpu0,
        "redis_sys": rsys1 - rsys0,
        "pg_statements": stmts,
        "pg_new_connections": connections_authorized(log, pglog0, pglog1),
        "pg_cpu": (int(c1["pg_ticks"]) - int(c0["pg_ticks"])) / tck,
        "pg_breakdown": pg_breakdown(d),
        "pg_sys": (int(c1["pg_sys_ticks"]) - int(c0["pg_sys_ticks"])) / tck,
        "host_cpu": (int(c1["host_ticks"]) - int(c0["host_ticks"])) / tck,
        "host_sys": (int(c1["host_sys_ticks"]) - int(c0["host_sys_ticks"])) / tck,
        "mock_cpu": (int(c1["mock_ticks"]) - int(c0["mock_ticks"])) / tck,
        "machine_busy": (int(c1["machine_busy_ticks"]) - int(c0["machine_busy_ticks"])) / tck,
        "machine_irq": (int(c1["machine_irq_ticks"]) - int(c0["machine_irq_ticks"])) / tck,
        "machine_steal": (int(c1["machine_steal_ticks"]) - int(c0["machine_steal_ticks"])) / tck,
    }
    # What the rest of the machine used meanwhile: wrk, the measurement's own tools, and
    # any other process (another test run, a build).
    w["rest_cpu"] = w["machine_busy"] - w["host_cpu"] - w["pg_cpu"] - w["redis_cpu"] - w["mock_cpu"]
    samples = os.path.join(d, "connections.txt")
    if os.path.exists(samples):
        rows = [line.split() for line in open(samples) if re.match(r"^\d+ \d+$", line.strip())]
        w["pg_open_max"] = max((int(r[0]) for r in rows), default=0)
        w["pg_active_max"] = max((int(r[1]) for r in rows), default=0)
        w["pg_samples"] = len(rows)
    if kind == "queue":
        q = values(os.path.join(d, "queue.txt"))
        w["requests"] = int(q["tasks"])
        w["busy_s"] = float(q["enqueue_s"]) + float(q["drain_s"])
        w["rate"] = w["requests"] / w["busy_s"]
        w["queue"] = q
    elif kind != "idle":
        text = open(os.path.join(d, "wrk.txt")).read()
        w["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
        w["rate"], w["p50"], w["p99"], w["errors"] = wrk(os.path.join(d, "wrk.txt"))
    return w


# --- the document ---------------------------------------------------------------------


def us(seconds):
    """Microseconds, to 3 significant figures or so."""
    v = seconds * 1e6
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def rate(value):
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if value < 1e6 else f"{value:,.3g}"


def rest(cores):
    """The rest of the machine, in cores. The kernel accounts the processes' CPU and the
    machine's apart (and Redis reports its own), so their difference is only good to
    about a tenth of a core."""
    return "≈ 0" if abs(cores) < 0.1 else f"{cores:.2f}"


def frac(value):
    """A count per request that may be far below one."""
    return "0" if value == 0 else f"{value:.3f}" if value >= 0.001 else f"{value:.5f}"


def share(part, whole):
    return f"{part / whole * 100:.0f} %" if whole > 0 else "n/a"


def sql(text, width=110):
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def pg_pool_size():
    """The host's PostgreSQL pool size, from its source (None when it cannot be found)."""
    try:
        text = open("tests/host/src/services.rs").read()
    except OSError:
        return None
    found = re.search(r"pub const PG_POOL_SIZE: usize = (\d+);", text)
    return int(found.group(1)) if found else None


def report(results, command, took):
    settings = values(os.path.join(results, "capacity", "settings.txt"))
    cores = int(settings["nproc"])
    idle = window(results, "idle", settings)
    k = {kind: window(results, kind, settings) for kind in KINDS}
    for w in k.values():
        n = w["requests"]
        w["redis_cmds"] = sum(w["redis_commands"].values()) / n
        w["pg_stmts"] = sum(c for c, _, _, _ in w["pg_statements"].values()) / n
        w["pg_resets"] = sum(c for c, _, _, t in w["pg_statements"].values() if t in POOL_RESET) / n
        w["pg_exec_per"] = sum(ms for _, ms, _, _ in w["pg_statements"].values()) / 1000 / n
        w["pg_plan_per"] = sum(ms for _, _, ms, _ in w["pg_statements"].values()) / 1000 / n
        for part in ("redis", "pg", "host"):
            w[f"{part}_per"] = w[f"{part}_cpu"] / n
        # The ceilings: the cores a server has, over the CPU seconds one request costs it.
        # Redis executes commands on one thread: one core, whatever the machine has. A
        # kind that sends a server nothing has no ceiling there (its CPU in the window is
        # the server's background work).
        w["redis_ceiling"] = 1 / w["redis_per"] if w["redis_cmds"] > 0 and w["redis_per"] > 0 else None
        w["pg_ceiling"] = cores / w["pg_per"] if w["pg_stmts"] > 0 and w["pg_per"] > 0 else None
        w["host_ceiling"] = cores / w["host_per"] if w["host_per"] > 0 else None
        limits = [(w["redis_ceiling"], "Redis"), (w["pg_ceiling"], "PostgreSQL"), (w["host_ceiling"], "one instance")]
        limits = [(c, name) for c, name in limits if c is not None]
        w["first"] = min(limits)[1]
        shared = [(c, name) for c, name in limits if name != "one instance"]
        w["first_shared"] = min(shared) if shared else None

    d = settings
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(int(settings["started"])))
    idle_s = idle["seconds"]
    lines = [
        "# Capacity model",
        "",
        f"Written by `{command}` (the whole file: edits are lost at the next run), run started "
        f"{when}, took {took}, on {machine()}; `nproc` {cores}. **Every figure in this file comes from "
        "that one run on that one machine.**",
        "",
        "## How it was measured",
        "",
        f"The run started a Redis {d['redis_version']} (no persistence) and a PostgreSQL "
        f"{d['pg_version'].split()[0]} cluster (PostgreSQL's defaults, fsync on, plus "
        "`pg_stat_statements` with `track_planning`, and `log_connections`) of its own on free "
        "loopback ports, "
        "migrated the cluster, and stopped and removed both at the end; nothing else used "
        "them. One local host (`target/release/evolve-host`) served spin.toml's HTTP routes "
        "(the spin-sdk 6 build) without the Redis trigger and the cron schedules; the mock "
        f"Gemini answered at 0 ms; requests went to {int(d['users']):,} users in turn; "
        "`chat_rate_limit_per_minute=0` and `analysis_every_turns=0`, every other variable "
        "at spin.toml's default (so a cached read records its request metrics one time in "
        "64, a chat turn every time).",
        "",
        f"Each kind ran after a warm-up: wrk with {d['connections']} connections for "
        f"{d['warmup']}, then the measured run of {d['duration']} (two wrk threads); for the "
        f"queue task, a warm-up of {int(d['tasks']) // 10:,} probe tasks, then "
        f"{int(d['tasks']):,} probe tasks enqueued with `POST /admin/queues/probe?count=10000` and drained by one loop of "
        "`POST /admin/queues/drain` until a drain claimed nothing. Before each measured run "
        "`VACUUM ANALYZE` and `CHECKPOINT`; around it (its window) the counters, read just "
        "before and just after:",
        "",
        "- Redis, `INFO all`: `commandstats` calls (the commands a Lua script runs count "
        "too, beside its `EVALSHA`, as Redis counts them; the measurement's own `INFO` is "
        "left out), `total_connections_received` (new connections), "
        "`used_cpu_user + used_cpu_sys`.",
        "- PostgreSQL: `pg_stat_statements` calls in the application's database (top-level "
        "statements, utility statements such as `BEGIN` and the pool's reset on checkout "
        "included); `connection authorized` lines for that database in the server log (new "
        "connections); `pg_stat_activity` rows for that database every 0.2 s during the run "
        "(connections open, and active); CPU: the postmaster's and its live children's "
        "utime+stime from `/proc`, plus the postmaster's cutime+cstime, which holds the "
        "children that exited. So the background processes (checkpointer, WAL writer, "
        "autovacuum) count, and the sampling connection's one backend does too.",
        f"- The host: the evolve-host process's utime+stime from `/proc` (CLK_TCK "
        f"{d['clk_tck']}, so CPU figures from `/proc` have a resolution of "
        f"{1000 / int(d['clk_tck']):.0f} ms per window).",
        "",
        "Per request: a window's delta over the requests wrk completed in it (for the queue, "
        "over the tasks). wrk, the mock Gemini, the host, Redis and PostgreSQL all ran on "
        f"this machine's {cores} cores at once, so the measured requests/s are what this "
        "machine reached with everything on it, not any one component's limit. The last "
        "column is what the rest of the machine used in the window (its user and system time "
        "in `/proc/stat` less the host's, PostgreSQL's, Redis' and the mock Gemini's), in "
        "cores: wrk, the measurement's own tools, and any other process that ran then "
        "(≈ 0: under 0.1 cores, which this difference cannot resolve, as the kernel "
        "accounts the processes' and the machine's CPU apart).",
        "",
        f"With no load, in a window of {idle_s:.1f} s before the kinds ran, Redis spent "
        f"{idle['redis_cpu'] / idle_s * 1000:.1f} ms CPU per second, PostgreSQL "
        f"{idle['pg_cpu'] / idle_s * 1000:.1f} ms/s and the host "
        f"{idle['host_cpu'] / idle_s * 1000:.1f} ms/s; the figures below include such "
        "background work, not taken off.",
        "",
        "## Cost per request",
        "",
        "| kind | requests in the window | requests/s | Redis commands/req | Redis new connections/req | "
        "Redis CPU µs/req | PG statements/req | PG new connections/req | PG connections open (max) | "
        "PG connections active (max) | PG CPU µs/req | host CPU µs/req | rest of the machine, cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        w = k[kind]
        n = w["requests"]
        lines.append(
            f"| {WHAT[kind]} | {n:,} | {w['rate']:,.0f} | {w['redis_cmds']:.2f} | "
            f"{frac(w['redis_connections'] / n)} | {us(w['redis_per'])} | {w['pg_stmts']:.2f} | "
            f"{frac(w['pg_new_connections'] / n)} | {w.get('pg_open_max', 'n/a')} | "
            f"{w.get('pg_active_max', 'n/a')} | {us(w['pg_per'])} | {us(w['host_per'])} | "
            f"{rest(w['rest_cpu'] / w['seconds'])} |"
        )
    notes = []
    for kind in ("profile", "chat", "history"):
        w = k[kind]
        notes.append(
            f"{SHORT[kind]}: p50 {w['p50']:.2f} ms, p99 {w['p99']:.2f} ms, {w['errors']} non-2xx"
        )
    q = k["queue"]["queue"]
    lines += [
        "",
        f"Latency in the measured runs ({d['connections']} connections): " + "; ".join(notes) + ". "
        f"Queue: {int(q['tasks']):,} tasks enqueued in {float(q['enqueue_s']):.2f} s and "
        f"drained in {float(q['drain_s']):.2f} s ({q['drains']} drain calls); requests/s for "
        "the queue is tasks over the two together. The profile reads found the cache warm "
        f"(`x-cache: {d.get('profile_x_cache') or 'n/a'}` on a read after the warm-up); the "
        f"history pages read a chat_history of {int(d['history_rows']):,} rows (the chat "
        f"kind's turns), at most 20 messages a page.",
        "",
        "Besides, in the windows, the machine's interrupt time (irq and softirq in "
        "`/proc/stat`, where the kernel handles the loopback network's packets, counted in "
        "no process) and steal time (CPU the hypervisor gave to something else): "
        + "; ".join(f"{SHORT[kind]} {k[kind]['machine_irq'] / k[kind]['seconds']:.2f} and "
                    f"{k[kind]['machine_steal'] / k[kind]['seconds']:.2f} cores" for kind in KINDS) + ".",
        "",
        "Of that CPU, the share spent in the kernel (system time: system calls, network, "
        "scheduling): " + "; ".join(
            f"{SHORT[kind]}: Redis {share(k[kind]['redis_sys'], k[kind]['redis_cpu'])}, "
            f"PostgreSQL {share(k[kind]['pg_sys'], k[kind]['pg_cpu'])}, "
            f"host {share(k[kind]['host_sys'], k[kind]['host_cpu'])}" for kind in KINDS) + ".",
        "",
        "### Redis commands per request",
        "",
        "| command | " + " | ".join(SHORT[kind] for kind in KINDS) + " |",
        "|---|" + "---:|" * len(KINDS),
    ]
    names = sorted({c for kind in KINDS for c in k[kind]["redis_commands"]},
                   key=lambda c: (-max(k[kind]["redis_commands"].get(c, 0) / k[kind]["requests"] for kind in KINDS), c))
    for c in names:
        cells = []
        for kind in KINDS:
            v = k[kind]["redis_commands"].get(c, 0) / k[kind]["requests"]
            cells.append(frac(v) if v else "")
        name = c.replace("|", "\\|")  # a subcommand, as `xgroup|create`; a bare | would end the cell
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{k[kind]['redis_cmds']:.2f}**" for kind in KINDS) + " |")
    lines += [
        "",
        "### PostgreSQL statements per request",
        "",
        "Statements as `pg_stat_statements` normalises them (constants replaced by `$n`), "
        "with their mean execution and planning times in the window (`total_exec_time`, "
        "`total_plan_time`: wall-clock time inside the executor and the planner, not CPU; "
        "parsing, the protocol and commits are in neither). The pool reset is what the host's "
        "pool sends on every checkout of a connection (`CLOSE ALL`, `SET SESSION "
        "AUTHORIZATION DEFAULT`, `RESET ALL`, `UNLISTEN *`, `SELECT "
        "pg_advisory_unlock_all()`, `DISCARD TEMP`, `DISCARD SEQUENCES`).",
        "",
    ]
    for kind in KINDS:
        w = k[kind]
        top = sorted(w["pg_statements"].values(), key=lambda e: (-e[0], -e[1] - e[2], e[3]))
        if not top:
            lines.append(f"- {SHORT[kind]}: no statement in the window.")
            continue
        lines.append(f"- {SHORT[kind]}: {w['pg_stmts']:.2f} statements/req, of which "
                     f"{w['pg_resets']:.2f} the pool reset; per request {us(w['pg_exec_per'])} µs "
                     f"executing and {us(w['pg_plan_per'])} µs planning, beside {us(w['pg_per'])} µs "
                     f"of PostgreSQL CPU; {len(top)} distinct, the most frequent:")
        for calls, exec_ms, plan_ms, text in top[:10]:
            lines.append(f"  - {calls / w['requests']:.3f}/req, {exec_ms * 1000 / calls:,.1f} µs executing"
                         f" and {plan_ms * 1000 / calls:,.1f} µs planning each: `{sql(text)}`")
    lines += [
        "",
        "### Where PostgreSQL's CPU went",
        "",
        "By process, from the titles PostgreSQL gives them (`postgres: USER DATABASE HOST` "
        "for a connection's backend); a process that exited in the window counts under "
        "`processes that exited`.",
        "",
    ]
    for kind in KINDS:
        w = k[kind]
        total = sum(w["pg_breakdown"].values())
        if not total:
            lines.append(f"- {SHORT[kind]}: no CPU tick in the window.")
            continue
        parts = sorted(w["pg_breakdown"].items(), key=lambda e: -e[1])
        lines.append(f"- {SHORT[kind]}: {total / int(d['clk_tck']):.2f} s in all; "
                     + ", ".join(f"{name} {ticks / total * 100:.0f} %" for name, ticks in parts) + ".")
    lines += [
        "",
        "## Ceilings: the request rate at which each component runs out of CPU",
        "",
        "ceiling = cores ÷ CPU seconds per request, from the figures above: one Redis "
        "executes commands on one thread, so **1 core**; the PostgreSQL primary and one "
        f"instance get this machine's **{cores} cores** (`nproc`). These are CPU-bound "
        "ceilings on this machine from this run: each assumes that component has its cores "
        "to itself and that its CPU per request stays what it was here; they leave out "
        "locks, I/O, network and memory, which may give out earlier. The CPU per request was "
        "measured at the request rates of the first table, below these ceilings; how it "
        "changes nearer them was not measured. No ceiling is given for a server a kind "
        "sends no command or statement to.",
        "",
        "| kind | Redis (1 core), req/s | PostgreSQL primary "
        f"({cores} cores), req/s | one instance ({cores} cores), req/s | runs out first |",
        "|---|---:|---:|---:|---|",
    ]
    for kind in KINDS:
        w = k[kind]
        lines.append(
            f"| {SHORT[kind]} | {rate(w['redis_ceiling'])} | {rate(w['pg_ceiling'])} | "
            f"{rate(w['host_ceiling'])} | {w['first']} |"
        )
    lines += ["", "Instances are stateless and are added side by side, so of the shared "
              "servers the lower ceiling is the service's, however many instances run:", ""]
    for kind in KINDS:
        w = k[kind]
        if w["first_shared"]:
            ceiling, name = w["first_shared"]
            instances = math.ceil(ceiling / w["host_ceiling"])
            reach = "one instance of this machine's size reaches" if instances == 1 else \
                f"{instances} instances of this machine's size reach"
            lines.append(f"- {SHORT[kind]}: {name}, at {rate(ceiling)} req/s, which {reach}.")
    chat = k["chat"]
    lines += [
        "",
        "## Chat turns at 1,000 and 10,000 per second",
        "",
        f"From the chat turn's figures: one instance carries {rate(chat['host_ceiling'])} "
        f"turns/s, Redis {rate(chat['redis_ceiling'])}, the PostgreSQL primary "
        f"{rate(chat['pg_ceiling'])}.",
        "",
        "| turns/s | instances (ceil(rate ÷ one instance's ceiling)) | Redis CPU needed | "
        f"one Redis's CPU carries it | PostgreSQL CPU needed | one {cores}-core primary's CPU carries it |",
        "|---:|---:|---:|---|---:|---|",
    ]
    for target in (1_000, 10_000):
        instances = math.ceil(target / chat["host_ceiling"])
        redis_cores = target * chat["redis_per"]
        pg_cores = target * chat["pg_per"]
        lines.append(
            f"| {target:,} | {instances} | {redis_cores:.2f} cores | "
            f"{'yes' if redis_cores < 1 else 'no'} ({redis_cores * 100:.0f} % of its one core) | "
            f"{pg_cores:.2f} cores | {'yes' if pg_cores < cores else 'no'} "
            f"({pg_cores / cores * 100:.0f} % of {cores} cores) |"
        )
    pool = pg_pool_size()
    if pool:
        lines += [
            "",
            "That is CPU only. A chat turn gives its PostgreSQL connection back to the pool "
            "while it waits on the LLM and takes one again for its INSERT "
            "(`components/chat/src/turn.rs`; the second checkout is the second pool reset in "
            "its statements), so the local host's pool of at most "
            f"{pool} connections per address (`PG_POOL_SIZE` in `tests/host/src/services.rs`) "
            "bounds the turns running statements at once, not the turns waiting on the "
            "model. By Little's law (turns in flight = rate × LLM latency), at an LLM latency "
            "of 1 s, which this run did not have (the mock answered at 0 ms), 1,000 turns/s "
            "are about 1,000 turns in flight, holding component instances and memory; the "
            "connections they use follow the statements' time, as in this run's chat window.",
            "",
            f"This run's cluster allowed {settings.get('pg_max_connections', 'n/a')} "
            "connections (`max_connections`).",
        ]
    lines += ["", "## What gives out first, and what then", ""]

    def first_for(server):
        kinds = [SHORT[kind] for kind in KINDS if k[kind]["first_shared"] and k[kind]["first_shared"][1] == server]
        return f" (the first shared server to run out, for: {', '.join(kinds)})" if kinds else ""

    firsts = {k[kind]["first"] for kind in KINDS}
    if "one instance" in firsts:
        kinds = ", ".join(SHORT[kind] for kind in KINDS if k[kind]["first"] == "one instance")
        lines.append(
            f"- **One instance** ran out first for: {kinds}. Instances share all state "
            "through Redis and PostgreSQL, so more of them raise that ceiling until a "
            "shared server's is reached (the list above says which and where)."
        )
    lines += [
        f"- **PostgreSQL**{first_for('PostgreSQL')}. The application sends every statement "
        "to one `pg_url`, the primary; it has no setting for a read replica, so history "
        "pages and profile loads cannot be moved to one without a change to the "
        "application. Within what exists: keep profile reads on the cache (in this run a "
        f"cached read sent {k['profile']['pg_stmts']:.2f} statements per read), and a "
        "primary with more cores. Planning in this run (wall-clock in the planner, from "
        f"`pg_stat_statements`): {us(chat['pg_plan_per'])} µs per chat turn and "
        f"{us(k['history']['pg_plan_per'])} µs per history page, beside "
        f"{us(chat['pg_per'])} and {us(k['history']['pg_per'])} µs of PostgreSQL CPU. A chat "
        "turn keeps its pooled connection from its history read through the LLM call to "
        "its INSERT, so the connections in use grow with the LLM's latency (see the chat "
        "turns section).",
        f"- **Redis**{first_for('Redis')}. It executes commands on one thread, so its "
        "ceiling does not grow with cores. The README's high-availability setups (replicas with automatic failover "
        "behind one endpoint, or Sentinel behind a proxy) add availability, not command "
        "throughput: Spin's Redis client speaks to one endpoint, the primary. Redis "
        "Cluster works only behind a slot-routing proxy, and every Lua script keeps its "
        "keys in one hash slot; the keys every chat turn's breaker scripts touch "
        "(`evolve:{breaker:llm}:state`), the queue's (`{queue}`) and the request metrics' "
        "hash (`evolve:metrics`) each live on one shard however many there are, while the "
        "per-user keys (cache entries, rate limits) spread.",
        "",
        "## What this model leaves out",
        "",
        "- **The LLM.** Gemini was mocked at 0 ms, so these figures are the service's own "
        "cost, not Gemini's latency or quota. An instance waiting on the LLM spends "
        "memory and concurrency, not CPU: by Little's law, turns in flight = rate × LLM "
        "latency, so at 1 s of LLM latency 1,000 turns/s means about 1,000 turns in flight "
        "and 10,000 turns/s about 10,000, across the instances (Spin 4 serves up to 16 "
        "requests at once with one WASIp3 component instance), none holding a PostgreSQL "
        f"connection meanwhile (see the chat turns section). In this run's chat window, at 0 ms and with {d['connections']} wrk "
        f"connections, PostgreSQL connections peaked at {chat.get('pg_active_max', 'n/a')} "
        f"active and {chat.get('pg_open_max', 'n/a')} open.",
        "- **Work a turn causes later.** `analysis_every_turns` was 0: the dialog analysis "
        "spin.toml enqueues every 10 turns by default (an LLM call and a profile update by "
        "the worker) is not in the chat turn's cost, nor is any scheduled job.",
        "- **Redis persistence.** This Redis kept nothing on disk; the README advises "
        "`appendonly yes` on the primary, whose writes this run did not measure.",
        "- **Spin itself.** The instance was the local host, which connects to Redis and "
        "PostgreSQL as Spin does (a new Redis connection per outbound `open`, a pool per "
        "PostgreSQL address); its CPU per request is the host's, not a Spin's.",
        "",
    ]
    with open("docs/capacity.md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "cpu":
        cpu(args[0], int(args[1]), int(args[2]))
    elif command == "queue":
        queue(int(args[0]), args[1], int(args[2]))
    elif command == "check-queue":
        check_queue(int(args[0]), args[1], int(args[2]))
    elif command == "report":
        report(*args)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
