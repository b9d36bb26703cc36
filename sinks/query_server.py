"""Read-only SQL over HTTP on localhost, served by the process that owns the chDB directory.

chDB allows one process per data directory, so while `shekara sink` runs, `shekara sql` and `shekara report`
cannot open the warehouse themselves: they ask the sink, which runs their query on a separate
``readonly=1`` session. The endpoint listens on 127.0.0.1 only and its port is written next to the data
directory (`sinks.clickhouse.query_endpoint_file`).

Protocol: ``POST /query`` with JSON ``{"sql": ..., "format": ..., "params": {...}}``; the answer is ClickHouse's
output in that format (200), or the error message (400). ``GET /health`` answers ``ok``.
"""

from __future__ import annotations

import json
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from clickhouse_connect.driver.client import Client

from shekara.logs import get_logger
from shekara.settings import Settings
from sinks.clickhouse import WarehouseBusy, connect, query_endpoint_file

log = get_logger(__name__)
MAX_REQUEST_BYTES = 1 << 20


class QueryServer:
    """The endpoint, running in a daemon thread of the owning process. Use `start` / `stop`."""

    def __init__(self, settings: Settings, client: Client, httpd: ThreadingHTTPServer) -> None:
        self.settings = settings
        self.client = client
        self.httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="shekara-query-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @classmethod
    def start(cls, settings: Settings) -> QueryServer:
        client = connect(settings, readonly=True)
        run = _runner(client)
        httpd = ThreadingHTTPServer(("127.0.0.1", settings.sink.query_port), _handler(run))
        httpd.daemon_threads = True
        server = cls(settings, client, httpd)
        server._thread.start()
        _write_endpoint(settings, server.port)
        log.info("query endpoint listening", port=server.port)
        return server

    def stop(self) -> None:
        path = query_endpoint_file(self.settings)
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass
        self.httpd.shutdown()
        self.httpd.server_close()
        self.client.close()


def _write_endpoint(settings: Settings, port: int) -> None:
    path = query_endpoint_file(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    tmp.replace(path)


def _runner(client: Client) -> Any:
    lock = threading.Lock()  # one readonly session: queries take turns

    def run(sql: str, fmt: str, params: dict[str, Any]) -> bytes:
        with lock:
            return bytes(client.raw_query(sql, parameters=params or None, fmt=fmt))

    return run


def _handler(run: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            if self.path == "/health":
                self._reply(HTTPStatus.OK, b"ok")
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"not found")

        def do_POST(self) -> None:
            if self.path != "/query":
                self._reply(HTTPStatus.NOT_FOUND, b"not found")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"query too large")
                return
            try:
                request = json.loads(self.rfile.read(length))
                fmt = str(request.get("format") or "TabSeparated")
                body = run(str(request["sql"]), fmt, request.get("params") or {})
            except (ValueError, KeyError) as exc:
                self._reply(HTTPStatus.BAD_REQUEST, f"bad request: {exc}".encode())
            except Exception as exc:  # the query's own error, for the analyst to read
                self._reply(HTTPStatus.BAD_REQUEST, str(exc).encode())
            else:
                self._reply(HTTPStatus.OK, body)

        def _reply(self, status: HTTPStatus, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            log.debug("query endpoint", request=format % args)

    return Handler


class QueryError(RuntimeError):
    """ClickHouse refused the query (syntax, unknown table, write under readonly...): the message says why."""


def ask(settings: Settings, sql: str, fmt: str, params: dict[str, Any] | None = None, timeout: float = 300.0) -> bytes:
    """Run a read-only query through the endpoint of the process that owns the chDB directory."""
    path = query_endpoint_file(settings)
    try:
        port = int(json.loads(path.read_text())["port"])
    except (OSError, ValueError, KeyError) as exc:
        raise WarehouseBusy(
            f"the ClickHouse directory is owned by another process that serves no queries ({path} missing)"
        ) from exc
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}/query",
            json={"sql": sql, "format": fmt, "params": params or {}},
            timeout=timeout,
        )
    except httpx.TransportError as exc:
        raise WarehouseBusy(f"the owner of the ClickHouse directory does not answer on port {port}: {exc}") from exc
    if response.status_code != HTTPStatus.OK:
        raise QueryError(response.text)
    return response.content
