"""ClickHouse's HTTP interface, read path, on the embedded warehouse: what BI tools need to connect and query.

clickhouse-connect's HTTP client, Grafana's ClickHouse datasource (clickhouse-go over HTTP), DBeaver, Metabase
and Superset speak this protocol to a ClickHouse server. The sink owns the chDB directory, so it answers it
itself, on the query endpoint's port (`sinks.query_server`), for the analyst user only:

- ``GET /ping`` and ``GET /`` without a query answer ``Ok.``, without credentials, as ClickHouse does;
- ``GET`` or ``POST /?query=...`` (a POST body is the query, or its rest after the ``query`` parameter),
  ``database`` (the project database only), ``default_format`` or a trailing ``FORMAT`` clause (default
  TabSeparated), query parameters ``param_<name>``, and ``query_id``;
- credentials as ClickHouse takes them: ``X-ClickHouse-User``/``X-ClickHouse-Key``, HTTP Basic, or the
  ``user``/``password`` URL parameters. The user is `settings.clickhouse_analyst_user`, the password the
  endpoint file's token or `settings.sink.analyst_password` when set; anything else is ClickHouse's error 516;
- any other URL parameter is a setting: accepted when it equals the session's value, else refused with error
  164 as a ``readonly=1`` server does;
- the answer carries the headers clients read (X-ClickHouse-Summary, -Format, -Query-Id, -Timezone,
  -Server-Display-Name), is compressed only when the client asks (``enable_http_compression=1`` and
  Accept-Encoding gzip, deflate or lz4), and an error is ClickHouse's text ("Code: N. DB::Exception: ...")
  with X-ClickHouse-Exception-Code and the HTTP status ClickHouse gives that code.

Every query still goes through the guard (`sinks.guard`) on the ``readonly=1`` analyst session.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sinks.guard import QueryError, QueryRefused, one_line

# URL parameters of the protocol itself, not settings (ClickHouse's HTTPHandler reads them apart).
TRANSPORT_PARAMS = frozenset(
    {
        "query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
        "client_protocol_version", "wait_end_of_query", "buffer_size", "user", "password", "quota_key",
        "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
        "http_headers_progress_interval_ms", "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header", "compress", "decompress", "stacktrace",
    }
)  # fmt: skip
# Error names and the HTTP status ClickHouse answers them with (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp).
ERRORS: dict[int, tuple[str, HTTPStatus]] = {
    1: ("UNSUPPORTED_METHOD", HTTPStatus.BAD_REQUEST),
    36: ("BAD_ARGUMENTS", HTTPStatus.BAD_REQUEST),
    48: ("NOT_IMPLEMENTED", HTTPStatus.NOT_IMPLEMENTED),
    60: ("UNKNOWN_TABLE", HTTPStatus.NOT_FOUND),
    62: ("SYNTAX_ERROR", HTTPStatus.BAD_REQUEST),
    81: ("UNKNOWN_DATABASE", HTTPStatus.NOT_FOUND),
    159: ("TIMEOUT_EXCEEDED", HTTPStatus.REQUEST_TIMEOUT),
    164: ("READONLY", HTTPStatus.FORBIDDEN),
    202: ("TOO_MANY_SIMULTANEOUS_QUERIES", HTTPStatus.TOO_MANY_REQUESTS),
    396: ("TOO_MANY_ROWS_OR_BYTES", HTTPStatus.INTERNAL_SERVER_ERROR),
    497: ("ACCESS_DENIED", HTTPStatus.FORBIDDEN),
    516: ("AUTHENTICATION_FAILED", HTTPStatus.FORBIDDEN),
}
BAD_REQUEST_CODES = frozenset({6, 27, 38, 41, 43, 44, 46, 47, 53, 69, 70, 72, 115, 190, 352, 386, 457})
_CLICKHOUSE_ERROR = re.compile(r"Code: (\d+)\. DB::Exception: ")
# The name and version after a message, repeated when chDB wraps it: "(READONLY) (version X). (READONLY)".
_ERROR_TAIL = re.compile(r"(?:\s*\((?:[A-Z][A-Z0-9_]*|version [^)]*)\)\.?)+\s*$")
_ERROR_NAME = re.compile(r"\(([A-Z][A-Z0-9_]*)\)")
CONTENT_TYPES = {
    "tabseparated": "text/tab-separated-values", "tsv": "text/tab-separated-values",
    "csv": "text/csv", "csvwithnames": "text/csv", "json": "application/json", "jsoncompact": "application/json",
    "jsoneachrow": "application/x-ndjson", "xml": "application/xml",
}  # fmt: skip
DEFAULT_FORMAT = "TabSeparated"
MAX_QUERY_BYTES = 1 << 20  # a decompressed query, at most (the endpoint's limit on a request)
_INSERT = re.compile(r"\s*INSERT\b", re.IGNORECASE)
_INSERT_STATEMENT = re.compile(r"\s*(INSERT\b.*?\bFORMAT\s+\w+)", re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
# A query_id is echoed in a response header: CR/LF in it would add headers of the client's making.
_QUERY_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Native over HTTP follows the client's protocol version (``client_protocol_version``): from 1 on each block
# starts with its BlockInfo, from 54454 each column's type is followed by a "custom serialization" flag. chDB
# writes version 0, so the endpoint adds them (clickhouse-go, Grafana's driver, asks for its TCP revision).
BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"  # field 1 is_overflows=0, field 2 bucket_num=-1, end
REVISION_WITH_CUSTOM_SERIALIZATION = 54454


@dataclass(frozen=True)
class ServerInfo:
    """What the session says about itself, read once at start: for the headers and the readonly check."""

    version: str
    timezone: str
    display_name: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]


class ClickHouseHTTPError(Exception):
    """An error the way ClickHouse reports it: its code and one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Headers = Mapping[str, str] | Message  # http.server's headers are an email Message
