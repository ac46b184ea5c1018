"""Benchmark: outbox event -> 100 SKUs APPLIED through `dagster dev` (daemon + run launcher), goal p95 < 20 s.

    python -m calibr_pipeline_tests.benchmarks.bench_apply_latency [--runs 20] [--variants 100] [--warehouse-url URL]

Setup, in this process: a sandbox world (one USD tenant, ``--variants`` variants, the
Standard bucket preset), a fresh warehouse (FX rates, tenant/shop, catalog synced through
the Admin API as ``make demo`` does), a temporary DAGSTER_HOME holding the repository's
``dagster.yaml`` (queued run coordinator, 4 concurrent runs). Then ``dagster dev -w
workspace.yaml`` runs as a subprocess (webserver + daemon, cwd = the repository) with
CALIBR_WAREHOUSE_URL, DAGSTER_HOME and CALIBR_SANDBOX_ALLOWED_HOSTS set, and the benchmark
waits until its code location is loaded (GraphQL ``workspaceOrError``).

Timed, ``--runs`` times one after the other: t0, then in one transaction ``create_run`` +
``request_apply_of`` (the ``job.rules.apply`` outbox event); the warehouse is polled every
0.1 s until ``rule_runs.state`` is APPLIED (FAILED / PARTIAL end the run as an error), t1.
The rule alternates +1 % / -1 % so every run changes every price. Per run the latency is
split with the Dagster run's timestamps (GraphQL, run found by its run key = event id):
sensor pickup (run created), queue + launch (run started), steps up to the apply
(``rule_runs.started_at``), the apply itself (``completed_at``) and the poll's lag. The
benchmark waits for each Dagster run to finish (``dlq_summary``) before the next event, so
runs do not overlap. ``dagster dev`` is terminated (its whole process group) at the end,
also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import select

from calibr_pipeline.defs.pricing.sensors import rules_apply_sensor
from calibr_pipeline.sandbox.runner import SandboxWorld, TenantSpec
from calibr_pipeline.services.rule_runs import create_run, request_apply_of, save_rule
from calibr_pipeline.warehouse.engine import session_scope
from calibr_pipeline.warehouse.models import RuleRun, RuleRunMetrics
from calibr_pipeline_tests.benchmarks._common import (
    add_common_arguments,
    bench_date,
    print_setup,
    quiet_client_resets,
    seed_world,
    verdict,
    warehouse,
)

REPO = Path(__file__).resolve().parents[2]
GOAL_P95_SECONDS = 20.0
SEED_GOAL_SECONDS = 300.0
RULE_UP = {"name": "bench +1%", "transform": {"kind": "percent_change", "value": "1"}, "scope": {"kind": "project"}}
RULE_DOWN = {"name": "bench -1%", "transform": {"kind": "percent_change", "value": "-1"}, "scope": {"kind": "project"}}

LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"
INSTIGATION_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { minIntervalSeconds sensorState { status } } }
}
"""
RUNS_QUERY = """
query Runs($key: String!) {
  runsOrError(filter: {tags: [{key: "dagster/run_key", value: $key}]}) {
    __typename
    ... on Runs { results { runId jobName status creationTime startTime endTime } }
  }
}
"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_apply_latency", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--runs", type=int, default=20, help="rule runs applied one after the other (default 20)")
    parser.add_argument("--variants", type=int, default=100, help="SKUs in the shop, all repriced by every run (default 100)")
    parser.add_argument("--run-timeout", type=float, default=300.0, help="seconds one run may take before the benchmark gives up")
    parser.add_argument("--startup-timeout", type=float, default=240.0, help="seconds dagster dev may take to load the code location")
    parser.add_argument("--goal", type=float, default=GOAL_P95_SECONDS, help="p95 latency, seconds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the DAGSTER_HOME and dagster dev's log and print their path")
    return parser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 20 values is the 19th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


class DagsterDev:
    """``dagster dev`` in its own process group; :meth:`stop` ends the whole group."""

    def __init__(self, home: Path, env: dict[str, str], port: int, log_path: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        dagster = Path(sys.executable).with_name("dagster")
        self.process = subprocess.Popen(
            [str(dagster), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, n: int = 3000) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def wait_loaded(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                entries = graphql(self.url, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    kinds = {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}
                    if set(kinds.values()) != {"RepositoryLocation"}:
                        raise RuntimeError(f"code location failed to load: {entries}")
                    return next(iter(kinds))
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not load the code location within {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> int | None:
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)  # the group we created (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Children of the group (daemon, webserver, run workers) that outlived dagster dev.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.process.returncode


def run(argv: list[str] | None = None) -> bool:
    args = build_parser().parse_args(argv)
    interval = rules_apply_sensor.minimum_interval_seconds
    print(
        f"=== bench_apply_latency: outbox event -> {args.variants} SKUs APPLIED via dagster dev, {args.runs} runs "
        f"(goal p95 < {args.goal:g} s; the seed asks < {SEED_GOAL_SECONDS:g} s) ==="
    )
    day = bench_date(args.date)
    tmp = Path(tempfile.mkdtemp(prefix="calibr-bench-latency-"))
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    rows: list[dict] = []
    problems: list[str] = []
    dev: DagsterDev | None = None
    spec = TenantSpec("latbench-usd", "USD", args.variants, preset="standard", n_competitors=1)
    try:
        with warehouse(args.warehouse_url, "latency", keep=args.keep_warehouse) as url, SandboxWorld([spec], seed=args.seed, date=day) as world:
            quiet_client_resets(world)
            seeded = seed_world(url, world, total_listings=0)
            print_setup(world, seeded)
            tenant = spec.name
            with session_scope(url) as session:
                for rule in (RULE_UP, RULE_DOWN):
                    save_rule(session, project_slug=tenant, definition=rule, actor="bench")

            env = os.environ.copy()
            env.update(
                CALIBR_WAREHOUSE_URL=url,
                DAGSTER_HOME=str(home),
                CALIBR_SANDBOX_ALLOWED_HOSTS=",".join(world.allowed_hosts),
                GX_ANALYTICS_ENABLED="False",
            )
            port = free_port()
            t0 = time.perf_counter()
            dev = DagsterDev(home, env, port, tmp / "dagster-dev.log")
            location = dev.wait_loaded(args.startup_timeout)
            print(f"dagster dev: {dev.url}, DAGSTER_HOME {home}, code location '{location}' loaded in {time.perf_counter() - t0:.1f} s")
            sensor = graphql(
                dev.url,
                INSTIGATION_QUERY,
                {"selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "sensorName": rules_apply_sensor.name}},
            )["sensorOrError"]
            print(
                f"rules_apply_sensor: minimum_interval_seconds {interval} (UI: {sensor.get('minIntervalSeconds')}), status "
                f"{(sensor.get('sensorState') or {}).get('status')}; the sensor daemon loops at most every 5 s and the queued "
                "run coordinator dequeues every 5 s (dagster defaults)"
            )
            print()
            print(f"{'run':>4} {'latency':>8} {'pickup':>7} {'queue+launch':>12} {'to apply':>9} {'apply':>6} {'poll lag':>8}  {'dagster run':<12} {'state'}")
            for i in range(args.runs):
                rule = RULE_UP if i % 2 == 0 else RULE_DOWN
                t_start = time.time()
                with session_scope(url) as session:
                    rule_run = create_run(session, project_slug=tenant, rule_name=rule["name"], actor="bench")
                    event_id = request_apply_of(session, rule_run, actor="bench")
                    run_id = rule_run.id
                state = None
                deadline = time.monotonic() + args.run_timeout
                while time.monotonic() < deadline:
                    with session_scope(url) as session:
                        state = session.scalar(select(RuleRun.state).where(RuleRun.id == run_id))
                    if state in ("APPLIED", "FAILED", "PARTIAL"):
                        break
                    if dev.process.poll() is not None:
                        raise RuntimeError(f"dagster dev exited with {dev.process.returncode}:\n{dev.log_tail()}")
                    time.sleep(0.1)
                t_end = time.time()
                latency = t_end - t_start
                with session_scope(url) as session:
                    rr = session.get(RuleRun, run_id)
                    metrics = session.get(RuleRunMetrics, run_id)
                    started_at = rr.started_at.timestamp() if rr.started_at else None
                    completed_at = (rr.completed_at or rr.failed_at).timestamp() if (rr.completed_at or rr.failed_at) else None
                    applied = metrics.targets_applied if metrics else 0
                    total = metrics.targets_write if metrics else 0
                dagster_run = None
                wait_end = time.monotonic() + args.run_timeout
                while time.monotonic() < wait_end:
                    results = graphql(dev.url, RUNS_QUERY, {"key": event_id})["runsOrError"].get("results") or []
                    dagster_run = results[0] if results else None
                    if dagster_run and dagster_run["status"] in FINISHED:
                        break
                    time.sleep(0.5)
                row = {
                    "latency": latency,
                    "state": state,
                    "applied": applied,
                    "targets": total,
                    "pickup": (dagster_run["creationTime"] - t_start) if dagster_run else None,
                    "launch": (dagster_run["startTime"] - dagster_run["creationTime"]) if dagster_run and dagster_run.get("startTime") else None,
                    "to_apply": (started_at - dagster_run["startTime"]) if dagster_run and dagster_run.get("startTime") and started_at else None,
                    "apply": (completed_at - started_at) if completed_at and started_at else None,
                    "lag": (t_end - completed_at) if completed_at else None,
                    "dagster_status": dagster_run["status"] if dagster_run else "not found",
                    "dagster_total": (dagster_run["endTime"] - dagster_run["startTime"]) if dagster_run and dagster_run.get("endTime") and dagster_run.get("startTime") else None,
                }
                rows.append(row)
                fmt = lambda v: f"{v:.1f}" if v is not None else "-"
                print(
                    f"{i + 1:>4} {latency:>7.1f}s {fmt(row['pickup']):>7} {fmt(row['launch']):>12} {fmt(row['to_apply']):>9} "
                    f"{fmt(row['apply']):>6} {fmt(row['lag']):>8}  {row['dagster_status']:<12} {state} ({applied}/{total} applied)",
                    flush=True,
                )
                if state != "APPLIED":
                    problems.append(f"run {i + 1} ({run_id}): state {state} after {latency:.1f} s; dagster run {row['dagster_status']}")
                    if state not in ("FAILED", "PARTIAL"):
                        break  # timed out: the pipeline is stuck, the next runs would be too
            writes = world.tenant(tenant).admin_shop.write_counts()
    finally:
        if dev is not None:
            code = dev.stop()
            print(f"dagster dev stopped (exit status {code})")
            if problems:
                print("dagster dev log (tail):\n" + dev.log_tail())
        if args.keep_logs or problems:
            print(f"DAGSTER_HOME and dagster dev log kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    latencies = [r["latency"] for r in rows]
    if not latencies:
        print("no run measured")
        return False
    p50, p95, worst = statistics.median(latencies), percentile(latencies, 95), max(latencies)

    def avg(key: str) -> str:
        values = [r[key] for r in rows if r[key] is not None]
        return f"{statistics.mean(values):.1f} s" if values else "-"

    print()
    print("results")
    print(f"  runs measured:      {len(rows)} ({sum(r['state'] == 'APPLIED' for r in rows)} APPLIED); variant writes in the shop: {sum(writes.values())} "
          f"(= runs × {args.variants} if every run wrote every SKU once)")
    print(f"  latency:            p50 {p50:.1f} s, p95 {p95:.1f} s, max {worst:.1f} s, min {min(latencies):.1f} s, mean {statistics.mean(latencies):.1f} s")
    print(f"  mean breakdown:     sensor pickup {avg('pickup')}, queue + launch {avg('launch')}, steps before the apply {avg('to_apply')}, "
          f"apply {avg('apply')}, poll lag {avg('lag')}")
    print(f"  whole dagster run:  {avg('dagster_total')} from start to end (dlq_summary included)")
    print(f"  sensor interval:    rules_apply_sensor minimum_interval_seconds = {interval}")
    for p in problems:
        print(f"  problem: {p}")
    fast = p95 < args.goal
    seed_ok = worst < SEED_GOAL_SECONDS
    correct = not problems and len(rows) == args.runs
    print()
    print(f"goal: p95 < {args.goal:g} s: {p95:.1f} s -> {verdict(fast)}")
    print(f"seed goal: every run < {SEED_GOAL_SECONDS:g} s: max {worst:.1f} s -> {verdict(seed_ok)}")
    print(f"correctness: every run APPLIED: {verdict(correct)}")
    passed = fast and seed_ok and correct
    print(f"bench_apply_latency: {verdict(passed)}")
    return passed


def main(argv: list[str] | None = None) -> int:
    return 0 if run(argv) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
