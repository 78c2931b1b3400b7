"""Writes the `retention` section of docs/benchmarks.md from scripts/bench.d/retention.sh's
results: RESULTS_DIR/retention.txt (name=value lines), the cleanup job's run record
(cleanup-record.json) and the plan of a history read (explain-history.txt).

Usage: retention.py RESULTS_DIR COMMAND
The section is replaced between <!-- bench:retention --> and <!-- /bench:retention -->.
"""
import json
import os
import re
import sys
import time

# The machine description is report.py's; import it without leaving bytecode behind.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import machine  # noqa: E402


def mib(value):
    return f"{int(value) / (1024 * 1024):,.0f} MiB"


def ms(value):
    value = float(value)
    return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.1f} ms"


def read_row(r, name, table, bound):
    return (f"| {table} | {bound} | {float(r[f'read_{name}_tps']):,.0f} | "
            f"{float(r[f'read_{name}_latency_ms']):.3f} ms |")


def main():
    results, command = sys.argv[1:3]
    r = {}
    for line in open(os.path.join(results, "retention.txt")):
        name, _, value = line.rstrip("\n").partition("=")
        r[name] = value
    job = json.load(open(os.path.join(results, "cleanup-record.json")))
    assert job["outcome"] == "ok", job
    explain = open(os.path.join(results, "explain-history.txt")).read()
    scanned = sorted(set(re.findall(r"on (chat_history_\w+)", explain)))
    planning = re.search(r"Planning Time: ([\d.]+) ms", explain).group(1)
    execution = re.search(r"Execution Time: ([\d.]+) ms", explain).group(1)
    finished = time.gmtime(os.path.getmtime(os.path.join(results, "retention.txt")))

    cutoff_day = int(re.search(r"cut-off \d{4}-\d{2}-(\d{2})T", job["detail"]).group(1))
    rows = int(r["rows"])
    partitioned_removed = rows - int(r["partitioned_rows_left"])
    flat_removed = int(r["flat_deleted"])
    job_ms = float(job["duration_ms"])
    flat_ms = float(r["flat_delete_ms"])
    dropped = re.findall(r"chat_history_y\d{4}m\d{2}", job["detail"].split("dropped", 1)[-1].split(";")[0]) \
        if "dropped" in job["detail"] else []

    lines = [
        "<!-- bench:retention -->",
        f"## Retention and history reads at {rows:,} rows",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', finished)} on {machine()}; "
        f"PostgreSQL {r['pg_version']} (the test instance: fsync off), loopback.",
        f"Command: `{command}`.",
        "",
        f"{rows:,} messages of 10,000 users spread evenly over the last "
        f"{r['months']} months in a scratch database (generated with "
        f"generate_series in {ms(r['generate_ms'])}), partitioned by month as the schema is "
        f"({r['partitions']} partitions), and an unpartitioned copy of the same rows with the "
        f"same indexes (primary key, BRIN on created_at; copied in {ms(r['copy_ms'])}). "
        f"Retention keeps {r['retention_days']} days.",
        "",
        "| | partitioned: the cleanup job | unpartitioned: one DELETE |",
        "|---|---:|---:|",
        f"| rows removed | {partitioned_removed:,} | {flat_removed:,} |",
        f"| time to remove them | **{ms(job_ms)}** | **{ms(flat_ms)}** |",
        f"| time relative to the job | 1 | {flat_ms / job_ms:,.0f} x |",
        f"| size before | {mib(r['partitioned_bytes_before'])} | {mib(r['flat_bytes_before'])} |",
        f"| size right after | {mib(r['partitioned_bytes_after'])} | {mib(r['flat_bytes_after'])} |",
        f"| VACUUM afterwards | {ms(r['partitioned_vacuum_ms'])} | {ms(r['flat_vacuum_ms'])} |",
        f"| size after VACUUM | {mib(r['partitioned_bytes_vacuumed'])} | "
        f"{mib(r['flat_bytes_vacuumed'])} |",
        "",
        f"The job dropped {len(dropped)} month partitions ({', '.join(dropped) or 'none'}) and "
        f"deleted the boundary month's expired rows in batches of {int(r['batch']):,}: {job['rows_affected']:,} "
        "rows by statement. How much of the boundary month is expired depends on the day "
        f"of the run (here the cut-off fell on day {cutoff_day} of its month: the later, the "
        "more the batches delete and the closer the two columns). The job's record: "
        f"`{job['detail']}`.",
        "",
        "A user's history page (the chat API's first-page query: newest 50 messages within "
        "retention), pgbench with 4 clients for 5 s, random users, in the extended protocol "
        "(parameters bound, a new plan per query, as the application's driver does):",
        "",
        "| table | retention bound | pages/s | average latency |",
        "|---|---|---:|---:|",
        read_row(r, "partitioned", f"partitioned, {r['partitions']} partitions, {rows:,} rows",
                 f"`now() - {r['retention_days']} days` in SQL"),
        read_row(r, "partitioned_constant", "same",
                 "the cut-off as a bound parameter (the chat SQL's `to_timestamp($2 / 1000.0)`)"),
        read_row(r, "flat", f"unpartitioned, {rows:,} rows", f"`now() - {r['retention_days']} days`"),
        read_row(r, "partitioned_after",
                 f"partitioned after the cleanup, {r['partitions_after']} partitions, "
                 f"{int(r['partitioned_rows_left']):,} rows", f"`now() - {r['retention_days']} days`"),
        "",
        "On the partitioned table the query reads only the partitions within retention "
        f"({', '.join(scanned) or 'n/a'}), but with `now()` in the bound PostgreSQL prunes "
        "them only when the query starts: the planner still plans every partition. One "
        f"user's page before the cleanup: planning {planning} ms, execution {execution} ms "
        "(EXPLAIN ANALYZE). With the cut-off bound as a parameter the planner prunes first "
        "(second row), which is why the chat API computes the cut-off and binds it; the cleanup itself, by keeping only the partitions within retention, "
        "keeps the planning small (last row).",
        "<!-- /bench:retention -->",
    ]
    block = "\n".join(lines)
    path = "docs/benchmarks.md"
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(r"<!-- bench:retention -->.*?<!-- /bench:retention -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    open(path, "w").write(text)
    print(block)


if __name__ == "__main__":
    main()
