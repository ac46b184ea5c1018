"""Checks of the monitoring configuration in monitoring/ (Prometheus, Alertmanager, Grafana)."""
