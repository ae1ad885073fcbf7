"""A collector stand-in for the tracing variant: ``python -m bench.otlp_sink --port N``.

Accepts OTLP/HTTP exports (``POST /v1/traces``) and answers 200 at once without decoding them, so
the worker pays what it pays against a real collector (encoding, the HTTP round trip on loopback)
and the sink's own CPU stays out of the worker's figures. Prints the bytes received on exit.
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.procs import serve_until_terminated


class Handler(BaseHTTPRequestHandler):
    received = 0
    requests = 0

    def do_POST(self) -> None:  # http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Handler.received += len(body)
        Handler.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", options.port), Handler)

    print(f"otlp sink listening on 127.0.0.1:{options.port}", flush=True)
    try:
        serve_until_terminated(server)
    finally:
        print(f"otlp sink: {Handler.requests} exports, {Handler.received} bytes", flush=True)
        sys.exit(0)


if __name__ == "__main__":
    main()
