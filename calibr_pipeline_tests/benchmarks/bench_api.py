"""Benchmark: HTTP API latency under load (goal: p95 < 100 ms per endpoint).

    python -m calibr_pipeline_tests.benchmarks.bench_api [--backend sqlite|postgres|both] [--clients 20] [--seconds 30] [--targets 100000]

Seeds one tenant with ``--targets`` variants and one rule run with a target per variant
(bulk Core inserts), 300 more runs and 20,000 audit events; starts ``calibr api`` in its own
process (uvicorn, one worker) and drives it with ``--clients`` threads for ``--seconds``,
each cycling through ``GET /api/v1/runs``, ``GET /api/v1/runs/{id}/targets`` (a page of 100
at a random position among the 100,000) and ``GET /api/v1/audit`` (a page of 100). Prints
p50/p95/p99 per endpoint and the throughput. PostgreSQL uses a throw-away database on
``CALIBR_TEST_POSTGRES_URL`` (default postgresql+psycopg2://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import requests
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from calibr_pipeline.services.api_tokens import create_token
from calibr_pipeline.services.audit import encode_cursor
from calibr_pipeline.warehouse.engine import get_engine, session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import EventLog, Product, RuleRun, RuleTarget, Variant
from calibr_pipeline.warehouse.tenancy import get_or_create_project, get_or_create_tenant, upsert_shop

GOAL_P95_MS = 100.0
PG_ADMIN = os.environ.get("CALIBR_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def seed(url: str, n_targets: int) -> tuple[str, str, int, int]:
    """Returns (token, big run id, first target id, last target id)."""
    now = datetime.now(timezone.utc)
    with session_scope(url) as session:
        tenant = get_or_create_tenant(session, "bench-api")
        project = get_or_create_project(session, tenant, "bench-api-store", currency="USD")
        shop = upsert_shop(session, project, "main", platform="csv", currency="USD")
        token = create_token(session, tenant_slug=tenant.slug, scope="read", actor="bench").token
        tenant_id, project_id, shop_id = tenant.id, project.id, shop.id
    engine = get_engine(url)
    with engine.begin() as connection:
        products = [dict(shop_id=shop_id, project_id=project_id, external_id=f"gid://shopify/Product/{i}", title=f"P{i}", tags=[], updated_at=now)
                    for i in range(n_targets // 4 + 1)]
        connection.execute(insert(Product), products)
        product_ids = connection.execute(select(Product.id).where(Product.project_id == project_id).order_by(Product.id)).scalars().all()
        variants = [dict(product_id=product_ids[i // 4], shop_id=shop_id, project_id=project_id, external_id=f"gid://shopify/ProductVariant/{i}",
                         sku=f"SKU-{i:06d}", price=Decimal("19.99"), currency="USD", updated_at=now) for i in range(n_targets)]
        for start in range(0, len(variants), 20000):
            connection.execute(insert(Variant), variants[start:start + 20000])
        variant_ids = connection.execute(select(Variant.id).where(Variant.project_id == project_id).order_by(Variant.id)).scalars().all()
        runs = [dict(id=str(uuid.uuid4()), tenant_id=tenant_id, project_id=project_id, kind="apply", state=random.choice(["APPLIED", "PARTIAL", "FAILED", "QUEUED"]),
                     requested_by="bench", correlation_id=str(uuid.uuid4()), queued_at=now - timedelta(minutes=i), run_metadata={}) for i in range(301)]
        connection.execute(insert(RuleRun), runs)
        big = runs[0]["id"]
        rows = [dict(run_id=big, tenant_id=tenant_id, variant_id=v, sku=f"SKU-{i:06d}", product_external_id="p", variant_external_id=f"v{i}", currency="USD",
                     from_price=Decimal("19.99"), to_price=Decimal("18.99"), action="write", proposal_status="change", state="APPLIED", attempts=1,
                     max_attempts=3, idempotency_key=f"{big}:{i}", explain={"final_price": "18.99", "steps": []}) for i, v in enumerate(variant_ids)]
        for start in range(0, len(rows), 20000):
            connection.execute(insert(RuleTarget), rows[start:start + 20000])
        # Payloads as the write path records them (valid price.applied v1): the audit reader
        # validates each row, and an invalid one takes the slow error-collecting path.
        events = [
            dict(tenant_id=tenant_id, project_id=project_id, run_id=big, event_type="price.applied", actor="bench",
                 payload={"run_id": big, "target_id": 1 + i, "sku": f"SKU-{i:06d}", "from": "19.99", "to": "18.99",
                          "currency": "USD", "idempotency_key": f"{big}:{i}", "note": None},
                 created_at=now - timedelta(seconds=i))
            for i in range(20000)
        ]
        connection.execute(insert(EventLog), events)
        first, last = connection.execute(select(text("min(id), max(id)")).select_from(RuleTarget.__table__).where(RuleTarget.run_id == big)).one()
    with engine.connect() as connection:  # fresh statistics, as autovacuum/autoanalyze keeps them in production
        connection.execute(text("ANALYZE"))
        connection.commit()
    return token, big, first, last


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(url: str, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    state_parent = tempfile.mkdtemp(prefix="bench-api-")  # where `calibr api` puts its workers' shared folder
    env = dict(os.environ, CALIBR_API_RATE_LIMIT="100000000", TMPDIR=state_parent)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([sys.executable, "-m", "calibr_pipeline.cli", "--warehouse-url", url, "api", "--port", str(port), "--workers", str(workers)],
                               env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/api/health", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        process.kill()
        raise SystemExit("calibr api did not start")
    # The first worker answers while the others may still be importing the app: measure only
    # once every worker has served (each then has a metrics file in the shared folder).
    while workers > 1 and time.monotonic() < deadline:
        if len(glob.glob(os.path.join(state_parent, "calibr-api-*", "metrics", "counter_*.db"))) >= workers:
            break
        threads = [threading.Thread(target=requests.get, args=(base + "/console/login",), kwargs={"timeout": 5}) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return process, base


def drive(base: str, token: str, run_id: str, first: int, last: int, clients: int, seconds: float, *, seed_offset: int = 0) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {"GET runs": [], "GET targets": [], "GET audit": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(seed_: int) -> None:
        rnd = random.Random(seed_)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        mine = {k: [] for k in latencies}
        while time.monotonic() < stop:
            for name in latencies:
                if name == "GET runs":
                    path = "/api/v1/runs?limit=50"
                elif name == "GET targets":
                    path = f"/api/v1/runs/{run_id}/targets?limit=100&cursor={encode_cursor(rnd.randint(first - 1, last - 100))}"
                else:
                    path = "/api/v1/audit?limit=100"
                started = time.perf_counter()
                response = session.get(base + path, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200 or (name == "GET targets" and len(response.json()["items"]) != 100):
                    with lock:
                        errors.append(f"{name}: {response.status_code}")
                mine[name].append(elapsed)
        with lock:
            for k, v in mine.items():
                latencies[k].extend(v)

    threads = [threading.Thread(target=client, args=(seed_offset + i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} error(s), e.g. {errors[:3]}")
    return latencies


def _drive_in_process(job: tuple) -> dict[str, list[float]]:
    base, token, run_id, first, last, clients, seconds, seed = job
    random.seed(seed)
    return drive(base, token, run_id, first, last, clients, seconds, seed_offset=seed * 1000)


def drive_processes(base: str, token: str, run_id: str, first: int, last: int, clients: int, seconds: float, processes: int) -> dict[str, list[float]]:
    """``clients`` clients spread over ``processes`` load-generator processes: 20 client threads
    in one Python process queue on its GIL, and that wait would be counted as server latency."""
    from concurrent.futures import ProcessPoolExecutor

    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    jobs = [(base, token, run_id, first, last, share, seconds, i) for i, share in enumerate(shares) if share]
    merged: dict[str, list[float]] = {}
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        for part in pool.map(_drive_in_process, jobs):
            for name, values in part.items():
                merged.setdefault(name, []).extend(values)
    return merged


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else (values[0] if values else float("nan"))


def bench(url: str, label: str, args) -> bool:
    t0 = time.perf_counter()
    upgrade_to_head(url)
    token, run_id, first, last = seed(url, args.targets)
    print(f"[{label}] seeded {last - first + 1} targets, 301 runs, 20,000 events in {time.perf_counter() - t0:.1f} s")
    process, base = start_api(url, args.workers)
    try:
        latencies = drive_processes(base, token, run_id, first, last, args.clients, args.seconds, args.client_processes)
    finally:
        process.terminate()
        process.wait(10)
    ok = True
    total = sum(len(v) for v in latencies.values())
    print(f"[{label}] {args.clients} clients in {args.client_processes} processes, {args.seconds:.0f} s, {args.workers} API worker process(es): "
          f"{total} requests, {total / args.seconds:.0f} req/s")
    for name, values in latencies.items():
        p95 = pct(values, 0.95)
        ok &= p95 < GOAL_P95_MS
        print(f"[{label}]   {name:<12} n={len(values):>6}  p50 {pct(values, 0.50):7.1f} ms  p95 {p95:7.1f} ms  p99 {pct(values, 0.99):7.1f} ms  "
              f"{'OK' if p95 < GOAL_P95_MS else 'MISSED'} (goal p95 < {GOAL_P95_MS:.0f} ms)")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--client-processes", type=int, default=4, help="load-generator processes the clients are spread over (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="calibr api --workers (default 2: one per core of the reference machine)")
    args = parser.parse_args(argv)
    results = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="calibr-bench-api-") as tmp:
            results.append(bench(f"sqlite:///{tmp}/warehouse.db", "sqlite", args))
    if args.backend in ("postgres", "both"):
        name = f"calibr_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
        try:
            results.append(bench(url, "postgres", args))
        finally:
            get_engine(url).dispose()
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
