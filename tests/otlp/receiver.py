"""An OTLP/HTTP trace receiver for wasmclaw's trace tests: it decodes each
protobuf export with the `opentelemetry-proto` package and appends every span
to SPANS_FILE as one JSON line, so a test reads exactly what was exported.

usage: receiver.py PORT SPANS_FILE
(PORT 0: a free one. The port it listens on is the first line it prints.)

Each line: traceId, spanId, parentSpanId (hex, "" for a root), name, kind
(the protobuf enum's name), attributes and the resource's attributes (key to
value), status code, events (name and attributes), and the request's path.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

port = int(sys.argv[1])
spans_file = sys.argv[2]


def value(v):
    """An AnyValue as plain JSON."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - a bad export is the test's finding
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(e).encode())
            return
        lines = []
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(
                        {
                            "path": self.path,
                            "contentType": self.headers.get("content-type"),
                            "authorization": self.headers.get("authorization"),
                            "traceId": span.trace_id.hex(),
                            "spanId": span.span_id.hex(),
                            "parentSpanId": span.parent_span_id.hex(),
                            "name": span.name,
                            "kind": Span.SpanKind.Name(span.kind),
                            "status": Status.StatusCode.Name(span.status.code),
                            "attributes": attributes(span.attributes),
                            "resource": resource,
                            "events": [
                                {"name": e.name, "attributes": attributes(e.attributes)} for e in span.events
                            ],
                        }
                    )
        with open(spans_file, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


# Bound here and the port printed once it listens: a port a test picked free
# and let go could meanwhile be another process's.
server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
print(server.server_address[1], flush=True)
# Nobody reads on: anything printed later must not meet a closed pipe.
os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
server.serve_forever()
