"""What the local fakes of outside services share: a threaded HTTP server on a loopback port,
served from a daemon thread, started and stopped with the fake (also as a context manager)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class FakeHandler(BaseHTTPRequestHandler):
    """A request handler of a fake: ``self.server.fake`` is the fake it serves."""

    server: _HTTPServer
    # A reply written in several writes (headers, then body or events) would otherwise wait, from
    # its second write on, for the ACK of the first, which the client delays (40 ms on Linux)
    # while it has nothing to send.
    disable_nagle_algorithm = True

    def send_json(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """An answer of ``body``, JSON already encoded, with ``headers`` besides the type and
        length."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a benchmark's 100 clients connect at once; the default is 5

    def __init__(
        self, address: tuple[str, int], handler: type[FakeHandler], *, fake: FakeServer
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)


class FakeServer:
    """A fake's HTTP lifecycle. ``port=0`` picks a free port, which the fake keeps once started.
    ``_stopping`` is set while it stops, for handlers that wait on purpose to give up."""

    thread_name = "fake"

    def __init__(
        self, handler: type[FakeHandler], *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self.handler, fake=self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
