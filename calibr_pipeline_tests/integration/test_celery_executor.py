"""The distributed path end to end: steps on two Celery workers, Redis broker, PostgreSQL.

Debian's ``redis-server`` on an ephemeral loopback port (no persistence), two databases of
their own on the local PostgreSQL (the warehouse, and the Dagster instance opened from
``deploy/dagster.celery.yaml``), two workers started by ``deploy/celery-worker.sh``. A
sandbox tenant is seeded like the demo, then the ``competitor_monitoring`` job and an
``apply_run`` are executed through the instance with ``CALIBR_EXECUTOR=celery``: this
process only orchestrates, every step must run in one of the workers, and the results must
be in the warehouse.

A second test kills the scrape step's worker process mid-step and checks that the step
runs again and the run succeeds (late acknowledgement, reject on worker lost).

Marked ``celery``: ``scripts/test.sh`` (``make test``) deselects it and ``.ci/run`` runs it
once on its own (1-1.5 min, mostly starting the workers). Without ``redis-server`` it skips, unless
``CALIBR_REQUIRE_CELERY=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.events import DagsterEventType
from sqlalchemy import func, select

from calibr_pipeline.demo import register_sandbox_listings, run_job_for_day, seed_fx_rates, seed_tenant_shops
from calibr_pipeline.definitions import build_definitions
from calibr_pipeline.defs.partitions import TENANT_PARTITIONS, DayTenant
from calibr_pipeline.defs.pricing.assets import RULE_RUN_PARTITIONS
from calibr_pipeline.defs.resources import WarehouseResource
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.services.rule_runs import create_run, save_rule
from calibr_pipeline.warehouse.engine import session_scope, upgrade_to_head
from calibr_pipeline.warehouse.models import (
    CompetitorListing,
    CompetitorPriceObservation,
    MarketPosition,
    NormalizedPriceSnapshot,
    PriceAudit,
    RuleRun,
    RuleTarget,
)
from calibr_pipeline_tests.conftest import _fresh_postgres_database

pytestmark = [
    pytest.mark.celery, pytest.mark.integration, pytest.mark.postgres,
    # dagster-celery registers its execute_plan task again for every step it submits (the
    # same callable; Celery keeps the first): noise, not a problem.
    pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning"),
]

REPO = Path(__file__).resolve().parents[2]
TENANT = "celery-shop"
RAISE_ALL = {"name": "Raise 10%", "transform": {"kind": "percent_change", "value": "10"}, "scope": {"kind": "project"}}
WORKERS = ("w1", "w2")
STARTUP_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One deployment for the module (Redis, databases, workers, seeded tenant): starting the
# workers is most of the time; each test runs its own jobs on it.
@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("celery")


@pytest.fixture(scope="module")
def redis_url(home):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CALIBR_REQUIRE_CELERY") == "1":
            pytest.fail("redis-server is required (CALIBR_REQUIRE_CELERY=1) but not installed: apt-get install redis-server")
        pytest.skip("redis-server is not installed (apt-get install redis-server); set CALIBR_REQUIRE_CELERY=1 to fail instead")
    import redis

    port = _free_port()
    log = home / "redis.log"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(home),
         "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}: {log.read_text() if log.exists() else ''}")
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def databases(postgres_admin_url):
    """(warehouse URL, Dagster instance URL): two fresh databases, dropped afterwards."""
    warehouse, drop_warehouse = _fresh_postgres_database(postgres_admin_url)
    dagster_db, drop_dagster = _fresh_postgres_database(postgres_admin_url)
    upgrade_to_head(warehouse)
    try:
        yield warehouse, dagster_db
    finally:
        drop_dagster()
        drop_warehouse()


@pytest.fixture(scope="module")
def world():
    with SandboxWorld([TenantSpec(TENANT, "USD", 24, n_competitors=3)], seed=12) as world:
        yield world


@pytest.fixture(scope="module")
def distributed_env(redis_url, databases, world, home):
    """The environment of every process of the deployment (this one orchestrates)."""
    warehouse, dagster_db = databases
    env = {
        "CALIBR_EXECUTOR": "celery",
        "CALIBR_CELERY_BROKER_URL": redis_url,
        "CALIBR_CELERY_BACKEND_URL": redis_url.removesuffix("/0") + "/1",
        "CALIBR_WAREHOUSE_URL": warehouse,
        "CALIBR_DAGSTER_PG_URL": dagster_db,
        "CALIBR_SANDBOX_ALLOWED_HOSTS": ",".join(world.allowed_hosts),
        "CALIBR_HOME": str(home / "calibr_home"),
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env


@pytest.fixture(scope="module")
def instance(distributed_env, home):
    """The Dagster instance of deploy/dagster.celery.yaml, on its own PostgreSQL database."""
    dagster_home = home / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(REPO / "deploy" / "dagster.celery.yaml", dagster_home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        yield instance


class Worker:
    """One worker started by deploy/celery-worker.sh: its main process runs a prefork pool of
    one child, which executes the steps."""

    def __init__(self, name: str, process: subprocess.Popen, log: Path):
        self.name, self.process, self.log = name, process, log

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> set[int]:
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return {int(pid) for pid in path.read_text().split()} if path.exists() else set()

    def cpu_seconds(self) -> float:
        """User + system CPU of the main process and its live pool children (Linux /proc)."""
        total = 0
        for pid in {self.pid, *self.children()}:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def workers(distributed_env, home):
    """Two workers started as an operator would (deploy/celery-worker.sh, prefork pool of one)."""
    import celery

    env = dict(os.environ) | distributed_env
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    started: dict[str, Worker] = {}
    try:
        for name in WORKERS:
            log = home / f"worker-{name}.log"
            process = subprocess.Popen(
                ["bash", str(REPO / "deploy" / "celery-worker.sh"), name, "--concurrency", "1", "--logfile", str(log)],
                env=env, cwd=str(home), stdout=subprocess.DEVNULL, stderr=open(home / f"worker-{name}.err", "w"),
            )
            started[name] = Worker(name, process, log)
        # Both must answer a ping through the broker before a step is sent.
        app = celery.Celery(broker=distributed_env["CALIBR_CELERY_BROKER_URL"])
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        answered: set[str] = set()
        while answered != {f"calibr-{n}@{socket.gethostname()}" for n in WORKERS} or not all(w.children() for w in started.values()):
            for worker in started.values():
                if worker.process.poll() is not None:
                    pytest.fail(f"worker {worker.name} exited with {worker.process.returncode}: "
                                f"{(home / f'worker-{worker.name}.err').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"workers did not answer within {STARTUP_TIMEOUT_S} s (answered: {sorted(answered)})")
            answered = {host for reply in (app.control.ping(timeout=1.0) or []) for host in reply}
        app.close()
        yield started
    finally:
        for worker in started.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in started.values():
            try:
                worker.process.wait(30)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def _received(workers) -> int:
    """Tasks the workers' logs say they received so far."""
    return sum(worker.log.read_text().count("] received") for worker in workers.values())


