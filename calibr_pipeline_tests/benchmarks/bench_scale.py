"""Benchmark: scaling curves — wall time and peak memory per step at 1k / 10k / 100k SKUs (and listings).

    python -m calibr_pipeline_tests.benchmarks.bench_scale [--quick] [--steps catalog preview ...]
        [--sizes 1000 10000 100000] [--apply-sizes 1000 10000] [--scrape-sizes 1000 10000]
        [--analytics-sizes 1000 10000 100000] [--analytics-days 7]

Each (step, size) runs in a fresh child process, so its peak RSS (``ru_maxrss`` from
``wait4``: the child's, or its largest reaped descendant's, e.g. dbt) is that step's own.
Steps, on the embedded SQLite warehouse:

* ``catalog``: storing a catalog of N variants (4 per product) in the warehouse
  (``upsert_catalog``, what ``sync_shop`` does after reading the Admin API; the Admin API
  read itself is rate-limited and measured by bench_rate_floor/--sync-via-api);
* ``scrape``: N competitor listings scraped, normalized and positioned against the sandbox
  storefronts (bench_scrape's timed section: 4 tenants × 4 competitors, all markup kinds;
  setup not timed). The sandbox runs inside the child, so its memory is included. 100k
  listings are off by default (9 minutes in all, 3.5 of them timed, on the shared 2-core
  machine): pass ``--scrape-sizes 1000 10000 100000``;
* ``preview``: ``compute_targets`` of a competitor rule over N SKUs, 30 % of them with 3
  competitor listings (bench_preview's data);
* ``apply-sync`` / ``apply-bulk``: ``apply_run`` (mode forced) of N price changes against the sandbox shop on the Plus
  bucket with 50 ms per request, writes in flight chosen by the plan (bench_rate_floor);
  the sandbox runs inside the child, so its memory is included. 100k is off by default
  (about 4 minutes of rate-limit floor alone): pass ``--apply-sizes 1000 10000 100000``;
* ``analytics``: bench_analytics at N SKUs, smaller: one tenant, ``--analytics-days`` days
  (7) of sandbox orders at demand scale 0.05 (orders grow with the SKUs: ~30 a day per
  1,000 SKUs), backfilled through the Admin API, then ``dbt build`` of the analytics models;
  the wall time is backfill + dbt build, both printed.

``--quick`` measures 1k and 10k only (every step), about 4 minutes;
the default run took 18 minutes on the shared 2-core machine (12 of them analytics at 100k).

The growth factor per 10× should be close to 10 or below; the bulk apply's time is the
sandbox's simulated processing (``line_seconds`` per JSONL line) plus the write-time reads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time

STEPS = ("catalog", "scrape", "preview", "apply-sync", "apply-bulk", "analytics")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="SKU counts for catalog and preview (default 1000 10000 100000)")
    parser.add_argument("--apply-sizes", type=int, nargs="+", default=None, help="SKU counts for the apply steps (default 1000 10000)")
    parser.add_argument("--scrape-sizes", type=int, nargs="+", default=None, help="listings for the scrape step (default 1000 10000)")
    parser.add_argument("--analytics-sizes", type=int, nargs="+", default=None, help="SKU counts for the analytics step (default 1000 10000 100000)")
    parser.add_argument("--analytics-days", type=int, default=7, help="days of orders in the analytics step (default 7)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS), help="steps to measure (default all)")
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, for every step (about 4 minutes)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="sandbox latency per Admin API request (apply)")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "SIZE"), help=argparse.SUPPRESS)
    return parser


def _sizes(args: argparse.Namespace) -> dict[str, list[int]]:
    full, small = [1000, 10_000, 100_000], [1000, 10_000]
    default = small if args.quick else full
    return {
        "catalog": args.sizes or default,
        "preview": args.sizes or default,
        "scrape": args.scrape_sizes or small,
        "apply-sync": args.apply_sizes or small,
        "apply-bulk": args.apply_sizes or small,
        "analytics": args.analytics_sizes or default,
    }


# -- one measurement (in the child) ---------------------------------------------------------------


def _fresh_warehouse() -> str:
    from calibr_pipeline.warehouse.engine import upgrade_to_head

    url = f"sqlite:///{tempfile.mkdtemp(prefix='calibr-bench-scale-')}/warehouse.db"
    upgrade_to_head(url)
    return url


def _catalog(size: int) -> float:
    from calibr_pipeline.warehouse.catalog_store import upsert_catalog
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop
    from calibr_pipeline_tests.benchmarks.bench_rate_floor import build_catalog

    url = _fresh_warehouse()
    catalog = build_catalog(-(-size // 4), 4)[:size]
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "scale", "Scale")
        project = get_or_create_project(session, tenant, "scale", name="Scale", currency="USD")
        shop = upsert_shop(session, project, "main", platform="shopify", admin_endpoint="https://scale.example/admin/api/2025-01/graphql.json",
                           api_version="2025-01", access_token="shpat_scale", rate_limit_preset="plus", currency="USD")
        session.flush()
        shop_id = shop.id
    from calibr_pipeline.warehouse.models import Shop

    t0 = time.perf_counter()
    with session_scope(url) as session:
        upsert_catalog(session, session.get(Shop, shop_id), catalog)
    return time.perf_counter() - t0


def _preview(size: int) -> float:
    from calibr_pipeline.services.rule_runs import compute_targets, create_run, save_rule
    from calibr_pipeline.warehouse.engine import session_scope
    from calibr_pipeline_tests.benchmarks.bench_preview import RULE, TENANT, seed

    url = _fresh_warehouse()
    seed(url, n_skus=size, coverage=0.3, n_competitors=3, seed_value=0)
    with session_scope(url) as session:
        save_rule(session, project_slug=TENANT, definition=RULE, actor="bench")
        run_id = create_run(session, project_slug=TENANT, rule_name=RULE["name"], actor="bench").id
    t0 = time.perf_counter()
    with session_scope(url) as session:
        compute_targets(session, run_id, preset="plus")
    return time.perf_counter() - t0


def _apply_sync(size: int, latency_ms: float, mode: str = "sync") -> float:
    from calibr_pipeline_tests.benchmarks import bench_rate_floor

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        passed_correctness = bench_rate_floor.run(["--products", str(-(-size // 4)), "--preset", "plus", "--latency-ms", str(latency_ms), "--mode", mode])
    text = out.getvalue()
    match = re.search(r"wall time, write phase:\s+([0-9.]+) s", text)
    if match is None or "every variant written once and at its target price: PASS" not in text:
        raise RuntimeError(f"apply did not complete correctly (passed={passed_correctness}):\n{text[-2000:]}")
    return float(match.group(1))


def _scrape(size: int) -> tuple[float, str]:
    from calibr_pipeline_tests.benchmarks import bench_scrape

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench_scrape.run(["--listings", str(size), "--goal", "1e9"])
    text = out.getvalue()
    match = re.search(r"wall time \(timed\):\s+([0-9.]+) s", text)
    if match is None or "every listing priced and every price equal to the sandbox's: PASS" not in text:
        raise RuntimeError(f"scrape did not complete correctly:\n{text[-2000:]}")
    share = re.search(r"\n    scrape\s+([0-9.]+) s", text)
    return float(match.group(1)), f"fetch+extract {float(share.group(1)):.1f} s" if share else ""


def _analytics(size: int, days: int) -> tuple[float, str]:
    from calibr_pipeline_tests.benchmarks import bench_analytics

    args = argparse.Namespace(skus=size, days=days, tenants=1, demand_scale=0.05, seed=7, latency_queries=5, warehouse_url="")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = bench_analytics.run(args)
    if not result.get("dbt_build_ok"):
        raise RuntimeError(f"analytics: dbt build failed:\n{out.getvalue()[-2000:]}")
    return (result["backfill_seconds"] + result["dbt_build_seconds"],
            f"{result['orders']} orders: backfill {result['backfill_seconds']} s + dbt build {result['dbt_build_seconds']} s")


def _child(step: str, size: int, latency_ms: float, analytics_days: int) -> None:
    measured = {"catalog": lambda: _catalog(size), "scrape": lambda: _scrape(size), "preview": lambda: _preview(size),
                "apply-sync": lambda: _apply_sync(size, latency_ms), "apply-bulk": lambda: _apply_sync(size, latency_ms, "bulk"),
                "analytics": lambda: _analytics(size, analytics_days)}[step]()
    seconds, detail = measured if isinstance(measured, tuple) else (measured, "")
    print(json.dumps({"seconds": seconds, "detail": detail}))


# -- the curve (in the parent) ---------------------------------------------------------------------


def _measure_with_rss(step: str, size: int, latency_ms: float, analytics_days: int) -> tuple[float, float, str]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: exec a fresh interpreter for exactly one step
        os.close(read_fd)
        os.dup2(write_fd, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.execv(sys.executable, [sys.executable, "-m", "calibr_pipeline_tests.benchmarks.bench_scale", "--child", step, str(size),
                                  "--latency-ms", str(latency_ms), "--analytics-days", str(analytics_days)])
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        output = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{step} at {size} failed (exit {os.waitstatus_to_exitcode(status)}); run it alone: "
                           f"python -m calibr_pipeline_tests.benchmarks.bench_scale --child {step} {size}")
    result = json.loads(output.strip().splitlines()[-1])
    return result["seconds"], usage.ru_maxrss / 1024, result.get("detail", "")  # Linux reports KiB


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), args.latency_ms, args.analytics_days)
        return True
    sizes = _sizes(args)
    print(f"=== bench_scale: wall time and peak RSS per step; sizes {', '.join(f'{s} {sizes[s]}' for s in args.steps)} "
          f"(apply: {args.latency_ms:g} ms per Admin API request, Plus bucket; analytics: {args.analytics_days} days) ===")
    print(f"{'step':<12} {'size':>8} {'wall s':>9} {'peak RSS MiB':>13} {'× per 10× (time)':>17} {'× per 10× (RSS)':>16} {'load':>5}  detail")
    ok = True
    for step in STEPS:
        if step not in args.steps:
            continue
        previous: tuple[int, float, float] | None = None
        for size in sizes[step]:
            try:
                seconds, rss, detail = _measure_with_rss(step, size, args.latency_ms, args.analytics_days)
            except RuntimeError as exc:
                print(f"{step:<12} {size:>8}  FAILED: {exc}")
                ok = False
                continue
            growth_t = growth_m = ""
            if previous is not None and previous[0] * 10 == size:
                growth_t = f"{seconds / previous[1]:.1f}" if previous[1] else "n/a"
                growth_m = f"{rss / previous[2]:.1f}" if previous[2] else "n/a"
            print(f"{step:<12} {size:>8} {seconds:>9.2f} {rss:>13.0f} {growth_t:>17} {growth_m:>16} {os.getloadavg()[0]:>5.1f}  {detail}", flush=True)
            previous = (size, seconds, rss)
    return ok


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
