"""Read-only SQL over HTTP on localhost, served by the process that owns the chDB directory.

chDB allows one process per data directory, so while `shekara sink` runs, `shekara sql` and `shekara report`
cannot open the warehouse themselves: they ask the sink, which runs their query on a separate ``readonly=1``
session with the analyst limits (`sinks.clickhouse.analyst_limits`), each query checked by the guard first
(`sinks.guard`: no INTO OUTFILE, KILL, other sessions' queries, files or network). The endpoint listens on
127.0.0.1 only.

Credentials: a random token, made at start. The owner writes the port and the token to the endpoint file
next to the data directory (`sinks.clickhouse.query_endpoint_file`), created 0600 and put in place atomically,
so only the owner's user (and root) can ask. A request carries the token as ``Authorization: Bearer <token>``,
or as ClickHouse's HTTP clients send credentials (HTTP Basic, or ``X-ClickHouse-User`` / ``X-ClickHouse-Key``)
with user `settings.clickhouse_analyst_user` and the token as password; anything else gets 401.

Protocol: ``POST /query`` with JSON ``{"sql": ..., "format": ..., "params": {...}}``; the answer is ClickHouse's
output in that format (200), or one line saying why not (400). ``GET /health`` answers ``ok`` without a token.
The same port also speaks ClickHouse's own HTTP interface (``/``, ``/ping``: `sinks.http_interface`) for BI
tools, where the analyst's password may also be `settings.sink.analyst_password`; it binds
`settings.sink.query_bind` (loopback unless that password is set, `shekara.settings.check_secrets`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import os
import re
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from clickhouse_connect.driver.client import Client

from shekara.logs import get_logger
from shekara.settings import Settings
from sinks.clickhouse import WarehouseBusy, connect, query_endpoint_file
from sinks.guard import GuardedSession, QueryError, one_line
from sinks.http_interface import HttpInterface, ServerInfo

log = get_logger(__name__)
MAX_REQUEST_BYTES = 1 << 20
# A connection silent this long (request line, headers, body, or a keep-alive pause) is closed: each holds a
# thread, and one that never finishes its request (slowloris) would hold it forever.
IDLE_TIMEOUT_SECONDS = 60.0
# A request's line, headers and body must all arrive within this: a client sending a byte now and then is never
# idle, yet never finishes (slowloris trickling). Queries and answers are not counted: they have their own limits.
REQUEST_DEADLINE_SECONDS = 120.0
_URL_PASSWORD = re.compile(r"([?&]password=)[^&\s\"]*", re.IGNORECASE)


class QueryServer:
    """The endpoint, running in a daemon thread of the owning process. Use `start` / `stop`."""

    def __init__(self, settings: Settings, client: Client, httpd: ThreadingHTTPServer, token: str) -> None:
        self.settings = settings
        self.client = client
        self.httpd = httpd
        self.token = token
        self._thread = threading.Thread(target=httpd.serve_forever, name="shekara-query-server", daemon=True)
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @classmethod
    def start(cls, settings: Settings) -> QueryServer:
        client = connect(settings, readonly=True)
        token = secrets.token_urlsafe(32)
        run = _runner(GuardedSession(client, settings.sink.database))
        check = _credentials(settings.clickhouse_analyst_user, token)
        passwords = (token, settings.sink.analyst_password.get_secret_value())
        interface = HttpInterface(
            run, server_info(client), settings.sink.database, settings.clickhouse_analyst_user, passwords
        )
        address = (settings.sink.query_bind, settings.sink.query_port)
        deadlines = Deadlines(REQUEST_DEADLINE_SECONDS)
        httpd = ThreadingHTTPServer(address, _handler(run, check, interface, IDLE_TIMEOUT_SECONDS, deadlines))
        httpd.daemon_threads = True
        server = cls(settings, client, httpd, token)
        server._thread.start()
        watchdog = threading.Thread(
            target=deadlines.watch, args=(server._stop,), name="shekara-query-deadlines", daemon=True
        )
        watchdog.start()
        write_private(query_endpoint_file(settings), {"port": server.port, "pid": os.getpid(), "token": token})
        log.info("query endpoint listening", bind=settings.sink.query_bind, port=server.port)
        return server

    def stop(self) -> None:
        path = query_endpoint_file(self.settings)
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()


class Deadlines:
    """Connections whose request is being read, each with the time it must be read by; `watch` ends late ones."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._due: dict[socket.socket, float] = {}

    def reading(self, conn: socket.socket) -> None:
        with self._lock:
            self._due[conn] = time.monotonic() + self.seconds

    def read(self, conn: socket.socket) -> None:
        with self._lock:
            self._due.pop(conn, None)

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(min(1.0, self.seconds / 4)):
            now = time.monotonic()
            with self._lock:
                late = [conn for conn, due in self._due.items() if due < now]
                for conn in late:
                    del self._due[conn]
            for conn in late:
                with contextlib.suppress(OSError):  # the handler's blocked read returns: its thread ends the connection
                    conn.shutdown(socket.SHUT_RDWR)


