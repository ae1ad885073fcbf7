"""The dashboard served over HTTP in a process of its own: ``python -m bench.wsgi_server --port N``.

A threading ``wsgiref`` server around ``dashboard.wsgi.application`` (the project's WSGI entry
point, as gunicorn or uWSGI would load it), so the scaling section can fetch real pages from a real
web process and read its memory. wsgiref is the standard library's: no server is added to the
dependencies for the benchmarks.
"""

from __future__ import annotations

import argparse
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from bench.procs import serve_until_terminated


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    from dashboard.wsgi import application

    server = make_server(
        "127.0.0.1",
        options.port,
        application,
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    print(f"dashboard on http://127.0.0.1:{options.port}", flush=True)
    serve_until_terminated(server)


if __name__ == "__main__":
    main()