Runner = Callable[[str, str, dict[str, Any] | None], bytes]


class HttpInterface:
    """Answers one HTTP request of ClickHouse's interface; `run` runs a guarded read-only query."""

    def __init__(self, run: Runner, info: ServerInfo, database: str, user: str, passwords: tuple[str, ...]) -> None:
        self.run = run
        self.info = info
        self.database = database
        self.user = user
        self._passwords = tuple(p.encode() for p in passwords if p)

    def handle(self, method: str, target: str, headers: Headers, body: bytes) -> Reply:
        url = urlsplit(target)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        bad_query_id = not _QUERY_ID.fullmatch(query_id)
        if bad_query_id:
            query_id = str(uuid.uuid4())
        base = {
            "X-ClickHouse-Server-Display-Name": self.info.display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.info.timezone,
        }
        if url.path == "/ping" or (url.path == "/" and method == "GET" and "query" not in params):
            return Reply(HTTPStatus.OK, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
        try:
            if url.path != "/":
                raise ClickHouseHTTPError(1, f"There is no handler {url.path} for this request")
            self._authenticate(headers, params)
            if bad_query_id:
                raise ClickHouseHTTPError(36, "query_id must be 1 to 128 printable ASCII characters without spaces")
            started = time.monotonic_ns()
            sql, fmt, args = self._query(method, params, headers, body)
            out = self.run(sql, fmt, args)
            revision = int(params.get("client_protocol_version") or 0)
            if fmt.lower() == "native" and revision:
                out = native_for_revision(out, revision)
            elapsed = time.monotonic_ns() - started
        except ClickHouseHTTPError as exc:
            return self._error(exc.code, exc.message, base)
        except QueryRefused as exc:
            message = str(exc).removeprefix("refused: ")
            code = 164 if "readonly" in message else 36 if message.startswith("bad request") else 497
            return self._error(code, message, base)
        except QueryError as exc:
            return self._clickhouse_error(str(exc), base)
        except NativeError as exc:
            return self._error(48, f"cannot convert Native to client protocol version: {exc}", base)
        summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0",
                   "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(out)),
                   "elapsed_ns": str(elapsed)}  # fmt: skip
        reply_headers = base | {
            "Content-Type": _content_type(fmt),
            "X-ClickHouse-Format": fmt,
            "X-ClickHouse-Summary": json.dumps(summary, separators=(",", ":")),
        }
        out, encoding = _compressed(out, params, headers)
        if encoding:
            reply_headers["Content-Encoding"] = encoding
        return Reply(HTTPStatus.OK, out, reply_headers)

    def _authenticate(self, headers: Headers, params: Mapping[str, str]) -> None:
        user, password = _credentials(headers, params)
        given = password.encode()
        # Every password is compared, in constant time, whoever the user is.
        good = [hmac.compare_digest(given, p) for p in self._passwords]
        if user != self.user or not any(good):
            raise ClickHouseHTTPError(
                516, f"{user}: Authentication failed: password is incorrect, or there is no user with such name"
            )

    def _query(
        self, method: str, params: Mapping[str, str], headers: Headers, body: bytes
    ) -> tuple[str, str, dict[str, Any] | None]:
        if method not in ("GET", "POST"):
            raise ClickHouseHTTPError(1, f"HTTP method {method} is not supported: use GET or POST")
        if params.get("compress", "0") != "0" or params.get("decompress", "0") != "0":
            raise ClickHouseHTTPError(48, "ClickHouse's native compression (compress=1) is not served here")
        database = params.get("database") or headers.get("X-ClickHouse-Database") or self.database
        if database != self.database:
            raise ClickHouseHTTPError(497, f"{database}: only the {self.database} database is readable here")
        args: dict[str, Any] = {}
        fields = dict(params)
        text = params.get("query", "")
        if method == "POST" and _INSERT.match(text):
            pass  # the body is the INSERT's data: the statement alone goes to the guard, which refuses it
        elif method == "POST":
            body = _decompressed(body, headers.get("Content-Encoding") or "")
            form = _form(headers, body)
            statement = _INSERT_STATEMENT.match(body[:65536].decode(errors="replace")) if form is None else None
            if statement:  # "INSERT ... FORMAT X" then its data (clickhouse-connect's insert): the statement is enough
                text = statement.group(1)
            elif form is None:
                try:
                    rest = body.decode()
                except UnicodeDecodeError as exc:
                    raise ClickHouseHTTPError(36, "the request body is not UTF-8 text") from exc
                text = f"{text}\n{rest}" if text and rest else text or rest
            else:
                fields |= form
                text = form.get("query", text)
        for name, value in fields.items():
            if name.startswith("param_"):
                args[name.removeprefix("param_")] = EscapedParam(value)
            elif name not in TRANSPORT_PARAMS and value != self.info.settings.get(name):
                if name not in self.info.settings:
                    raise ClickHouseHTTPError(115, f"Unknown setting '{name}'")
                raise ClickHouseHTTPError(164, f"Cannot modify '{name}' setting in readonly mode")
        if not text.strip():
            raise ClickHouseHTTPError(62, "Empty query")
        default = params.get("default_format") or headers.get("X-ClickHouse-Format") or DEFAULT_FORMAT
        sql = text.strip().rstrip(";").strip()
        m = _TRAILING_FORMAT.search(sql)
        if m and not _INSERT.match(sql):  # an INSERT's FORMAT names its data's: the statement keeps it
            return sql[: m.start()], m.group(1), args or None
        return sql, default, args or None

    def _clickhouse_error(self, message: str, headers: dict[str, str]) -> Reply:
        text = one_line(message)
        found = list(_CLICKHOUSE_ERROR.finditer(text))
        if not found:
            return self._error(1000, text, headers)
        # chDB may wrap its message in another "Code: N. DB::Exception:": the innermost one is the error.
        inner = text[found[-1].end() :]
        tail = _ERROR_TAIL.search(inner)
        named = _ERROR_NAME.search(tail.group(0)) if tail else None
        body = inner[: tail.start()] if tail else inner
        return self._error(int(found[-1].group(1)), body, headers, named.group(1) if named else None)

    def _error(self, code: int, message: str, headers: dict[str, str], name: str | None = None) -> Reply:
        known_name, status = ERRORS.get(code, ("", HTTPStatus.INTERNAL_SERVER_ERROR))
        if code in BAD_REQUEST_CODES:
            status = HTTPStatus.BAD_REQUEST
        name = name or known_name or "UNKNOWN_EXCEPTION"
        text = f"Code: {code}. DB::Exception: {message.rstrip('.')}. ({name}) (version {self.info.version})\n"
        return Reply(
            status,
            text.encode(),
            headers | {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(code)},
        )