def _cpu_seconds(workers) -> float:
    return sum(worker.cpu_seconds() for worker in workers.values())


def _reconstructable(job_name: str):
    # The code pointer travels with every step: each worker loads the same function.
    repository = ReconstructableRepository.for_module("calibr_pipeline.definitions", "definitions_from_environment", working_directory=str(REPO))
    return repository.get_reconstructable_job(job_name)


def _steps_by_worker(instance, run_id: str) -> dict[str, tuple[str, int]]:
    """step key -> (Celery worker that announced it, pid of the process that started it)."""
    announced: dict[str, str] = {}
    started: dict[str, int] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.ENGINE_EVENT and "in celery worker" in (event.message or ""):
            announced[event.step_key] = event.event_specific_data.metadata["Celery worker"].value
        elif event.event_type == DagsterEventType.STEP_START:
            started[event.step_key] = event.pid
    assert set(announced) == set(started), (announced, started)
    return {key: (announced[key], started[key]) for key in started}


def _assert_ran_on_workers(instance, run_id: str, workers, expected_steps: set[str]) -> set[str]:
    """Every step announced by a worker and started in that worker's pool process."""
    steps = _steps_by_worker(instance, run_id)
    assert set(steps) == expected_steps
    hostname = socket.gethostname()
    owner = {pid: worker.name for worker in workers.values() for pid in worker.children()}
    for step, (announced_by, pid) in steps.items():
        assert pid != os.getpid(), f"{step} ran in the orchestrating process"
        assert pid in owner, f"{step} ran in pid {pid}, not a worker's pool process ({owner})"
        assert announced_by == f"calibr-{owner[pid]}@{hostname}", (step, announced_by, owner[pid])
    return {worker for worker, _pid in steps.values()}


