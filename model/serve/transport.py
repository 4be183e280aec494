"""Requests in, errors out: what the prediction API (`model.serve.api`) does with HTTP before and after the model.

Limits, the same as the app's and checked before the work they guard:

* the request body: Content-Length over `Limits.request_bytes` is refused before a byte is read, and the bytes
  are counted as they arrive (a chunked body has no Content-Length); each file is capped at MAX_VOLUME_BYTES
  while it streams in, and `model.scans.scan_io` applies its own caps (2D file size, pixels, voxels) when reading;
* files per request (`Limits.max_files`: a long DICOM series, or a batch) and the time an upload may take;
* requests in flight (`model.serve.api.Service`): `max_in_flight` at once, counted from before the body is read, so memory stays bounded;
  one more is answered 503 with Retry-After at once, never queued.

Uploads never touch the disk and are never logged. Starlette's form parser spools every file part to a
SpooledTemporaryFile, which rolls over to a temporary file on disk above 1 MB; so the endpoints declare no
`File()` parameter and read the raw request stream themselves, parsing it with python-multipart's streaming
`MultipartParser` into bytearrays (`read_uploads`). The request body schema shown in /docs is declared by hand.

Errors are JSON, {"error": {"code": ..., "message": ...}}: 400 unreadable scan (the ScanError's message), 401
missing or wrong API key, 404, 405, 408 upload too slow, 413 too large or too many files, 415 not multipart or
not a scan type, 422 bad query values, 503 busy, 500 anything else (a generic message; the log gets only the
exception's type).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from model.reports.record import ErrorDetail
from model.scans.scan_io import MAX_UPLOAD_BYTES, MAX_VOLUME_BYTES, clean_name

log = logging.getLogger("model.serve.api")  # the API's log: one line per internal error, its type only
# python-multipart logs each parse error it raises, quoting a byte of the body; the 400 says enough
_MULTIPART_LOG = logging.getLogger("model.serve.api.multipart")
_MULTIPART_LOG.addHandler(logging.NullHandler())
_MULTIPART_LOG.propagate = False


@dataclass(frozen=True)
class Limits:
    """What one request may carry. Sizes in bytes."""

    request_bytes: int = MAX_VOLUME_BYTES + (4 << 20)  # a scan (a series is capped at that) + framing; batches too
    file_bytes: int = MAX_VOLUME_BYTES  # one file as it streams in; scan_io caps a 2D image at MAX_UPLOAD_BYTES
    max_files: int = 1000  # files in one request: a long DICOM series of single-frame files, or a batch
    max_fields: int = 16  # non-file form fields (ignored, but counted)
    field_bytes: int = 64 << 10  # one non-file form field
    upload_seconds: float = 120.0  # the whole body must arrive within this, or 408: a slow upload holds a slot


# ---------------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error a client can act on: an HTTP status, a stable code and a plain message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
               413: "too_large", 415: "unsupported_media_type", 503: "busy"}


async def _on_api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error_response(exc.status, exc.code, exc.message, exc.headers)


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = {404: f"no such endpoint: {request.method} {request.url.path}; see /docs",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    return _error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), message,
                           getattr(exc, "headers", None))


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's errors as one line each ('slice: Input should be greater than or equal to 1'); the input
    values are not echoed."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "header", "path", "body"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return _error_response(422, "invalid_parameter", "; ".join(parts) or "invalid request")


class _ContainErrors:
    """Pure ASGI middleware: any exception left unhandled becomes a generic 500 and one log line with its type.

    Starlette's own catch-all answers 500 but re-raises, and uvicorn then logs the trace, whose messages can
    quote a file's bytes or name; here nothing but the type and the endpoint reaches the log."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # the last line of defence: never a trace to the client or the log
            log.error("internal error (%s) on %s %s", type(exc).__name__, scope.get("method"), scope.get("path"))
            if not started:
                response = _error_response(500, "internal_error", "the server could not answer this request; "
                                           "the error was logged without the upload")
                await response(scope, receive, send)


# ---------------------------------------------------------------------------------------------- uploads