class NativeError(ValueError):
    """A Native answer whose columns this endpoint cannot walk."""


def native_for_revision(data: bytes, revision: int) -> bytes:
    """chDB's Native output (protocol version 0) as a server writes it for a client of `revision`.

    The column data is copied as it is: `_Walker` only finds where each column ends.
    """
    walker = _Walker(data)
    out = bytearray()
    try:
        while walker.at < len(data):
            if revision > 0:
                out += BLOCK_INFO
            start = walker.at
            columns, rows = walker.leb128(), walker.leb128()
            out += data[start : walker.at]
            for _ in range(columns):
                start = walker.at
                walker.string()
                type_name = walker.string().decode()
                out += data[start : walker.at]
                if revision >= REVISION_WITH_CUSTOM_SERIALIZATION:
                    out += b"\x00"  # no custom (sparse) serialization: chDB writes every column in full
                start = walker.at
                walker.column(_parse_type(type_name), rows)
                out += data[start : walker.at]
    except (IndexError, ValueError) as exc:
        raise NativeError(str(exc)) from exc
    return bytes(out)


# Fixed widths of Native's plain columns, in bytes per row.
_WIDTHS = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "UInt16": 2, "Int16": 2, "Date": 2, "Enum16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "BFloat16": 2,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "UInt128": 16, "Int128": 16, "UUID": 16,
    "IPv6": 16, "UInt256": 32, "Int256": 32, "Nothing": 1,
}  # fmt: skip