@pytest.fixture(scope="module")
def seeded(world, distributed_env, instance) -> dict:
    """The tenant seeded like the demo: shop and FX rates, catalog read from the sandbox Admin
    API (in-process: the listings need the SKUs), competitor URLs registered. url -> listing."""
    warehouse = distributed_env["CALIBR_WAREHOUSE_URL"]
    day = world.today()
    seed_fx_rates(warehouse, day - timedelta(days=1))
    seed_tenant_shops(warehouse, world)
    local = build_definitions(executor="in_process", warehouse=WarehouseResource(url=warehouse))
    assert run_job_for_day(local, instance, "catalog_sync", [TENANT], day) == {TENANT: True}
    registered = register_sandbox_listings(warehouse, world, TENANT)
    expected = {listing.url: listing for listing in world.listings_for(TENANT)}
    assert registered.created == len(expected) > 20
    return expected


def _assert_observations(warehouse: str, expected: dict, run_id: str) -> None:
    with session_scope(warehouse) as session:
        rows = session.execute(
            select(CompetitorListing.url, CompetitorPriceObservation)
            .join(CompetitorPriceObservation, CompetitorPriceObservation.listing_id == CompetitorListing.id)
        ).all()
        assert len(rows) == len(expected)
        for url, observation in rows:
            assert observation.status == "ok", (url, observation.error_class, observation.error_message)
            assert (observation.amount, observation.currency) == (expected[url].expected_amount, expected[url].expected_currency), url
            assert observation.dagster_run_id == run_id
        assert session.scalar(select(func.count()).select_from(NormalizedPriceSnapshot)) == len(expected)
        assert session.scalar(select(func.count()).select_from(MarketPosition)) == len({l.our_sku for l in expected.values()})


def test_monitoring_and_apply_run_their_steps_on_two_celery_workers(world, distributed_env, instance, workers, seeded):
    warehouse = distributed_env["CALIBR_WAREHOUSE_URL"]
    day = world.today()
    expected = seeded

    cpu_before = _cpu_seconds(workers)
    received_before = _received(workers)
    started = time.monotonic()
    monitoring = _reconstructable("competitor_monitoring")
    job_def = monitoring.get_definition()
    assert job_def.executor_def.name == "calibr_celery"
    partition = DayTenant(day, TENANT).key
    assert instance.has_dynamic_partition(TENANT_PARTITIONS.name, TENANT)  # added by run_job_for_day
    with dg.execute_job(monitoring, instance, tags=job_def.partitions_def.get_tags_for_partition_key(partition)) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        monitoring_run = result.run_id
    monitoring_s = time.monotonic() - started
    monitoring_steps = {node.name for node in job_def.graph.nodes}  # the four assets and their four checks
    assert {"shop_catalog", "competitor_price_observations", "normalized_price_snapshots", "market_position"} < monitoring_steps
    used = _assert_ran_on_workers(instance, monitoring_run, workers, monitoring_steps)

    _assert_observations(warehouse, expected, monitoring_run)

    # An apply: a rule run previewed and applied by the apply_run job, steps on the workers.
    with session_scope(warehouse) as session:
        save_rule(session, project_slug=TENANT, definition=RAISE_ALL, actor="test")
        rule_run_id = create_run(session, project_slug=TENANT, rule_name=RAISE_ALL["name"], actor="test").id
    instance.add_dynamic_partitions(RULE_RUN_PARTITIONS.name, [rule_run_id])
    started = time.monotonic()
    with dg.execute_job(_reconstructable("apply_run"), instance, tags={"dagster/partition": rule_run_id}) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        apply_run = result.run_id
    apply_s = time.monotonic() - started
    used |= _assert_ran_on_workers(instance, apply_run, workers, {"rule_targets", "applied_prices", "dlq_summary"})

    shop = world.tenant(TENANT).admin_shop
    with session_scope(warehouse) as session:
        assert session.get(RuleRun, rule_run_id).state == "APPLIED"
        targets = session.scalars(select(RuleTarget).where(RuleTarget.run_id == rule_run_id)).all()
        audits = session.scalars(select(PriceAudit).where(PriceAudit.run_id == rule_run_id)).all()
    assert len(targets) >= 24 and {t.state for t in targets} == {"APPLIED"}
    live = {v.variant_external_id: v.price for v in shop.catalog()}
    assert all(live[t.variant_external_id] == t.to_price for t in targets)
    assert set(shop.write_counts().values()) == {1}
    assert {a.idempotency_key for a in audits} == {t.idempotency_key for t in targets} and len(audits) == len(targets)

    # The workers' own logs name the tasks they received: one per step, nothing else.
    assert _received(workers) - received_before == len(monitoring_steps) + 3, [w.log.read_text()[-3000:] for w in workers.values()]
    # Figures for docs/deployment.md (sizing), printed with -s: wall time per run, the
    # workers' CPU, the Dagster event rows and instance database size the two runs left.
    events = sum(len(instance.all_logs(run_id)) for run_id in (monitoring_run, apply_run))
    from sqlalchemy import create_engine

    engine = create_engine(distributed_env["CALIBR_DAGSTER_PG_URL"])
    with engine.connect() as connection:
        dagster_bytes = connection.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
    engine.dispose()
    print(f"\ncelery e2e: monitoring {monitoring_s:.1f} s ({len(monitoring_steps)} steps, {len(expected)} listings), "
          f"apply {apply_s:.1f} s (3 steps, {len(targets)} targets); workers used: {sorted(used)}; "
          f"worker CPU {_cpu_seconds(workers) - cpu_before:.1f} s; {events} Dagster events; "
          f"instance database {dagster_bytes / 2**20:.1f} MiB")


