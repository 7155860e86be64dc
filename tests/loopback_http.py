"""A real HTTP server on 127.0.0.1 serving a folder, with byte ranges (as S3, GCS and nginx do).

Python's ``http.server`` ignores ``Range``; Zarr reads shard indexes with range requests, so
this handler answers single ranges (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``) with 206.
Dataset downloads resume with ranges; a :class:`ServerState` passed to :func:`serve_folder`
records every GET with its ``Range`` header, can break off the connection after
``drop_after`` bytes of a body (the first ``drops`` times), and can slow bodies down
(``delay`` seconds per 64 KiB) so that a client can be interrupted mid-file.
Used by the tests and by ``benchmarks/pull.py``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["serve_folder", "RangeRequestHandler", "ServerState"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PIECE = 1 << 16


@dataclass
class ServerState:
    drop_after: int | None = None  # bytes of a body sent before the connection is cut
    drops: int = 1  # how many bodies are cut
    delay: float = 0.0  # seconds slept per 64 KiB of body
    requests: list = field(default_factory=list)  # (path, Range header or None) per GET
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_drop(self, body_len: int) -> int | None:
        with self.lock:
            if self.drop_after is None or self.drops <= 0 or body_len <= self.drop_after:
                return None
            self.drops -= 1
            return self.drop_after


class RangeRequestHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def __init__(self, *args, state: ServerState | None = None, **kwargs):
        self.state = state if state is not None else ServerState()
        super().__init__(*args, **kwargs)

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.state.requests.append((self.path, self.headers.get("Range")))
        match = _RANGE.match(self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            return super().do_GET()
        size = os.path.getsize(path)
        if not match:
            if self.state.drop_after is None and not self.state.delay:
                return super().do_GET()
            return self._send_body(path, 0, size - 1, size, status=200)
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last or 0), 0), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_body(path, start, end, size, status=206)

    def _send_body(self, path: str, start: int, end: int, size: int, status: int) -> None:
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        cut = self.state.take_drop(len(body))
        for i in range(0, len(body) if cut is None else cut, _PIECE):
            piece = body[i : i + _PIECE] if cut is None else body[i : min(i + _PIECE, cut)]
            self.wfile.write(piece)
            if self.state.delay:
                time.sleep(self.state.delay)
        if cut is not None:  # break off mid-body, as a dropped connection does
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def serve_folder(folder, state: ServerState | None = None):
    """Serve ``folder`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(RangeRequestHandler, directory=str(folder), state=state)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
