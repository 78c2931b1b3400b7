"""Reads wrk and redis-benchmark outputs and writes one section of docs/benchmarks.md.

Usage: report.py SECTION TITLE RESULTS_DIR COMMAND < runs.tsv
runs.tsv lines: name<TAB>kind(wrk|redis)<TAB>output-file<TAB>description
The section is replaced between <!-- bench:SECTION --> and <!-- /bench:SECTION -->.
"""
import os
import platform
import re
import subprocess
import sys
import time


def wrk(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        lat[pct] = float(value) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return rps, lat.get("50"), lat.get("99"), int(errors.group(1)) if errors else 0


def redis(path):
    text = open(path).read()
    rps = float(re.search(r"throughput summary: ([\d.]+) requests per second", text).group(1))
    # The latency summary lists avg, min, p50, p95, p99, max (msec).
    summary = re.search(
        r"avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", text
    )
    return rps, float(summary.group(3)), float(summary.group(5)), 0


def machine():
    cpu = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = ""
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) // (1024 * 1024)} GiB"
    return f"{os.cpu_count()} cores ({cpu}), {mem}, {platform.system()} {platform.release()}"


def main():
    section, title, results, command = sys.argv[1:5]
    rows = []
    baseline = None
    for line in sys.stdin:
        name, kind, path, description = line.rstrip("\n").split("\t")
        rps, p50, p99, errors = (wrk if kind == "wrk" else redis)(os.path.join(results, path))
        if baseline is None:
            baseline = rps
        rows.append((name, description, rps, p50, p99, errors))
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
    lines = [
        f"<!-- bench:{section} -->",
        f"## {title}",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"Command: `{command}`. Load generator and servers share the machine.",
        "",
        "| run | what | requests/s | vs first row | p50 ms | p99 ms | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, description, rps, p50, p99, errors in rows:
        lines.append(
            f"| {name} | {description} | {rps:,.0f} | {rps / baseline * 100:.0f} % | {fmt(p50)} | {fmt(p99)} | {errors} |"
        )
    lines.append(f"<!-- /bench:{section} -->")
    write_section(section, "\n".join(lines))


def write_section(section, block):
    """Replaces the section between its markers in docs/benchmarks.md (or appends it)."""
    path = "docs/benchmarks.md"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{section} -->.*?<!-- /bench:{section} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)
    print(block)


if __name__ == "__main__":
    main()