class _Parts:
    """python-multipart callbacks that keep every file part in memory, checking counts and sizes as data comes."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.files: list[tuple[str, bytearray]] = []
        self.fields = 0
        self._name, self._value, self._disposition = bytearray(), bytearray(), b""
        self._current: bytearray | None = None  # the file being read; None inside a non-file field
        self._field_size = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data}

    def on_part_begin(self) -> None:
        self._disposition, self._current, self._field_size = b"", None, 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._name).lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._name, self._value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"filename" not in options:
            self.fields += 1
            if self.fields > self.limits.max_fields:
                raise ApiError(400, "too_many_fields", f"more than {self.limits.max_fields} form fields; send the "
                                                       "scan files only (options go in the query string)")
            return
        if len(self.files) >= self.limits.max_files:
            raise ApiError(413, "too_many_files", f"more than {self.limits.max_files:,} files in one request")
        self._current = bytearray()
        self.files.append((clean_name(options[b"filename"].decode("utf-8", "replace")), self._current))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is None:
            self._field_size += end - start
            if self._field_size > self.limits.field_bytes:
                raise ApiError(413, "too_large", f"a form field is over {self.limits.field_bytes // 1024} KB")
            return
        if len(self._current) + end - start > self.limits.file_bytes:
            name = self.files[-1][0]
            raise ApiError(413, "too_large", f"{name}: over the {self.limits.file_bytes // 2**20} MB limit for one "
                                             "file")
        self._current += data[start:end]


def _too_large(limits: Limits) -> ApiError:
    return ApiError(413, "too_large", f"the request is over the {limits.request_bytes // 2**20} MB limit; a scan "
                                      f"file may be up to {limits.file_bytes // 2**20} MB (a 2D image up to "
                                      f"{MAX_UPLOAD_BYTES // 2**20} MB); send fewer files per request")


def check_declared_size(request: Request, limits: Limits) -> None:
    """Refuse a request that is not multipart/form-data (415) or whose Content-Length is over the cap (413),
    before any of its body is read."""
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise ApiError(415, "unsupported_media_type", "send the scan as multipart/form-data file fields, e.g. "
                                                      "curl -F file=@slice.png")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "the Content-Length header is not a number")
        if int(declared) > limits.request_bytes:
            raise _too_large(limits)


async def read_uploads(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """The request's files as (clean name, bytes), in the order sent, read into memory as they arrive.

    Never spooled to disk; the body is counted as it streams (413 past `limits.request_bytes`, or a file past
    `limits.file_bytes`) and must arrive within `limits.upload_seconds` (408). Non-file fields are ignored.
    """
    check_declared_size(request, limits)
    _, params = parse_options_header(request.headers.get("content-type"))
    parts = _Parts(limits)
    received = 0
    try:
        parser = MultipartParser(params[b"boundary"], parts.callbacks())
        parser.logger = _MULTIPART_LOG
        with anyio.fail_after(limits.upload_seconds):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limits.request_bytes:
                    raise _too_large(limits)
                parser.write(chunk)
        parser.finalize()
        if received and parser.state != MultipartState.END:
            raise ApiError(400, "bad_multipart", "the multipart/form-data body ended before its closing boundary: "
                                                 "the upload was cut off")
    except FormParserError as exc:
        raise ApiError(400, "bad_multipart", "the multipart/form-data body is malformed") from exc
    except TimeoutError as exc:
        raise ApiError(408, "upload_timeout", f"the upload took over {limits.upload_seconds:g} s") from exc
    except ClientDisconnect as exc:  # nobody is left to read the answer; not a server error worth a log line
        raise ApiError(400, "client_disconnected", "the client went away before the upload finished") from exc
    if not parts.files:
        raise ApiError(400, "no_file", "no file in the request; send the scan as a multipart file field, e.g. "
                                       "curl -F file=@slice.png")
    return [(name, bytes(data)) for name, data in parts.files]


def scan_error(error: ErrorDetail) -> ApiError:
    """A scan that cannot be read (`model.serve.pipeline.error_detail`): 415 for a file that is no scan type this
    tool reads, else 400."""
    return ApiError(415 if error.code == "unsupported_type" else 400, error.code, error.message)


def handle_errors(app: FastAPI) -> None:
    """Every error as a JSON body: ApiError, Starlette's 404/405, query validation, and a generic 500 for the rest."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_middleware(_ContainErrors)
