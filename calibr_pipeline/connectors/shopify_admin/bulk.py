"""Bulk price writes through Shopify's bulk mutation API.

``stagedUploadsCreate`` -> upload the JSONL of ``productVariantsBulkUpdate`` variables to the
staged target -> ``bulkOperationRunMutation`` -> poll ``node(id:)`` -> download the result
JSONL -> per-variant outcomes. One line per product (``{"productId", "variants"}``); the
result lines carry ``__lineNumber`` and come in any order.

Nothing here retries a mutation: the caller decides, from the operation's outcome, which
variants are certainly written (a result line says so), certainly refused (userErrors) or
unknown (the operation FAILED before their line, a poll or download was lost) — the last
are read back, never resent blindly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import requests

from calibr_pipeline.connectors.shopify_admin.client import ShopifyAdminClient
from calibr_pipeline.connectors.shopify_admin.documents import load_document
from calibr_pipeline.connectors.shopify_admin.errors import ShopifyAdminError
from calibr_pipeline.domain.errors import ErrorClass

LINE_DOCUMENT = "BulkVariantPriceLine"
TERMINAL = ("COMPLETED", "FAILED", "CANCELED", "EXPIRED")
LOST_ANSWER_TRIES = 3
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # Shopify's limit for a bulk mutation's variables file


@dataclass(frozen=True)
class BulkLine:
    product_gid: str
    updates: Sequence[tuple[str, Decimal]]  # (variant gid, price)


@dataclass(frozen=True)
class VariantOutcome:
    variant_gid: str
    ok: bool
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class BulkResult:
    operation_id: str | None
    status: str  # COMPLETED / FAILED / CANCELED / EXPIRED / REFUSED (never started) / LOST (unknown)
    error_code: str | None
    outcomes: dict[str, VariantOutcome]  # only variants a result line speaks of
    message: str = ""


def jsonl_for(lines: Sequence[BulkLine], currency_format: Callable[[Decimal], str] = str) -> bytes:
    body = "".join(
        json.dumps({"productId": line.product_gid, "variants": [{"id": gid, "price": currency_format(price)} for gid, price in line.updates]},
                   separators=(",", ":")) + "\n"
        for line in lines
    ).encode("utf-8")
    if len(body) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the bulk variables file is {len(body)} bytes, over Shopify's {MAX_UPLOAD_BYTES}: split the run")
    return body


def _data(client: ShopifyAdminClient, name: str, variables: dict) -> dict:
    return client.execute_source(load_document(name), variables, operation_name=name)


def start_bulk_price_update(client: ShopifyAdminClient, lines: Sequence[BulkLine], *, client_identifier: str | None = None) -> BulkResult | str:
    """Upload the lines and start the operation; its gid, or a REFUSED result (nothing runs)."""
    body = jsonl_for(lines)
    staged = _data(client, "StagedUploadsCreate", {"input": [{"resource": "BULK_MUTATION_VARIABLES", "filename": "calibr_prices.jsonl",
                                                                "mimeType": "text/jsonl", "httpMethod": "POST"}]})["stagedUploadsCreate"]
    if staged["userErrors"] or not staged["stagedTargets"]:
        return BulkResult(None, "REFUSED", "STAGED_UPLOAD", {}, "; ".join(e["message"] for e in staged["userErrors"]) or "no staged target")
    target = staged["stagedTargets"][0]
    fields = {p["name"]: p["value"] for p in target["parameters"]}
    try:
        answer = client.session.post(target["url"], data=fields, files={"file": ("calibr_prices.jsonl", body, "text/jsonl")}, timeout=client.timeout)
    except requests.RequestException as exc:
        return BulkResult(None, "REFUSED", "UPLOAD_FAILED", {}, f"upload failed: {type(exc).__name__}")
    if answer.status_code not in (200, 201, 204):
        return BulkResult(None, "REFUSED", "UPLOAD_FAILED", {}, f"upload answered HTTP {answer.status_code}")
    started = _data(client, "BulkOperationRunMutation", {"mutation": load_document(LINE_DOCUMENT), "stagedUploadPath": fields["key"],
                                                         "clientIdentifier": client_identifier})["bulkOperationRunMutation"]
    if started["userErrors"] or not started["bulkOperation"]:
        error = (started["userErrors"] or [{"code": "UNKNOWN", "message": "no operation"}])[0]
        return BulkResult(None, "REFUSED", error.get("code") or "UNKNOWN", {}, error["message"])
    return started["bulkOperation"]["id"]


def poll_bulk_operation(client: ShopifyAdminClient, operation_id: str, *, sleep: Callable[[float], None] = time.sleep,
                        interval: float = 0.2, timeout: float = 24 * 3600.0) -> dict:
    """Poll until the operation ends (Shopify ends every bulk operation within 24 h)."""
    waited = 0.0
    while True:
        node = _data(client, "BulkOperationStatus", {"id": operation_id})["node"]
        if node is None:
            raise ShopifyAdminError(f"bulk operation {operation_id} not found", error_class=ErrorClass.HTTP_4XX, code="NOT_FOUND")
        if node["status"] in TERMINAL:
            return node
        if waited >= timeout:
            raise ShopifyAdminError(f"bulk operation {operation_id} still {node['status']} after {timeout:g} s", error_class=ErrorClass.TIMEOUT)
        sleep(interval)
        waited += interval
        interval = min(interval * 1.5, 10.0)


def read_results(client: ShopifyAdminClient, url: str | None, lines: Sequence[BulkLine]) -> dict[str, VariantOutcome]:
    """Per-variant outcomes from a result file (by ``__lineNumber``, in any order)."""
    if not url:
        return {}
    answer = client.session.get(url, timeout=client.timeout)
    if answer.status_code != 200:
        raise ShopifyAdminError(f"bulk result file answered HTTP {answer.status_code}", error_class=ErrorClass.HTTP_5XX if answer.status_code >= 500 else ErrorClass.HTTP_4XX)
    outcomes: dict[str, VariantOutcome] = {}
    for raw in answer.text.splitlines():
        if not raw.strip():
            continue
        entry = json.loads(raw)
        number = entry.get("__lineNumber")
        if not isinstance(number, int) or not 0 <= number < len(lines):
            continue
        line = lines[number]
        payload = ((entry.get("data") or {}).get("productVariantsBulkUpdate")) or {}
        written = {v["id"] for v in (payload.get("productVariants") or []) if isinstance(v, dict)}
        errors = payload.get("userErrors") or []
        for index, (gid, _price) in enumerate(line.updates):
            if gid in written:
                outcomes[gid] = VariantOutcome(gid, True)
                continue
            mine = [e for e in errors if isinstance(e.get("field"), list) and len(e["field"]) > 1 and e["field"][1] == str(index)]
            error = (mine or errors or [{"code": "MISSING_RESULT", "message": "; ".join(str(e.get("message")) for e in entry.get("errors") or []) or "not written"}])[0]
            if entry.get("errors") and not errors:
                continue  # the line failed as a whole (GraphQL errors): unknown, read it back
            outcomes[gid] = VariantOutcome(gid, False, error.get("code") or "USER_ERROR", error.get("message"))
    return outcomes


def run_bulk_price_update(client: ShopifyAdminClient, lines: Sequence[BulkLine], *, sleep: Callable[[float], None] = time.sleep,
                          on_started: Callable[[str], None] | None = None, poll_interval: float = 0.2) -> BulkResult:
    """The whole protocol; a lost poll or download is LOST (the caller reads the variants back)."""
    started = start_bulk_price_update(client, lines)
    if isinstance(started, BulkResult):
        return started
    if on_started is not None:
        on_started(started)
    last_error: Exception | None = None
    for _ in range(LOST_ANSWER_TRIES):  # a lost poll or download is asked again, never the mutation
        try:
            node = poll_bulk_operation(client, started, sleep=sleep, interval=poll_interval)
            url = node.get("url") if node["status"] == "COMPLETED" else node.get("partialDataUrl")
            outcomes = read_results(client, url, lines)
            break
        except (ShopifyAdminError, requests.RequestException, ValueError) as exc:
            last_error = exc
            sleep(poll_interval)
    else:
        return BulkResult(started, "LOST", None, {}, f"lost track of the operation: {last_error}")
    return BulkResult(started, node["status"], node.get("errorCode"), outcomes,
                      f"bulk operation {node['status']}" + (f" ({node['errorCode']})" if node.get("errorCode") else ""))