_NAMED_ELEMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]* +([A-Za-z].*)$")


def _parse_type(text: str) -> tuple[str, list[Any]]:
    """A ClickHouse type name as (name, arguments), nested types parsed, other arguments kept as text."""
    text = text.strip()
    name, paren, rest = text.partition("(")
    if not paren:
        return name, []
    args, depth, quoted, current = [], 0, False, ""
    for ch in rest[:-1]:
        if ch == "'" and not current.endswith("\\"):
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    args.append(current.strip())
    return name, args


def _skip_strings(data: bytes, at: int, rows: int) -> int:
    """The offset after `rows` length-prefixed strings from `at`: one tight loop, the hot path of a Native answer."""
    for _ in range(rows):
        size = data[at]
        at += 1
        if size & 0x80:  # a length of 128 or more: LEB128 continues
            size &= 0x7F
            shift = 7
            while True:
                byte = data[at]
                at += 1
                size |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
        at += size
    if at > len(data):
        raise ValueError("Native data ends inside a column")
    return at


class _Walker:
    """Steps over Native columns (default serialization) without decoding them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ValueError("Native data ends inside a column")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def leb128(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def string(self) -> bytes:
        return self.take(self.leb128())

    def uint64(self) -> int:
        return int.from_bytes(self.take(8), "little")

    def column(self, kind: tuple[str, list[Any]], rows: int, prefix: bool = True) -> None:
        name, args = kind
        if name == "LowCardinality":
            if prefix and rows:
                self.take(8)  # the key version, written once per column
            if rows:
                flags = self.uint64()
                inner = _parse_type(args[0])
                if inner[0] == "Nullable":
                    inner = _parse_type(inner[1][0])  # the dictionary holds the plain type, null at index 0
                self.column(inner, self.uint64())
                self.take(self.uint64() * (1 << (flags & 0xFF)))
            return
        if name == "Nullable":
            self.take(rows)
            self.column(_parse_type(args[0]), rows)
        elif name in ("Array", "Map"):
            offsets = [self.uint64() for _ in range(rows)]
            nested = offsets[-1] if offsets else 0
            if name == "Array":
                self.column(_parse_type(args[0]), nested)
            else:
                self.column(_parse_type(args[0]), nested)
                self.column(_parse_type(args[1]), nested)
        elif name == "Tuple":
            for arg in args:
                named = _NAMED_ELEMENT.match(arg)  # Tuple(a UInt8, b String): the type follows the name
                self.column(_parse_type(named.group(1) if named else arg), rows)
        elif name == "String":
            self.at = _skip_strings(self.data, self.at, rows)
        elif name == "FixedString":
            self.take(rows * int(args[0]))
        elif name.startswith("Decimal"):
            width = {"Decimal32": 4, "Decimal64": 8, "Decimal128": 16, "Decimal256": 32}.get(name)
            if width is None:
                precision = int(args[0])
                width = 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32
            self.take(rows * width)
        elif name in _WIDTHS:
            self.take(rows * _WIDTHS[name])
        else:
            raise ValueError(f"type {name} is not handled")


class EscapedParam(str):
    """A ``param_`` value as the client sent it, in ClickHouse's escaped text form, to reach chDB unchanged.

    The session binds parameters through clickhouse-connect, which escapes a string (``escape_str``, that is
    ``str.translate``) for this same form; this value is already in it, so translating returns it as it is.
    How it reads depends on the parameter's type ({s:String} unescapes ``\\'``, {a:Array(String)} keeps it
    inside its quotes), and chDB decides that exactly as a server would.
    """

    def translate(self, table: Any, /) -> str:
        return str(self)


def _credentials(headers: Headers, params: Mapping[str, str]) -> tuple[str, str]:
    """The user and password of a request, taken where ClickHouse takes them; no credentials is user default."""
    if headers.get("X-ClickHouse-User") is not None:
        return headers.get("X-ClickHouse-User") or "default", headers.get("X-ClickHouse-Key") or ""
    scheme, _, value = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "default", ""
        return user or "default", password
    return params.get("user") or "default", params.get("password") or ""


def _form(headers: Headers, body: bytes) -> dict[str, str] | None:
    """The fields of a multipart/form-data body (clickhouse-connect's form encoding), else None."""
    content_type = headers.get("Content-Type") or ""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = payload.decode() if isinstance(payload, bytes) else ""
    return fields


def _decompressed(body: bytes, encoding: str) -> bytes:
    """A request body as sent with Content-Encoding (gzip, deflate, lz4), decompressed."""
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        # Bounded: a small compressed body must not become gigabytes here.
        if encoding in ("gzip", "deflate"):
            unpacker = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            out = unpacker.decompress(body, MAX_QUERY_BYTES)
            too_large = bool(unpacker.unconsumed_tail)
        elif encoding == "lz4":
            import lz4.frame

            out = bytes(lz4.frame.LZ4FrameDecompressor().decompress(body, max_length=MAX_QUERY_BYTES + 1))
            too_large = len(out) > MAX_QUERY_BYTES
        else:
            raise ClickHouseHTTPError(48, f"Content-Encoding {encoding} is not supported (gzip, deflate, lz4 are)")
    except ClickHouseHTTPError:
        raise
    except Exception as exc:  # each library has its own error type: all mean a corrupt body
        raise ClickHouseHTTPError(36, f"cannot decompress the {encoding} request body: {exc}") from exc
    if too_large:
        raise ClickHouseHTTPError(36, f"the decompressed query is larger than {MAX_QUERY_BYTES} bytes")
    return out


def _content_type(fmt: str) -> str:
    kind = CONTENT_TYPES.get(fmt.lower())
    if kind is None and fmt.lower().startswith(("tabseparated", "tsv")):
        kind = "text/tab-separated-values"
    if kind is None and fmt.lower().startswith("json"):
        kind = "application/json"
    return f"{kind}; charset=UTF-8" if kind else "application/octet-stream"


def _compressed(out: bytes, params: Mapping[str, str], headers: Headers) -> tuple[bytes, str | None]:
    """The body compressed the way the client asked, or as it is: ClickHouse compresses only when asked twice."""
    if params.get("enable_http_compression") != "1":
        return out, None
    accepted = [e.split(";")[0].strip().lower() for e in (headers.get("Accept-Encoding") or "").split(",")]
    for encoding in accepted:
        if encoding == "gzip":
            packer = zlib.compressobj(wbits=31)
            return packer.compress(out) + packer.flush(), "gzip"
        if encoding == "deflate":
            return zlib.compress(out), "deflate"
        if encoding == "lz4":
            import lz4.frame

            return lz4.frame.compress(out), "lz4"
    return out, None


__all__ = ["ClickHouseHTTPError", "HttpInterface", "NativeError", "Reply", "ServerInfo", "native_for_revision"]
