"""Calibrate's HTTP API and runs console (FastAPI): ``calibr api``, see docs/api.md. One router per area."""
