"""A stand-in OTLP/HTTP collector on loopback: it accepts trace exports and drops them.

``bench/http.py --tracing`` points the server's exporter at one, so the cost of tracing is
measured with spans really encoded and posted, without a collector; the server integration
tests keep what it receives (``keep=True``) and decode it.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["OtlpSink"]


class OtlpSink:
    """Listens on a free loopback port from :meth:`start` (or ``with``) until :meth:`stop`;
    answers every POST with 200 and an empty ``ExportTraceServiceResponse``. ``url`` is the
    base to give ``OTEL_EXPORTER_OTLP_ENDPOINT``; ``posts`` counts the exports, ``bodies``
    holds them (protobuf ``ExportTraceServiceRequest``) when ``keep``."""

    def __init__(self, *, keep: bool = False) -> None:
        self.keep = keep
        self.posts = 0
        self.bodies: list[bytes] = []
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    sink.posts += 1
                    sink.paths.add(self.path)
                    if sink.keep:
                        sink.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per export would drown the bench's output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; blocks until the serving thread has ended."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> OtlpSink:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
