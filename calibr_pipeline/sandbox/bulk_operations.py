"""Bulk mutations in the sandbox shop, after Shopify's documentation.

Protocol (shopify.dev "Perform bulk operations with the GraphQL Admin API", "Bulk import
data with the GraphQL Admin API"), built from the documentation alone:

1. ``stagedUploadsCreate(input: [{resource: BULK_MUTATION_VARIABLES, filename, mimeType:
   "text/jsonl", httpMethod: POST}])`` answers a target: ``url`` (here a loopback URL of
   this server), and ``parameters`` to post as form fields before the file; the ``key``
   parameter is the ``stagedUploadPath``.
2. ``POST <url>`` multipart/form-data (the parameters, then ``file``) stores the JSONL;
   201 on success. An upload expires (the sandbox's ``upload_ttl_seconds``, default 1 h).
3. ``bulkOperationRunMutation(mutation, stagedUploadPath)`` starts the operation: one call
   of ``mutation`` per JSONL line, the line being its variables. At most one bulk mutation
   per shop runs at a time (2025-01): a second gets ``OPERATION_IN_PROGRESS``; a missing or
   expired file ``NO_SUCH_FILE``; an invalid mutation ``INVALID_MUTATION``.
4. The operation goes CREATED -> RUNNING -> COMPLETED | FAILED (``errorCode``) in the
   background, at ``line_seconds`` per line; ``node(id:)`` / ``currentBulkOperation(type:
   MUTATION)`` show ``status``, ``objectCount``, ``url`` (COMPLETED) or
   ``partialDataUrl`` (FAILED after some lines).
5. ``GET url`` returns the result JSONL: one line per input line, ``{"data": {...},
   "__lineNumber": n}`` (or ``"errors"``), not necessarily in input order.

Lines do not consume the shop's request bucket (bulk operations are not rate-limited per
call). Faults: :meth:`BulkOperations.fail_next` (the next operation FAILS, optionally
after some lines, leaving a partial result file), :meth:`BulkOperations.expire_uploads`
and :meth:`BulkOperations.expire_next_upload` (the file is gone when the run starts).
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import OperationType, execute, get_operation_ast, parse, validate

from calibr_pipeline.sandbox._http import SandboxRequest, SandboxResponse

if TYPE_CHECKING:
    from calibr_pipeline.sandbox.shopify_admin import AdminShop, ShopifyAdminSandbox

BULK_GID = "gid://shopify/BulkOperation/"
_UPLOAD_PATH = re.compile(r"^/shops/(?P<shop>[A-Za-z0-9][A-Za-z0-9_.-]*)/staged-uploads/(?P<token>[0-9a-f]+)$")
_RESULT_PATH = re.compile(r"^/shops/(?P<shop>[A-Za-z0-9][A-Za-z0-9_.-]*)/bulk-results/(?P<op>[0-9]+)(?P<partial>-partial)?\.jsonl$")


@dataclass
class _Upload:
    key: str
    created: float
    data: bytes | None = None


@dataclass
class BulkOperationState:
    id: str
    shop: str
    mutation: str
    status: str = "CREATED"
    error_code: str | None = None
    object_count: int = 0
    created_at: str = ""
    completed_at: str | None = None
    results: list[dict] = field(default_factory=list)
    url: str | None = None
    partial_url: str | None = None

    def as_node(self) -> dict[str, Any]:
        return {"__typename": "BulkOperation", "id": self.id, "status": self.status, "errorCode": self.error_code,
                "objectCount": str(self.object_count), "rootObjectCount": str(self.object_count), "url": self.url,
                "partialDataUrl": self.partial_url, "createdAt": self.created_at, "completedAt": self.completed_at,
                "type": "MUTATION", "query": self.mutation, "fileSize": None}


@dataclass
class _Failure:
    error_code: str
    after_lines: int


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class BulkOperations:
    """The bulk-operation half of the sandbox Admin API (one per :class:`ShopifyAdminSandbox`)."""

    def __init__(self, sandbox: ShopifyAdminSandbox, *, line_seconds: float = 0.002, start_seconds: float = 0.05,
                 upload_ttl_seconds: float = 3600.0):
        self.sandbox = sandbox
        self.line_seconds = line_seconds
        self.start_seconds = start_seconds
        self.upload_ttl_seconds = upload_ttl_seconds
        self._lock = threading.Lock()
        self._uploads: dict[str, _Upload] = {}  # token -> upload
        self._operations: dict[str, BulkOperationState] = {}
        self._ids = itertools.count(1)
        self._failures: dict[str, list[_Failure]] = {}
        self.started: dict[str, int] = {}  # operations started per shop
        self._expire_next: set[str] = set()

    def install(self) -> None:
        s = self.sandbox
        s.register_resolver("Mutation", "stagedUploadsCreate", self._staged_uploads_create)
        s.register_resolver("Mutation", "bulkOperationRunMutation", self._run_mutation)
        s.register_resolver("QueryRoot", "currentBulkOperation", self._current)
        plain_node = s._resolvers["QueryRoot", "node"]
        s.register_resolver("QueryRoot", "node", lambda src, info, id: self._node(id, info) if id.startswith(BULK_GID) else plain_node(src, info, id=id))

    # -- faults -------------------------------------------------------------------------------

    def fail_next(self, shop: str, *, error_code: str = "INTERNAL_SERVER_ERROR", after_lines: int = 0) -> None:
        """The next bulk operation of ``shop`` ends FAILED with ``error_code`` after processing
        ``after_lines`` lines (their results in ``partialDataUrl``)."""
        with self._lock:
            self._failures.setdefault(shop, []).append(_Failure(error_code, after_lines))

    def expire_uploads(self, shop: str | None = None) -> None:
        """Every staged upload (of ``shop``) is gone, as after its expiry."""
        with self._lock:
            for token, upload in list(self._uploads.items()):
                if shop is None or upload.key.startswith(f"tmp/{shop}/"):
                    del self._uploads[token]

    def expire_next_upload(self, shop: str) -> None:
        """The next file uploaded for ``shop`` has expired by the time the operation is started."""
        with self._lock:
            self._expire_next.add(shop)

    def operation(self, gid: str) -> BulkOperationState:
        return self._operations[gid]

    # -- GraphQL resolvers --------------------------------------------------------------------

    def _staged_uploads_create(self, _src: Any, info: Any, input: list[dict]) -> dict[str, Any]:
        shop: AdminShop = info.context.shop
        targets, errors = [], []
        for index, item in enumerate(input):
            if item.get("resource") != "BULK_MUTATION_VARIABLES":
                errors.append({"field": ["input", str(index), "resource"], "message": "The sandbox stages BULK_MUTATION_VARIABLES uploads only"})
                continue
            token = uuid.uuid4().hex
            key = f"tmp/{shop.name}/bulk/{token}/{item.get('filename') or 'bulk_op_vars.jsonl'}"
            with self._lock:
                self._uploads[token] = _Upload(key=key, created=time.monotonic())
            url = f"{self.sandbox.base_url}/shops/{shop.name}/staged-uploads/{token}"
            targets.append({"url": url, "resourceUrl": url, "parameters": [
                {"name": "key", "value": key},
                {"name": "Content-Type", "value": item.get("mimeType") or "text/jsonl"},
                {"name": "success_action_status", "value": "201"},
            ]})
        return {"stagedTargets": targets, "userErrors": errors}

    def _upload_for(self, key: str) -> _Upload | None:
        now = time.monotonic()
        with self._lock:
            for upload in self._uploads.values():
                if upload.key == key and upload.data is not None and now - upload.created <= self.upload_ttl_seconds:
                    return upload
        return None

    def _run_mutation(self, _src: Any, info: Any, mutation: str, stagedUploadPath: str, clientIdentifier: str | None = None) -> dict[str, Any]:
        shop: AdminShop = info.context.shop

        def refuse(code: str, message: str, field_name: str) -> dict[str, Any]:
            return {"bulkOperation": None, "userErrors": [{"field": [field_name], "message": message, "code": code}]}

        with self._lock:
            running = [op for op in self._operations.values() if op.shop == shop.name and op.status in ("CREATED", "RUNNING", "CANCELING")]
        if running:
            return refuse("OPERATION_IN_PROGRESS", f"A bulk mutation operation for this app and shop is already in progress: {running[0].id}.", "mutation")
        try:
            document = parse(mutation)
        except Exception:  # noqa: BLE001 - graphql-core raises GraphQLError subclasses
            return refuse("INVALID_MUTATION", "Failed to parse the mutation", "mutation")
        operation = get_operation_ast(document)
        if validate(self.sandbox.schema, document) or operation is None or operation.operation != OperationType.MUTATION:
            return refuse("INVALID_MUTATION", "Invalid mutation: it must be one valid mutation", "mutation")
        upload = self._upload_for(stagedUploadPath)
        if upload is None:
            return refuse("NO_SUCH_FILE", f"The file {stagedUploadPath} does not exist (or its upload expired).", "stagedUploadPath")
        lines = [line for line in upload.data.decode("utf-8").splitlines() if line.strip()]
        with self._lock:
            number = next(self._ids)
            failure = (self._failures.get(shop.name) or [None]).pop(0) if self._failures.get(shop.name) else None
            op = BulkOperationState(id=f"{BULK_GID}{number}", shop=shop.name, mutation=mutation, created_at=_now_iso())
            self._operations[op.id] = op
            self.started[shop.name] = self.started.get(shop.name, 0) + 1
        base = f"{self.sandbox.base_url}/shops/{shop.name}/bulk-results/{number}"
        threading.Thread(target=self._process, args=(op, shop, document, lines, failure, number, base), daemon=True, name=f"bulk-{number}").start()
        return {"bulkOperation": {"__typename": "BulkOperation", "id": op.id, "status": op.status}, "userErrors": []}

    def _current(self, _src: Any, info: Any, type: str = "QUERY") -> dict[str, Any] | None:
        shop: AdminShop = info.context.shop
        with self._lock:
            ops = [op for op in self._operations.values() if op.shop == shop.name and type == "MUTATION"]
        return ops[-1].as_node() if ops else None

    def _node(self, gid: str, info: Any) -> dict[str, Any] | None:
        op = self._operations.get(gid)
        if op is None or op.shop != info.context.shop.name:
            return None
        return op.as_node()

    # -- the background run -------------------------------------------------------------------

    def _process(self, op: BulkOperationState, shop: AdminShop, document: Any, lines: list[str], failure: _Failure | None, number: int, base: str) -> None:
        from calibr_pipeline.sandbox.shopify_admin import ResolveContext, _resolve_type

        time.sleep(self.start_seconds)
        op.status = "RUNNING"
        for line_number, line in enumerate(lines):
            if failure is not None and line_number >= failure.after_lines:
                break
            time.sleep(self.line_seconds)
            try:
                variables = json.loads(line)
            except ValueError:
                op.results.append({"errors": [{"message": "Invalid JSON on this line"}], "__lineNumber": line_number})
                continue
            with shop.lock:
                result = execute(self.sandbox.schema, document, context_value=ResolveContext(shop=shop, sandbox=self.sandbox, request_id=f"bulk-{number}-{line_number}"),
                                 variable_values=variables, field_resolver=self.sandbox._resolve, type_resolver=_resolve_type)
            entry: dict[str, Any] = {}
            if result.errors:
                entry["errors"] = [err.formatted for err in result.errors]
            if result.data is not None:
                entry["data"] = result.data
            entry["__lineNumber"] = line_number
            op.results.append(entry)
            op.object_count += 1
        op.completed_at = _now_iso()
        if failure is not None:
            op.error_code = failure.error_code
            op.partial_url = f"{base}-partial.jsonl" if op.results else None
            op.status = "FAILED"
        else:
            op.url = f"{base}.jsonl" if op.results else None
            op.status = "COMPLETED"

    # -- HTTP: the staged upload target and the result files ----------------------------------

    def handle_http(self, request: SandboxRequest) -> SandboxResponse | None:
        if (match := _UPLOAD_PATH.match(request.path)) is not None:
            return self._receive_upload(match["token"], request)
        if (match := _RESULT_PATH.match(request.path)) is not None:
            op = self._operations.get(f"{BULK_GID}{match['op']}")
            if op is None or op.shop != match["shop"] or request.method != "GET":
                return SandboxResponse(404, b"Not Found", content_type="text/plain")
            if (op.status != "COMPLETED" and not match["partial"]) or (match["partial"] and op.status != "FAILED"):
                return SandboxResponse(404, b"Not Found", content_type="text/plain")
            # Shopify does not promise the input order; the sandbox reverses it to keep clients honest.
            body = "".join(json.dumps(entry, separators=(",", ":")) + "\n" for entry in reversed(op.results))
            return SandboxResponse(200, body.encode("utf-8"), content_type="application/jsonl")
        return None

    def _receive_upload(self, token: str, request: SandboxRequest) -> SandboxResponse:
        with self._lock:
            upload = self._uploads.get(token)
        if upload is None or time.monotonic() - upload.created > self.upload_ttl_seconds:
            return SandboxResponse(403, b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", content_type="application/xml")
        if request.method != "POST":
            return SandboxResponse(405, b"Method Not Allowed", content_type="text/plain")
        content_type = request.headers.get("content-type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body
        )
        fields: dict[str, bytes] = {}
        if message.is_multipart():
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if name:
                    fields[str(name)] = part.get_payload(decode=True) or b""
        if fields.get("key", b"").decode() != upload.key or "file" not in fields:
            return SandboxResponse(400, b"<Error><Code>InvalidArgument</Code><Message>key and file are required</Message></Error>", content_type="application/xml")
        upload.data = fields["file"]
        with self._lock:
            shop = upload.key.split("/")[1]
            if shop in self._expire_next:
                self._expire_next.discard(shop)
                upload.created = float("-inf")
        return SandboxResponse(201, f"<PostResponse><Key>{upload.key}</Key></PostResponse>".encode(), content_type="application/xml")
