"""The event registry: one JSON Schema (draft 2020-12) per event type and version.

Every event the project writes — to the transactional ``outbox`` (work for a sensor) or to
``event_log`` (the audit stream) — has a registered type. A type's schemas live in
``calibr_pipeline/events/schemas/<event type>.v<N>.json``; the highest N is the version
written today, and older versions stay readable through the upcasters in
``events/upcasters.py``.

**Registering an event type** is one file: copy any schema in ``schemas/``, rename it
``<your.type>.v1.json``, describe the payload, list its channels (``outbox`` and/or
``event_log``), producers and consumers under ``x-calibr``, give one or more
``examples``, and run ``python -m calibr_pipeline.events.docs`` to refresh docs/events.md.
Until then ``publish``/``record_event`` refuse the type (``UnregisteredEventType``) and
the registry tests name the unregistered literal and the file that uses it.

**Evolving a type**: add ``<type>.v<N+1>.json`` and an upcaster from N to N+1 in
``events/upcasters.py``; the tests require the chain to be complete.

Pure: imports only ``jsonschema`` (no Dagster, no database).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from calibr_pipeline.domain.errors import CalibrError

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CHANNELS = ("outbox", "event_log")
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_FILE_PATTERN = re.compile(r"^(?P<type>[a-z][a-z0-9_.]*)\.v(?P<version>[1-9][0-9]*)\.json$")


class EventRegistryError(CalibrError):
    """Base of the registry's errors (a CalibrError: one line on the CLI, never a traceback)."""


class UnregisteredEventType(EventRegistryError):
    def __init__(self, event_type: str, channel: str | None = None):
        self.event_type = event_type
        where = f" on the {channel} channel" if channel else ""
        super().__init__(
            f"event type {event_type!r} is not registered{where}: add calibr_pipeline/events/schemas/{event_type}.v1.json "
            f"(see docs/events.md, 'Registering an event type')"
        )


class InvalidEventPayload(EventRegistryError):
    """A payload that its schema refuses; ``schema_path`` and ``instance_path`` locate the problem."""

    def __init__(self, event_type: str, version: int, error: ValidationError, error_count: int = 1):
        self.event_type = event_type
        self.version = version
        self.schema_path = "/".join(str(p) for p in error.absolute_schema_path)
        self.instance_path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        self.detail = error.message
        more = f" (and {error_count - 1} more problem(s))" if error_count > 1 else ""
        super().__init__(
            f"{event_type} v{version} payload invalid at {self.instance_path}: {error.message} "
            f"[schema path: #/{self.schema_path}]{more}"
        )


@dataclass(frozen=True)
class EventSchema:
    event_type: str
    version: int
    schema: Mapping[str, Any]
    validator: Draft202012Validator = field(compare=False, repr=False)

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.schema.get("x-calibr", {})

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.meta.get("channels", ()))

    @property
    def producers(self) -> tuple[str, ...]:
        return tuple(self.meta.get("producers", ()))

    @property
    def consumers(self) -> tuple[str, ...]:
        return tuple(self.meta.get("consumers", ()))

    @property
    def description(self) -> str:
        return self.schema.get("description", "")

    @property
    def examples(self) -> list:
        return list(self.schema.get("examples", []))


@dataclass(frozen=True)
class Registry:
    schemas: Mapping[tuple[str, int], EventSchema]
    _current: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for event_type, version in self.schemas:
            self._current[event_type] = max(version, self._current.get(event_type, 0))

    # --- lookups -------------------------------------------------------------------
    def event_types(self) -> list[str]:
        return sorted(self._current)

    def versions(self, event_type: str) -> list[int]:
        return sorted(v for t, v in self.schemas if t == event_type)

    def is_registered(self, event_type: str) -> bool:
        return event_type in self._current

    def current_version(self, event_type: str) -> int:
        try:
            return self._current[event_type]
        except KeyError:
            raise UnregisteredEventType(event_type) from None

    def get(self, event_type: str, version: int | None = None) -> EventSchema:
        version = self.current_version(event_type) if version is None else version
        try:
            return self.schemas[(event_type, version)]
        except KeyError:
            raise EventRegistryError(
                f"{event_type} has no schema version {version} (registered: {', '.join(map(str, self.versions(event_type))) or 'none'})"
            ) from None

    def current(self, event_type: str) -> EventSchema:
        return self.get(event_type, None)

    # --- validation ----------------------------------------------------------------
    def validate(self, event_type: str, payload: Any, version: int | None = None) -> int:
        """Raise ``InvalidEventPayload`` unless ``payload`` satisfies the schema; returns the version."""
        schema = self.get(event_type, version)
        if schema.validator.is_valid(payload):  # the common case, without collecting errors
            return schema.version
        errors = sorted(schema.validator.iter_errors(payload), key=lambda e: (list(e.absolute_path), list(e.absolute_schema_path)))
        if errors:
            raise InvalidEventPayload(event_type, schema.version, errors[0], len(errors))
        return schema.version

    def validate_for_write(self, event_type: str, payload: Any, channel: str) -> int:
        """What the writers call: the type must be registered for ``channel``; returns the version written."""
        if not self.is_registered(event_type):
            raise UnregisteredEventType(event_type, channel)
        schema = self.current(event_type)
        if channel not in schema.channels:
            raise EventRegistryError(
                f"event type {event_type!r} is not registered for the {channel} channel (its schema lists {', '.join(schema.channels)})"
            )
        return self.validate(event_type, payload, schema.version)

    def read(self, event_type: str, version: int | None, payload: Any) -> tuple[int, Any]:
        """A stored event as the current version: validate as stored, upcast, validate again."""
        version = version or 1
        self.validate(event_type, payload, version)
        current = self.current_version(event_type)
        if version == current:
            return version, payload
        if version > current:
            raise EventRegistryError(f"{event_type} v{version} is newer than this code's v{current}: upgrade calibr")
        from calibr_pipeline.events.upcasters import upcast

        upcasted = upcast(event_type, version, current, payload)
        self.validate(event_type, upcasted, current)
        return current, upcasted


def _load_schema(name: str, text: str) -> EventSchema:
    match = _FILE_PATTERN.match(name)
    if match is None:
        raise EventRegistryError(f"schema file {name!r} must be named <event.type>.v<N>.json")
    event_type, version = match["type"], int(match["version"])
    schema = json.loads(text)
    if schema.get("$schema") != SCHEMA_DIALECT:
        raise EventRegistryError(f"{name}: $schema must be {SCHEMA_DIALECT}")
    Draft202012Validator.check_schema(schema)
    channels = schema.get("x-calibr", {}).get("channels", [])
    if not channels or not set(channels) <= set(CHANNELS):
        raise EventRegistryError(f"{name}: x-calibr.channels must list some of {CHANNELS}")
    return EventSchema(event_type, version, schema, Draft202012Validator(schema))


def load_registry(files: Iterable[tuple[str, str]] | None = None) -> Registry:
    """The registry from (file name, JSON text) pairs; by default the packaged ``schemas/``."""
    if files is None:
        folder = resources.files("calibr_pipeline.events") / "schemas"
        files = [(f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".json")]
    schemas = {}
    for name, text in files:
        schema = _load_schema(name, text)
        schemas[(schema.event_type, schema.version)] = schema
    return Registry(schemas)


@lru_cache(maxsize=1)
def registry() -> Registry:
    return load_registry()
