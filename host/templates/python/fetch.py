"""A small blocking HTTP client over the standard `wasi:http` interface.

Nothing here is wasmclaw-specific: the gateway provides `wasi:http`, applies
the agent's allow-list, limits and credentials, and a refused request comes
back as the standard `error-code` (raised here as `FetchError`).
"""

from typing import NamedTuple
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok
from wit_world.imports import outgoing_handler
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.wasi_http_types import (
    ErrorCode,
    ErrorCode_DestinationIpProhibited,
    ErrorCode_HttpRequestDenied,
    ErrorCode_HttpResponseBodySize,
    ErrorCode_HttpResponseTimeout,
    ErrorCode_InternalError,
    Fields,
    Method_Delete,
    Method_Get,
    Method_Other,
    Method_Patch,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)

READ_SIZE = 16 * 1024
#: `blocking_write_and_flush` takes at most 4096 bytes at a time.
WRITE_SIZE = 4096
METHODS = {"GET": Method_Get, "POST": Method_Post, "PUT": Method_Put, "PATCH": Method_Patch, "DELETE": Method_Delete}


class Response(NamedTuple):
    """A whole response: status, headers (lower-case names) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of header `name`, if the response has it."""
        return next((v for n, v in self.headers if n == name.lower()), None)


class FetchError(Exception):
    """A request the gateway refused or that failed on the way."""

    def __init__(self, code: ErrorCode):
        super().__init__(describe(code))
        self.code = code


def get(url: str, headers: list[tuple[str, str]] = ()) -> tuple[int, bytes]:
    """GET `url` with `headers`; returns the status and the whole body.

    Credentials are not the agent's business: the gateway adds the ones its
    `http.credentials` configure for this URL.
    """
    response = request("GET", url, headers)
    return response.status, response.body


def request(method: str, url: str, headers: list[tuple[str, str]] = (), body: bytes = b"") -> Response:
    """Send `method url` with `headers` and `body`; returns the whole response."""
    parts = parse_url(url)
    method = method.upper()
    outgoing = OutgoingRequest(Fields.from_list([(name, value.encode()) for name, value in headers]))
    outgoing.set_method(METHODS[method]() if method in METHODS else Method_Other(method))
    outgoing.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    outgoing.set_authority(parts.netloc)
    outgoing.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    outgoing_body = outgoing.body()
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as e:
        raise FetchError(e.value)
    if body:
        with outgoing_body.write() as stream:
            for at in range(0, len(body), WRITE_SIZE):
                stream.blocking_write_and_flush(body[at:at + WRITE_SIZE])
    OutgoingBody.finish(outgoing_body, None)
    # Resources are closed explicitly, children first: the host refuses to
    # drop one whose child is still open, and Python's collector keeps no order.
    with future:
        while (result := future.get()) is None:
            with future.subscribe() as ready:
                ready.block()
    if isinstance(result, Err):
        raise FetchError(ErrorCode_InternalError("the response was already taken"))
    if isinstance(result.value, Err):
        raise FetchError(result.value.value)
    with result.value.value as response:
        status = response.status()
        with response.headers() as fields:
            received = [(name.lower(), value.decode(errors="replace")) for name, value in fields.entries()]
        with response.consume() as incoming, incoming.stream() as stream:
            data = bytearray()
            while True:
                try:
                    data += stream.blocking_read(READ_SIZE)
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    raise FetchError(ErrorCode_InternalError("the response body broke off"))
    return Response(status, received, bytes(data))


def parse_url(url: str):
    """`url`'s parts; a ValueError unless it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url}")
    return parts


def describe(code: ErrorCode) -> str:
    """What a person reading the agent's answer should learn from `code`."""
    if isinstance(code, ErrorCode_HttpRequestDenied | ErrorCode_DestinationIpProhibited):
        return "the gateway does not allow this URL (add it to the agent's http.allow)"
    if isinstance(code, ErrorCode_HttpResponseTimeout):
        return "the server did not answer in time"
    if isinstance(code, ErrorCode_HttpResponseBodySize):
        return "the response is larger than the agent may read"
    if isinstance(code, ErrorCode_InternalError) and code.value:
        return code.value
    return type(code).__name__.removeprefix("ErrorCode_")
