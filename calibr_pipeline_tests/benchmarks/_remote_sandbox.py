"""The sandbox Admin API in a child process, for benchmarks that measure the client.

In one process the sandbox's GraphQL execution competes with the client for the GIL: a
benchmark of several writes in flight then measures the sandbox's CPU as much as ours
(a real shop's CPU is not ours). ``RemoteSandboxWorld`` forks a child that runs
:class:`SandboxWorld` and answers over a pipe with the few things a benchmark reads back
(stats, write counts, the catalog, the bucket). The child is started before any thread,
and stopped (by its pid) when the ``with`` block ends.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter
from types import SimpleNamespace
from typing import Any


def _child(conn, seed: int, date) -> None:  # runs in the forked process
    from calibr_pipeline.sandbox.runner import SandboxWorld

    with SandboxWorld([], seed=seed, date=date) as world:
        conn.send(("ready", world.admin.base_url))
        shops: dict[str, Any] = {}
        while True:
            command, args = conn.recv()
            if command == "stop":
                conn.send(("ok", None))
                return
            try:
                if command == "latency":
                    world.admin.latency = args
                    result = None
                elif command == "add_shop":
                    name, catalog, kw = args
                    shop = shops[name] = world.admin.add_shop(name, catalog, **kw)
                    result = {"name": shop.name, "access_token": shop.access_token, "currency": shop.currency, "preset": shop.preset,
                              "endpoint": world.admin.endpoint(name), "products": len(shop.products), "variants": len(shop.all_variants())}
                elif command == "stats":
                    result = dict(vars(shops[args].stats))
                elif command == "write_counts":
                    result = dict(shops[args].write_counts())
                elif command == "catalog":
                    result = shops[args].catalog()
                elif command == "throttle_status":
                    result = shops[args].bucket.throttle_status()
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.send(("ok", result))
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
                conn.send(("error", repr(exc)))


class _Remote:
    def __init__(self, conn):
        self._conn = conn

    def call(self, command: str, args: Any = None) -> Any:
        self._conn.send((command, args))
        status, result = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"remote sandbox: {result}")
        return result


class RemoteShop:
    def __init__(self, remote: _Remote, info: dict):
        self._remote = remote
        self.name = info["name"]
        self.access_token = info["access_token"]
        self.currency = info["currency"]
        self.preset = info["preset"]
        self.products = range(info["products"])
        self._variants = info["variants"]
        self.bucket = SimpleNamespace(throttle_status=lambda: remote.call("throttle_status", self.name))

    def all_variants(self) -> range:
        return range(self._variants)

    @property
    def stats(self) -> SimpleNamespace:
        return SimpleNamespace(**self._remote.call("stats", self.name))

    def write_counts(self) -> Counter:
        return Counter(self._remote.call("write_counts", self.name))

    def catalog(self):
        return self._remote.call("catalog", self.name)


class _RemoteAdmin:
    def __init__(self, remote: _Remote):
        self._remote = remote
        self._endpoints: dict[str, str] = {}

    @property
    def latency(self) -> float:  # pragma: no cover - write-only in practice
        raise AttributeError("latency is write-only on the remote sandbox")

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._remote.call("latency", seconds)

    def add_shop(self, name: str, catalog, **kw) -> RemoteShop:
        info = self._remote.call("add_shop", (name, list(catalog), kw))
        self._endpoints[name] = info["endpoint"]
        return RemoteShop(self._remote, info)

    def endpoint(self, name: str) -> str:
        return self._endpoints[name]


class RemoteSandboxWorld:
    """``with RemoteSandboxWorld(seed=…, date=…) as world:`` — ``world.admin.add_shop(…)`` etc."""

    def __init__(self, *, seed: int = 0, date=None):
        context = mp.get_context("fork")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_child, args=(child_conn, seed, date), daemon=True, name="remote-sandbox")
        self.admin = _RemoteAdmin(_Remote(self._conn))

    def __enter__(self) -> RemoteSandboxWorld:
        self._process.start()
        status, _ = self._conn.recv()
        assert status == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.admin._remote.call("stop")
        except (EOFError, OSError, RuntimeError):
            pass
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()  # our own child, by its handle
