"""Events: the schema registry and upcasters (pure), archival to cold storage (warehouse side)."""
