"""HTTP API: one FastAPI router per area."""
