"""Benchmark: scaling curves — wall time and peak memory per step at 1k / 10k / 100k SKUs.

    python -m calibr_pipeline_tests.benchmarks.bench_scale [--sizes 1000 10000 100000] [--apply-sizes 1000 10000]

Each (step, size) runs in a fresh child process, so its peak RSS (``ru_maxrss`` from
``wait4``) is that step's own. Steps, on the embedded SQLite warehouse:

* ``catalog``: storing a catalog of N variants (4 per product) in the warehouse
  (``upsert_catalog``, what ``sync_shop`` does after reading the Admin API; the Admin API
  read itself is rate-limited and measured by bench_rate_floor/--sync-via-api);
* ``preview``: ``compute_targets`` of a competitor rule over N SKUs, 30 % of them with 3
  competitor listings (bench_preview's data);
* ``apply-sync`` / ``apply-bulk``: ``apply_run`` (mode forced) of N price changes against the sandbox shop on the Plus
  bucket with 50 ms per request, writes in flight chosen by the plan (bench_rate_floor);
  the sandbox runs inside the child, so its memory is included. 100k is off by default
  (about 4 minutes of rate-limit floor alone): pass ``--apply-sizes 1000 10000 100000``.

Scraping is not part of this curve (bench_scrape measures it). The bulk apply's time is the
sandbox's simulated processing (``line_seconds`` per JSONL line) plus the write-time reads. The growth factor per 10× should be close to 10 or below.
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

STEPS = ("catalog", "preview", "apply-sync", "apply-bulk")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000], help="SKU counts for catalog and preview")
    parser.add_argument("--apply-sizes", type=int, nargs="+", default=[1000, 10_000], help="SKU counts for the synchronous apply")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="sandbox latency per Admin API request (apply)")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "SIZE"), help=argparse.SUPPRESS)
    return parser


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


def _child(step: str, size: int, latency_ms: float) -> None:
    seconds = {"catalog": lambda: _catalog(size), "preview": lambda: _preview(size), "apply-sync": lambda: _apply_sync(size, latency_ms),
               "apply-bulk": lambda: _apply_sync(size, latency_ms, "bulk")}[step]()
    print(json.dumps({"seconds": seconds}))


# -- the curve (in the parent) ---------------------------------------------------------------------


def _measure_with_rss(step: str, size: int, latency_ms: float) -> tuple[float, float]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: exec a fresh interpreter for exactly one step
        os.close(read_fd)
        os.dup2(write_fd, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.execv(sys.executable, [sys.executable, "-m", "calibr_pipeline_tests.benchmarks.bench_scale", "--child", step, str(size),
                                  "--latency-ms", str(latency_ms)])
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        output = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{step} at {size} failed (exit {os.waitstatus_to_exitcode(status)}); run it alone: "
                           f"python -m calibr_pipeline_tests.benchmarks.bench_scale --child {step} {size}")
    seconds = json.loads(output.strip().splitlines()[-1])["seconds"]
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), args.latency_ms)
        return True
    print(f"=== bench_scale: wall time and peak RSS per step; sizes {args.sizes} (apply {args.apply_sizes}, "
          f"{args.latency_ms:g} ms per Admin API request, Plus bucket) ===")
    print(f"{'step':<12} {'SKUs':>8} {'wall s':>9} {'peak RSS MiB':>13} {'× per 10× (time)':>17} {'× per 10× (RSS)':>16}")
    ok = True
    for step in STEPS:
        sizes = args.apply_sizes if step.startswith("apply") else args.sizes
        previous: tuple[int, float, float] | None = None
        for size in sizes:
            try:
                seconds, rss = _measure_with_rss(step, size, args.latency_ms)
            except RuntimeError as exc:
                print(f"{step:<12} {size:>8}  FAILED: {exc}")
                ok = False
                continue
            growth_t = growth_m = ""
            if previous is not None and previous[0] * 10 == size:
                growth_t = f"{seconds / previous[1]:.1f}" if previous[1] else "n/a"
                growth_m = f"{rss / previous[2]:.1f}" if previous[2] else "n/a"
            print(f"{step:<12} {size:>8} {seconds:>9.2f} {rss:>13.0f} {growth_t:>17} {growth_m:>16}", flush=True)
            previous = (size, seconds, rss)
    return ok


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
