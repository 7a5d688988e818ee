"""Real webhook receivers for tests: HTTP (``Receiver``) and HTTPS (``TLSReceiver``) servers on a
free loopback port that record every request and answer it as scripted.

::

    with Receiver() as receiver:
        receiver.script(Reply.status(500), Reply.redirect("/elsewhere"))
        ...  # deliver to receiver.url + "/hook" three times
        first, second, third = receiver.wait_for(3)  # from async code: await receiver.arrived(3)
        assert third.header("webhook-id") == first.header("webhook-id")

Answers. Each request takes the next ``Reply`` given to ``script``; once the script has run out,
``responder(request)`` if the receiver has one, else ``default`` (200, empty body). A reply:

* ``Reply.status(code, body, headers)``: an answer (``Reply()`` is a 200 with no body);
* ``Reply.redirect(location, status_code=302)``: a redirect;
* ``Reply.hang(seconds)``: waits, by default until the receiver stops, then answers 200. A client
  that disconnects meanwhile ends the wait and gets nothing (for TLS, any sign of life from the
  client counts as leaving: it sends nothing else while it waits for its answer);
* ``Reply.big(size)``: a body of ``size`` bytes written in 64 KiB chunks, stopping as soon as the
  client closes the connection;
* ``Reply.dropped()``: closes the connection without answering.

Records (all thread-safe; the lists are copies):

* ``requests``: each ``ReceivedRequest`` when it arrives, before it is answered: method, path
  (with the query), headers as sent, body, ``at`` (``time.time()``), ``connection`` (1 for the
  first TCP connection, 2 for the next...) and, over TLS, the ``server_name`` the client sent
  (SNI; None without SNI, as for an IP address);
* ``exchanges``: each ``Exchange`` once answered: its request and reply, ``sent`` (body bytes
  written) and ``client_left`` (the client went away before the answer was complete);
* ``connections``: connections accepted; ``open_connections``: those still open (HTTP/1.1
  keep-alive is on); ``TLSReceiver.tls_failures``: TLS handshakes that failed.

Waiting: ``wait_for(count)`` and ``wait_for_exchanges(count)`` block the calling thread until
``count`` requests (exchanges) are in, ``await arrived(count)`` polls from async code; all three
raise ``AssertionError`` after ``timeout`` seconds.

``reset()`` forgets the records and the script. ``stop()`` (or leaving the ``with``) ends waiting
answers, closes every connection and joins every thread, so nothing outlives the test.

``TLSReceiver`` serves HTTPS with a certificate for ``localhost`` and ``127.0.0.1`` signed by a
throwaway CA made for it: ``url`` is ``https://localhost:<port>``, ``ip_url``
``https://127.0.0.1:<port>``. ``client_context`` is an ``ssl.SSLContext`` trusting only that CA;
``ca_pem`` is the CA certificate, for another process (write it to a file and point
``SSL_CERT_FILE`` at it).

``StubResolver`` answers names from a table, for a ``WebhookTransport(resolver=...)``: with it, a
name such as ``hooks.example`` leads to a receiver without any DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import select
import socket
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CHUNK_BYTES = 64 * 1024
# How often a waiting answer looks at its client and at the receiver stopping.
POLL_SECONDS = 0.02
# A kept-alive connection idle this long is closed by the receiver.
IDLE_SECONDS = 30.0
HANDSHAKE_SECONDS = 5.0


@dataclass(frozen=True)
class Reply:
    """How the receiver answers one request."""

    status_code: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering; ``math.inf`` waits until the receiver stops."""
    size: int | None = None
    """When set, the body is this many bytes, written in chunks, instead of ``body``."""
    drop: bool = False
    """Close the connection without answering (after ``delay``)."""

    @classmethod
    def status(
        cls, status_code: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> Reply:
        return cls(status_code=status_code, body=body, headers=dict(headers or {}))

    @classmethod
    def redirect(cls, location: str, status_code: int = 302) -> Reply:
        return cls(status_code=status_code, headers={"Location": location})

    @classmethod
    def hang(cls, seconds: float = math.inf, status_code: int = 200) -> Reply:
        return cls(status_code=status_code, delay=seconds)

    @classmethod
    def big(cls, size: int, status_code: int = 200) -> Reply:
        return cls(status_code=status_code, size=size)

    @classmethod
    def dropped(cls) -> Reply:
        return cls(drop=True)


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    at: float
    connection: int
    server_name: str | None = None

    def header(self, name: str) -> str | None:
        """The first header called ``name``, in any case."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Exchange:
    request: ReceivedRequest
    reply: Reply
    sent: int
    """Body bytes written to the client."""
    client_left: bool
    """The client went away before the answer was complete (or before it began)."""


class StubResolver:
    """Answers from a table; a name not in it does not resolve."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


class Receiver:
    """An HTTP webhook receiver; see the module's docstring."""

    scheme = "http"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default: Reply | None = None,
        responder: Callable[[ReceivedRequest], Reply] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.default = default or Reply()
        self.responder = responder
        self._changed = threading.Condition()
        self._script: deque[Reply] = deque()
        self._requests: list[ReceivedRequest] = []
        self._exchanges: list[Exchange] = []
        self._connections = 0
        self._tls_failures = 0
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._changed:
            return list(self._requests)

    @property
    def exchanges(self) -> list[Exchange]:
        with self._changed:
            return list(self._exchanges)

    @property
    def connections(self) -> int:
        with self._changed:
            return self._connections

    @property
    def open_connections(self) -> int:
        with self._changed:
            return len(self._open)

    def script(self, *replies: Reply) -> None:
        """Answers the next requests with ``replies``, in order."""
        with self._changed:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._changed:
            self._script.clear()
            self._requests.clear()
            self._exchanges.clear()
            self._connections = 0
            self._tls_failures = 0

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """The first ``count`` requests, once they have arrived (blocks the calling thread)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise AssertionError(
                    f"{len(self._requests)} requests after {timeout}s, expected {count}"
                )
            return self._requests[:count]

    def wait_for_exchanges(self, count: int, timeout: float = 10.0) -> list[Exchange]:
        """The first ``count`` exchanges, once they have ended."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._exchanges) >= count, timeout):
                raise AssertionError(
                    f"{len(self._exchanges)} exchanges after {timeout}s, expected {count}"
                )
            return self._exchanges[:count]

    async def arrived(self, count: int, timeout: float = 10.0) -> list[ReceivedRequest]:
        """``wait_for`` for async code: polls without blocking the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            requests = self.requests
            if len(requests) >= count:
                return requests[:count]
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(requests)} requests after {timeout}s, expected {count}")
            await asyncio.sleep(POLL_SECONDS)

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server((self.host, self.port), self, self._server_context())
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._changed:
            open_sockets = list(self._open)
        for sock in open_sockets:
            _shut(sock)
        server.server_close()  # joins the connections' threads
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

    def _server_context(self) -> ssl.SSLContext | None:
        return None

    def _opened(self, sock: socket.socket) -> int | None:
        """Counts a new connection; None if the receiver is stopping (close it)."""
        with self._changed:
            self._connections += 1
            if self._stopping.is_set():
                return None
            self._open.add(sock)
            return self._connections

    def _wrapped(self, plain: socket.socket, tls: socket.socket) -> bool:
        """Tracks the TLS socket in place of the one it wraps; False if stopping (close it)."""
        with self._changed:
            self._open.discard(plain)
            self._open.add(tls)
            return not self._stopping.is_set()

    def _closed(self, *socks: socket.socket) -> None:
        with self._changed:
            self._open.difference_update(socks)
            self._changed.notify_all()

    def _received(self, request: ReceivedRequest) -> Reply:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()
            if self._script:
                return self._script.popleft()
        return self.responder(request) if self.responder is not None else self.default

    def _answered(self, exchange: Exchange) -> None:
        with self._changed:
            self._exchanges.append(exchange)
            self._changed.notify_all()

    def _handshake_failed(self) -> None:
        with self._changed:
            self._tls_failures += 1
            self._changed.notify_all()


class TLSReceiver(Receiver):
    """An HTTPS webhook receiver with its own CA; see the module's docstring."""

    scheme = "https"

    def __init__(
        self,
        *,
        port: int = 0,
        default: Reply | None = None,
        responder: Callable[[ReceivedRequest], Reply] | None = None,
    ) -> None:
        super().__init__(host="127.0.0.1", port=port, default=default, responder=responder)
        self.certificates = make_certificates(names=("localhost",), addresses=("127.0.0.1",))

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def ip_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        return self.certificates.ca_pem

    @property
    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this receiver's CA and nothing else."""
        return ssl.create_default_context(cadata=self.certificates.ca_pem.decode("ascii"))

    @property
    def tls_failures(self) -> int:
        with self._changed:
            return self._tls_failures

    def _server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="receiver-tls-") as directory:
            cert, key = Path(directory, "cert.pem"), Path(directory, "key.pem")
            cert.write_bytes(self.certificates.cert_pem)
            key.write_bytes(self.certificates.key_pem)
            context.load_cert_chain(cert, key)
        return context


