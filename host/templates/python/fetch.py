"""A small blocking HTTP client over the standard `wasi:http` interface.

Nothing here is wasmclaw-specific: the gateway provides `wasi:http`, applies
the agent's allow-list, limits and credentials, and a refused request comes
back as the standard `error-code` (raised here as `FetchError`).
"""

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
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    Scheme_Http,
    Scheme_Https,
)

READ_SIZE = 16 * 1024


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
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url}")
    request = OutgoingRequest(Fields.from_list([(name, value.encode()) for name, value in headers]))
    request.set_method(Method_Get())
    request.set_scheme(Scheme_Https() if parts.scheme == "https" else Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    body = request.body()
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        raise FetchError(e.value)
    OutgoingBody.finish(body, None)
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
        with response.consume() as incoming, incoming.stream() as stream:
            data = bytearray()
            while True:
                try:
                    data += stream.blocking_read(READ_SIZE)
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    raise FetchError(ErrorCode_InternalError("the response body broke off"))
    return status, bytes(data)


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
