"""Helpers for the monitoring server tests: start it on a free loopback port, scrape and parse."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from calibr_pipeline.monitoring.health import HealthThresholds
from calibr_pipeline.monitoring.server import MonitoringServer

FRESH = HealthThresholds(connectors_cache_s=0, shop_timeout_s=1.0)


@dataclass
class Scrape:
    text: str
    families: dict  # family name -> Metric
    samples: dict  # (sample name, frozenset(labels)) -> value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> dict[frozenset, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """Samples of ``name`` keyed by one label (others ignored)."""
        return {dict(labels)[label]: v for labels, v in self.series(name).items()}


def scrape(base_url: str) -> Scrape:
    response = requests.get(f"{base_url}/metrics", timeout=15)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    samples = {}
    for family in families.values():
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(response.text, families, samples)


@pytest.fixture
def start_server():
    """``start_server(warehouse_url, instance=None, thresholds=FRESH)`` -> a running server on 127.0.0.1:0."""
    servers: list[MonitoringServer] = []

    def start(warehouse_url: str, *, instance=None, thresholds: HealthThresholds = FRESH) -> MonitoringServer:
        server = MonitoringServer(warehouse_url, host="127.0.0.1", port=0, instance=instance, thresholds=thresholds).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def _shared_dagster_instance():
    import dagster as dg

    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def dagster_instance(_shared_dagster_instance):
    """An ephemeral Dagster instance shared by this package's tests, wiped (runs, heartbeats) for each."""
    _shared_dagster_instance.wipe()
    _shared_dagster_instance.wipe_daemon_heartbeats()
    return _shared_dagster_instance
