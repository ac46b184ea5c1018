"""Operational monitoring: ``calibr serve`` (Prometheus ``/metrics``, ``/health``, ``/health/detailed``).

* :mod:`.metrics`: the scrape-time collector over the warehouse and the Dagster instance;
* :mod:`.health`: liveness and dependency checks;
* :mod:`.server`: the threaded HTTP server (:class:`~.server.MonitoringServer`, :func:`~.server.serve`);
* :mod:`.connector_stats`: the persisted connector request aggregate run processes write.

Metric names and labels are a contract (alert rules, dashboards): see ``docs/metrics-reference.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "MonitoringServer", "serve"]


def __getattr__(name: str) -> Any:  # lazy: importing the package must stay cheap for run processes
    if name in __all__:
        from calibr_pipeline.monitoring import server

        return getattr(server, name)
    raise AttributeError(name)
