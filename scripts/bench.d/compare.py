"""Writes the section `compare` of docs/benchmarks.md: the same components under the same
load on the local host and on real Spin, from the outputs of one `scripts/bench` run.

Usage: compare.py TITLE RESULTS_DIR COMMAND < pairs.tsv
pairs.tsv lines: name<TAB>host output<TAB>Spin output<TAB>description
The first line is each side's baseline (the do-nothing component).
"""
import os
import sys
import time

from report import machine, write_section, wrk


def main():
    title, results, command = sys.argv[1:4]
    rows = []
    for line in sys.stdin:
        name, host_file, spin_file, description = line.rstrip("\n").split("\t")
        host = wrk(os.path.join(results, host_file))
        spin = wrk(os.path.join(results, spin_file))
        rows.append((name, description, host, spin))
    host_base, spin_base = rows[0][2][0], rows[0][3][0]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
    lines = [
        "<!-- bench:compare -->",
        f"## {title}",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"Command: `{command}`; the figures are the chat and Spin tables' rows of this run.",
        "",
        "| run | what | host req/s | host vs its noop | Spin req/s | Spin vs its noop "
        "| host / Spin | host p99 ms | Spin p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, description, host, spin in rows:
        lines.append(
            f"| {name} | {description} | {host[0]:,.0f} | {host[0] / host_base * 100:.0f} % "
            f"| {spin[0]:,.0f} | {spin[0] / spin_base * 100:.0f} % | {host[0] / spin[0]:.2f} "
            f"| {fmt(host[2])} | {fmt(spin[2])} |"
        )
    lines.append("<!-- /bench:compare -->")
    write_section("compare", "\n".join(lines))


if __name__ == "__main__":
    main()