def write_private(path: Path, doc: dict[str, Any]) -> None:
    """Write `doc` as JSON readable by this user only: created 0600 (never wider, not even briefly), then renamed
    over `path` so a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def server_info(client: Client) -> ServerInfo:
    """The session's version, time zone, name and settings, as ClickHouse's HTTP interface reports them."""
    version, timezone, name = client.query("SELECT version(), timezone(), displayName()").result_rows[0]
    rows = client.query("SELECT name, value FROM system.settings").result_rows
    return ServerInfo(str(version), str(timezone), str(name), {str(k): str(v) for k, v in rows})


def _runner(session: GuardedSession) -> Any:
    lock = threading.Lock()  # one readonly session: queries take turns

    def run(sql: str, fmt: str, params: dict[str, Any] | None) -> bytes:
        with lock:
            return session.raw(sql, fmt, params)

    return run


def _credentials(user: str, token: str) -> Any:
    """A check of a request's headers: the token as a bearer, or as the analyst user's password."""
    expected = token.encode()

    def same(given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected)

    def check(headers: Any) -> bool:
        authorization = headers.get("Authorization") or ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return same(value.strip())
        if scheme.lower() == "basic":
            try:
                name, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return name == user and same(password)
        if headers.get("X-ClickHouse-User") is not None:
            return headers.get("X-ClickHouse-User") == user and same(headers.get("X-ClickHouse-Key"))
        return False

    return check


def _handler(
    run: Any, authorized: Any, interface: HttpInterface, idle_timeout: float, deadlines: Deadlines
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as BI clients' connection pools expect
        timeout = idle_timeout  # the socket's, per read or write (socketserver.StreamRequestHandler)

        def handle_one_request(self) -> None:
            deadlines.reading(self.connection)  # from the wait for the request line to the body's end
            try:
                super().handle_one_request()
            finally:
                deadlines.read(self.connection)

        def do_GET(self) -> None:  # http.server's naming
            deadlines.read(self.connection)  # a GET's body is never read
            if not self._framed():
                return
            if self.headers.get("Content-Length") not in (None, "0"):
                self.close_connection = True  # a GET's body is never read: left in the stream it would be a request
            if self.path == "/health":
                self._reply(HTTPStatus.OK, b"ok")
            elif urlsplit(self.path).path in ("/", "/ping"):
                self._clickhouse(b"")
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found")

        def do_POST(self) -> None:
            if not self._framed():
                return
            if urlsplit(self.path).path in ("/", "/ping"):
                body = self._body()
                if body is not None:
                    self._clickhouse(body)
                return
            if self.path != "/query":
                self._reply(HTTPStatus.NOT_FOUND, b"not found")
                return
            if not authorized(self.headers):
                self._reply(HTTPStatus.UNAUTHORIZED, b"unauthorized: the query endpoint wants its token")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._reply(HTTPStatus.BAD_REQUEST, b"bad request: Content-Length is not a number")
                return
            if length > MAX_REQUEST_BYTES or length < 0:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"query too large")
                return
            try:
                raw = self.rfile.read(length)
                deadlines.read(self.connection)
                request = json.loads(raw)
                if not isinstance(request, dict) or "sql" not in request:
                    raise ValueError('want a JSON object {"sql": ..., "format": ..., "params": {...}}')
                fmt = request.get("format") or "TabSeparated"
                body = run(request["sql"], fmt, request.get("params") or None)
            except ValueError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, f"bad request: {one_line(str(exc))}".encode())
            except QueryError as exc:  # the guard's or ClickHouse's one line, for the analyst to read
                self._reply(HTTPStatus.BAD_REQUEST, str(exc).encode())
            except Exception as exc:  # anything else still gets one line, and the log has it
                log.warning("query endpoint failed", error=repr(exc))
                self._reply(HTTPStatus.BAD_REQUEST, f"query failed: {one_line(str(exc))}".encode())
            else:
                self._reply(HTTPStatus.OK, body)

        def _framed(self) -> bool:
            """Whether the body's end is unambiguous, else False once a 4xx/501 ending the connection is sent.

            Only plain ``chunked`` or a Content-Length: with another Transfer-Encoding ("chunked, identity") or
            both headers, this server and a proxy in front could read different bodies, and the rest of one
            would be taken as the next request (request smuggling).
            """
            encoding = self.headers.get("Transfer-Encoding")
            if encoding is None:
                return True
            if encoding.strip().lower() != "chunked" or len(self.headers.get_all("Transfer-Encoding") or []) > 1:
                self._reply(HTTPStatus.NOT_IMPLEMENTED, b"bad request: Transfer-Encoding must be chunked or absent")
                return False
            if self.headers.get("Content-Length") is not None:
                self._reply(HTTPStatus.BAD_REQUEST, b"bad request: both Transfer-Encoding and Content-Length")
                return False
            return True

        def _body(self) -> bytes | None:
            """The request's body, or None once a 4xx has been sent for it."""
            if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                return self._chunked()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length > MAX_REQUEST_BYTES or length < 0:
                self.close_connection = True
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"query too large or without a Content-Length")
                return None
            return self.rfile.read(length)

        def _chunked(self) -> bytes | None:
            """A body sent in chunks (a streamed insert), read to its end or refused past MAX_REQUEST_BYTES."""
            body = bytearray()
            while True:
                try:
                    size = int(self.rfile.readline(64).split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    size = -1
                if size < 0 or len(body) + size > MAX_REQUEST_BYTES:
                    self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"query too large or badly chunked")
                    return None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline(8)  # the CRLF after the chunk

        def _clickhouse(self, body: bytes) -> None:
            deadlines.read(self.connection)
            try:
                reply = interface.handle(self.command, self.path, self.headers, body)
            except Exception as exc:  # one line for the client, the log has the rest
                log.warning("ClickHouse HTTP interface failed", error=repr(exc))
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, f"query failed: {one_line(str(exc))}".encode())
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def _reply(self, status: HTTPStatus, body: bytes) -> None:
            # The JSON protocol's answers end the connection: its body may be left unread (a 401 reads none).
            self.close_connection = True
            self.send_response(status)
            self.send_header("Connection", "close")
            self.send_header("Content-Type", "application/octet-stream")
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="shekara"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            # ClickHouse clients may put the password in the URL (?password=...): the log never shows it.
            log.debug("query endpoint", request=_URL_PASSWORD.sub(r"\1***", format % args))

    return Handler


