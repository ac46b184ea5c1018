"""``make bench``: every benchmark, one after the other; exit status 1 if any missed its goal.

    python -m calibr_pipeline_tests.benchmarks.run_all [--warehouse-url URL] [--seed N] [--date YYYY-MM-DD]

The options are passed to each benchmark. Without ``--warehouse-url`` each benchmark gets
its own fresh SQLite warehouse; with one, both write their (differently named) bench
tenants into that warehouse. Run a single benchmark with its own module for its options.
"""

from __future__ import annotations

import argparse
import sys
import time

from calibr_pipeline_tests.benchmarks import bench_error_rate, bench_scrape
from calibr_pipeline_tests.benchmarks._common import add_common_arguments, verdict

BENCHMARKS = (("bench_scrape", bench_scrape.run), ("bench_error_rate", bench_error_rate.run))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    common: list[str] = ["--seed", str(args.seed)]
    if args.warehouse_url:
        common += ["--warehouse-url", args.warehouse_url]
    if args.date:
        common += ["--date", args.date]
    if args.keep_warehouse:
        common.append("--keep-warehouse")
    results: list[tuple[str, bool, float]] = []
    for name, run in BENCHMARKS:
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
        print(f"  {name:<17} {verdict(passed)}  ({seconds:.0f} s including setup)")
    return 0 if all(passed for _, passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