def test_a_step_whose_worker_process_dies_runs_again_and_the_run_succeeds(world, distributed_env, instance, workers, seeded):
    """The scrape step's pool process is killed mid-step (SIGKILL, as the OOM killer would):
    Celery hands the task back to the queue (late acknowledgement, reject on worker lost), a
    worker runs the step again, and the run completes with every observation once."""
    warehouse = distributed_env["CALIBR_WAREHOUSE_URL"]
    # Every competitor page takes 1 s: the scrape step lasts seconds, long enough to kill.
    slow = [world.faults.add(shop=c.slug, timeout_rate=1.0, timeout_delay=1.0) for c in world.tenant(TENANT).competitors]
    monitoring = _reconstructable("competitor_monitoring")
    job_def = monitoring.get_definition()
    tags = job_def.partitions_def.get_tags_for_partition_key(DayTenant(world.today(), TENANT).key)
    killed: dict[str, int] = {}
    earlier_runs = {run.run_id for run in instance.get_runs()}

    def kill_the_scrape_step() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for run in instance.get_runs(dg.RunsFilter(job_name="competitor_monitoring")):
                if run.run_id in earlier_runs:
                    continue
                for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_START):
                    if entry.dagster_event.step_key == "competitor_price_observations":
                        os.kill(entry.dagster_event.pid, signal.SIGKILL)
                        killed["pid"] = entry.dagster_event.pid
                        return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_scrape_step, daemon=True)
    killer.start()
    started = time.monotonic()
    try:
        with dg.execute_job(monitoring, instance, tags=tags) as result:
            killer.join(5)
            assert killed, "the scrape step never started"
            assert result.success, [e.message for e in result.all_events if e.is_failure]
            run_id = result.run_id
    finally:
        for rule in slow:
            world.faults.remove(rule)

    starts = [e.dagster_event for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_START)
              if e.dagster_event.step_key == "competitor_price_observations"]
    assert len(starts) >= 2 and starts[0].pid == killed["pid"] and starts[-1].pid != killed["pid"]
    successes = [e.dagster_event for e in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)
                 if e.dagster_event.step_key == "competitor_price_observations"]
    assert [e.pid for e in successes] == [starts[-1].pid]
    _assert_observations(warehouse, seeded, run_id)
    lost = "".join(worker.log.read_text() for worker in workers.values())
    assert "WorkerLostError" in lost or "exited with 'signal 9 (SIGKILL)'" in lost, lost[-3000:]
    print(f"\ncelery worker lost: run {time.monotonic() - started:.1f} s, scrape step started {len(starts)} times")
