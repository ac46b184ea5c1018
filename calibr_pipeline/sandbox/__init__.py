"""Loopback stand-ins for the outside world, speaking the real protocols.

* :mod:`.shopify_admin` — Shopify Admin GraphQL API (vendored 2025-01 schema, cost-based
  throttling, cursor pagination), many shops on one server under
  ``/shops/<shop>/admin/api/2025-01/graphql.json``.
* :mod:`.storefronts` — competitor shops (Shopify ``.json``/``.js`` and HTML with JSON-LD,
  microdata or OpenGraph), one server each, prices moving deterministically per day.
* :mod:`.faults` — per-route fault injection (5xx, timeouts, 429 + Retry-After,
  malformed bodies) and traffic counters, shared by every server of a world.
* :mod:`.runner` — :class:`~.runner.SandboxWorld` starts all of it for some tenants;
  ``main()`` runs it in the foreground for ``calibr sandbox``.

Everything binds 127.0.0.1 on ephemeral ports unless told otherwise, and is seeded.
"""
