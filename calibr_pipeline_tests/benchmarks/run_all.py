"""``make bench``: every benchmark, one after the other; exit status 1 if any missed its goal.

    python -m calibr_pipeline_tests.benchmarks.run_all [--only NAME ...] [--warehouse-url URL] [--seed N] [--date YYYY-MM-DD]

The options are passed to each benchmark. Without ``--warehouse-url`` each benchmark gets
its own fresh SQLite warehouse; with one, they all write their (differently named) bench
tenants into that warehouse. ``--only`` (repeatable, or comma-separated) runs a subset,
by name with or without the ``bench_`` prefix (``--only preview --only rate_floor``).
Run a single benchmark with its own module for its options.
"""

from __future__ import annotations

import argparse
import sys
import time

from calibr_pipeline_tests.benchmarks import (
    bench_apply_latency,
    bench_apply_memory,
    bench_copilot,
    bench_catalog_sync,
    bench_error_rate,
    bench_events,
    bench_preview,
    bench_rate_floor,
    bench_scrape,
)
from calibr_pipeline_tests.benchmarks._common import add_common_arguments, verdict

BENCHMARKS = (
    ("bench_scrape", bench_scrape.run),
    ("bench_error_rate", bench_error_rate.run),
    ("bench_preview", bench_preview.run),
    ("bench_apply_latency", bench_apply_latency.run),
    ("bench_rate_floor", bench_rate_floor.run),
    ("bench_apply_memory", bench_apply_memory.run),
    ("bench_copilot", bench_copilot.run),
    ("bench_catalog_sync", bench_catalog_sync.run),
    ("bench_events", bench_events.run),
)


def selected(only: list[str] | None) -> list[tuple[str, object]]:
    if not only:
        return list(BENCHMARKS)
    names = {n.strip() for item in only for n in item.split(",") if n.strip()}
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in names}
    unknown = sorted(wanted - {name for name, _ in BENCHMARKS})
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(name for name, _ in BENCHMARKS)}")
    return [(name, run) for name, run in BENCHMARKS if name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable; e.g. preview, bench_rate_floor)")
    args = parser.parse_args(argv)
    benchmarks = selected(args.only)
    common: list[str] = ["--seed", str(args.seed)]
    if args.warehouse_url:
        common += ["--warehouse-url", args.warehouse_url]
    if args.date:
        common += ["--date", args.date]
    if args.keep_warehouse:
        common.append("--keep-warehouse")
    results: list[tuple[str, bool, float]] = []
    for name, run in benchmarks:
        t0 = time.perf_counter()
        try:
            passed = run(common)
        except Exception as exc:  # noqa: BLE001 - report and carry on with the next benchmark
            import traceback

            traceback.print_exc()
            print(f"{name}: crashed: {exc}")
            passed = False
        results.append((name, passed, time.perf_counter() - t0))
        print(flush=True)
    print("=== summary ===")
    for name, passed, seconds in results:
        print(f"  {name:<20} {verdict(passed)}  ({seconds:.0f} s including setup)")
    return 0 if all(passed for _, passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
