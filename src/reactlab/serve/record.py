"""``reactlab serve --record DIR``: every chat exchange appended to one JSONL file per server process,
each line durable before the reply goes out (``io.JsonlAppender``). A record holds what training
needs and nothing that authenticates: the request's messages, tools and decoding parameters (a fixed
list of body fields), the reply, the usage; never a header. ``data.recorded`` reads them back."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from reactlab.io import JsonlAppender

PARAMS = ("model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n",
          "tool_choice", "stream")
"""The request fields recorded as ``params``; any other field (``user``, a client's extras) is not."""


class Recorder:
    """Appends ``{conversation_id, request: {messages, tools, params}, reply: {message, finish_reason},
    usage, time}`` lines to ``DIR/exchanges-<start time>-<pid>.jsonl``. Thread-safe: one line at a time."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        self.path = self.dir / f"exchanges-{stamp}-{os.getpid()}.jsonl"
        self._out = JsonlAppender(self.path, noun="exchanges")
        self._lock = threading.Lock()

    def record(self, conversation: str, body: dict[str, Any], message: dict[str, Any], finish_reason: str,
               usage: dict[str, Any]) -> None:
        """Append one exchange; raises ``OutputError`` (a full disk) with the file still whole."""
        request = {"messages": body["messages"], "tools": body.get("tools") or [],
                   "params": {k: body[k] for k in PARAMS if k in body}}
        rec = {"conversation_id": conversation, "request": request,
               "reply": {"message": message, "finish_reason": finish_reason}, "usage": usage,
               "time": round(time.time(), 3)}
        with self._lock:
            self._out.append(rec)

    def close(self) -> None:
        with self._lock:
            self._out.close()
