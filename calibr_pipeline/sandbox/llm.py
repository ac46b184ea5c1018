"""A loopback OpenAI-compatible chat-completions server that plays back scripted turns.

Built from the chat-completions wire format (``POST /v1/chat/completions``: messages and
tools in, ``choices[0].message`` with ``content`` or ``tool_calls`` out); it imports nothing
from the client it checks. A script is a list of turns, each ``{"content": text}`` or
``{"tool_calls": [{"name": ..., "arguments": <string or object>}]}``, chosen by the first
registered key found in the last user message; turn *n* answers a request that already has
*n* assistant messages. Scripts can be hostile: they are how the red-team suite plays a
model that tries to escape. Every request is recorded (``requests``) for assertions.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

from calibr_pipeline.sandbox._http import SandboxHTTPServer, SandboxRequest, SandboxResponse


class ScriptedChatApp:
    def __init__(self):
        self.scripts: dict[str, list[dict]] = {}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.default = [{"content": "I can only answer with the tools."}]

    def shop_for(self, request: SandboxRequest) -> str | None:
        return "llm"

    def script(self, key: str, turns: list[dict]) -> None:
        with self._lock:
            self.scripts[key] = turns

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.method != "POST" or request.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return SandboxResponse.json({"error": {"message": "not found", "type": "invalid_request_error"}}, status=404)
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return SandboxResponse.json({"error": {"message": "missing API key", "type": "invalid_request_error"}}, status=401)
        try:
            body = request.json()
            messages = body["messages"]
        except (ValueError, KeyError, TypeError):
            return SandboxResponse.json({"error": {"message": "invalid body", "type": "invalid_request_error"}}, status=400)
        with self._lock:
            self.requests.append(body)
            user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
            turns = next((t for k, t in self.scripts.items() if k in user), self.default)
        turn_index = sum(1 for m in messages if m.get("role") == "assistant")
        turn = turns[min(turn_index, len(turns) - 1)] if turns else {"content": ""}
        message: dict = {"role": "assistant", "content": turn.get("content")}
        if "tool_calls" in turn:
            message["tool_calls"] = [
                {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])}}
                for c in turn["tool_calls"]
            ]
        return SandboxResponse.json({
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if "tool_calls" in turn else "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })


def start_llm_sandbox(host: str = "127.0.0.1", port: int = 0) -> tuple[SandboxHTTPServer, ScriptedChatApp]:
    app = ScriptedChatApp()
    server = SandboxHTTPServer(app, name="llm", host=host, port=port).start()
    return server, app