def ask(settings: Settings, sql: str, fmt: str, params: dict[str, Any] | None = None, timeout: float = 300.0) -> bytes:
    """Run a read-only query through the endpoint of the process that owns the chDB directory."""
    path = query_endpoint_file(settings)
    try:
        endpoint = json.loads(path.read_text())
        port, token = int(endpoint["port"]), str(endpoint["token"])
    except PermissionError as exc:
        raise WarehouseBusy(
            f"the ClickHouse directory is owned by another user's process; its query endpoint file {path} "
            "is readable by that user only"
        ) from exc
    except FileNotFoundError as exc:
        raise WarehouseBusy(
            f"the ClickHouse directory is owned by another process that serves no queries ({path} missing)"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WarehouseBusy(f"the query endpoint file {path} is unreadable or has no port and token: {exc}") from exc
    GuardedSession._validated(sql, fmt, params)  # bad input in one line here, before it is sent (undecodable text)
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}/query",
            json={"sql": sql, "format": fmt, "params": params or {}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        raise WarehouseBusy(f"the owner of the ClickHouse directory does not answer on port {port}: {exc}") from exc
    if response.status_code != HTTPStatus.OK:
        raise QueryError(response.text)
    return response.content


__all__ = ["QueryError", "QueryServer", "ask", "write_private"]