@dataclass(frozen=True)
class Certificates:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def make_certificates(*, names: tuple[str, ...], addresses: tuple[str, ...]) -> Certificates:
    """A throwaway CA and a server certificate it signed for ``names`` and ``addresses``, valid
    for a day."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Switchboard test CA")])
    ca_identifier = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_identifier, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alternative_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternative_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in addresses]
    common_name = names[0] if names else addresses[0]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_identifier),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Certificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown: SSLSocket.shutdown would drop its TLS state under the
    # thread still using it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], receiver: Receiver, tls: ssl.SSLContext | None
    ) -> None:
        self.receiver = receiver
        self.tls = tls
        self.local = threading.local()
        if tls is not None:
            tls.sni_callback = self._note_server_name
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread, so the TLS handshake holds up no one else.
        sock: socket.socket = request
        number = self.receiver._opened(request)
        try:
            if number is None:
                return
            self.local.server_name = None
            if self.tls is not None:
                try:
                    request.settimeout(HANDSHAKE_SECONDS)
                    sock = self.tls.wrap_socket(request, server_side=True)
                except (OSError, ValueError):
                    self.receiver._handshake_failed()
                    return
                if not self.receiver._wrapped(request, sock):
                    return
            self.local.connection = number
            self.RequestHandlerClass(sock, client_address, self)
        finally:
            self.receiver._closed(request, sock)
            if sock is not request:
                sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that goes away mid-request is what some tests do on purpose

    def _note_server_name(
        self, sock: ssl.SSLSocket | ssl.SSLObject, name: str | None, context: ssl.SSLContext
    ) -> None:
        self.local.server_name = name


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        receiver = self.server.receiver
        body = self._read_body()
        request = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers=tuple(self.headers.items()),
            body=body,
            at=time.time(),
            connection=self.server.local.connection,
            server_name=self.server.local.server_name,
        )
        reply = receiver._received(request)
        sent, left = self._answer(reply)
        receiver._answered(Exchange(request=request, reply=reply, sent=sent, client_left=left))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, reply: Reply) -> tuple[int, bool]:
        """Writes the answer: body bytes sent, and whether the client left first."""
        if reply.delay > 0 and self._client_left_within(reply.delay):
            self.close_connection = True
            return 0, True
        if reply.drop:
            self.close_connection = True
            return 0, False
        sent = 0
        try:
            self.send_response(reply.status_code)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            length = reply.size if reply.size is not None else len(reply.body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if reply.size is None:
                self.wfile.write(reply.body)
                sent = len(reply.body)
            else:
                chunk = b"x" * CHUNK_BYTES
                while sent < reply.size:
                    part = chunk[: reply.size - sent]
                    self.wfile.write(part)
                    sent += len(part)
        except OSError:
            self.close_connection = True
            return sent, True
        return sent, False

    def _client_left_within(self, seconds: float) -> bool:
        """Waits ``seconds``; True as soon as the client leaves or the receiver stops."""
        deadline = time.monotonic() + seconds
        stopping = self.server.receiver._stopping
        while (remaining := deadline - time.monotonic()) > 0:
            if stopping.is_set() or self._client_left(min(remaining, POLL_SECONDS)):
                return True
        return False

    def _client_left(self, wait: float) -> bool:
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], wait)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        if isinstance(sock, ssl.SSLSocket):
            return True
        try:
            pending = sock.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        if pending:
            # The client's next request, sent early: it waits its turn.
            time.sleep(wait)
            return False
        return True
