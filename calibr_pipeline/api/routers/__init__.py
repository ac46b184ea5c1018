"""One router per area; each module exposes ``build_router(require_read, require_write)``."""
