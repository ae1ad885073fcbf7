"""``tasktrail``: the service's command once installed (``manage.py`` does the same in a clone).

``tasktrail web --bind HOST:PORT [--workers N]`` runs the dashboard under gunicorn; every other
argument goes to Django's command line as with ``manage.py`` (``tasktrail migrate``,
``tasktrail monitor``, ``tasktrail createuser``, ``tasktrail shell``, ``tasktrail help``).

Nothing starts a Redis server by surprise: the web and the monitor need the event stream's URL
(``TASKTRAIL_RECORDER_URL``, or ``REDIS_URL``) and refuse to start without it. Only ``demo`` asks
for the embedded Valkey (``TASKTRAIL_EMBEDDED_REDIS=1``) when no URL is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

PROG = "tasktrail"
NO_STREAM_MESSAGE = (
    "no event stream configured: set TASKTRAIL_RECORDER_URL to the Redis URL your Celery "
    "workers' recorder writes to (e.g. redis://127.0.0.1:6379/0); REDIS_URL is read too"
)
# Commands that serve or read the stream; each refuses to start without its URL.
NEEDS_STREAM = frozenset({"web", "runserver", "monitor"})

HELP = """\
tasktrail: the tasktrail service (dashboard and monitor).

Usage: tasktrail <command> [options]

  tasktrail web --bind HOST:PORT [--workers N]   serve the dashboard (gunicorn; WhiteNoise serves
                                                 the static files)
  tasktrail monitor                              read the event stream into the database
  tasktrail migrate                              create or update the database tables
  tasktrail createuser NAME --role ROLE          add a login, or change its role
  tasktrail prune [--dry-run]                    remove rows past their retention now (the monitor
                                                 also does it every few minutes)
  tasktrail help <command>                       help on one command

web and monitor need TASKTRAIL_RECORDER_URL (or REDIS_URL): the Redis the recorder writes to.
Data (secret key, SQLite database) lives in TASKTRAIL_DATA_DIR (default ~/.local/share/tasktrail).

Every other command is Django's, as with manage.py:
"""


def prepare_environment(argv: Sequence[str]) -> None:
    """Before the settings load: the settings module, and the embedded Valkey for the demo."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    if len(argv) > 1 and argv[1] == "demo":
        os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")


def stream_url() -> str:
    from django.conf import settings

    return str(settings.REDIS_URL or "")


def require_stream(command: str) -> None:
    """Exit with the reason (no traceback) when there is no event stream to serve."""
    if not stream_url():
        raise SystemExit(f"{PROG} {command}: {NO_STREAM_MESSAGE}")


def _wants_help(args: Sequence[str]) -> bool:
    return any(arg in ("-h", "--help") for arg in args)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    full = [PROG, *args]
    prepare_environment(full)
    command = args[0] if args else ""
    if command in ("", "help", "-h", "--help") and len(args) <= 1:
        print_help()
        return
    if command == "help" and args[1:2] == ["web"]:
        web(["--help"])
        return
    if command == "web":
        web(args[1:])
        return
    run_django(full)


def run_django(argv: list[str]) -> None:
    """A Django management command, as ``manage.py`` runs it (``prepare_environment`` first):
    the commands that serve or read the stream refuse to start without one."""
    command = argv[1] if len(argv) > 1 else ""
    if command in NEEDS_STREAM and not _wants_help(argv[1:]):
        require_stream(command)
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)


def print_help() -> None:
    import django
    from django.core.management import ManagementUtility

    django.setup()  # the apps' commands (monitor, createuser) are listed only once they are loaded

    sys.stdout.write(HELP)
    sys.stdout.write(ManagementUtility([PROG]).main_help_text() + "\n")


# -- web ------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def web_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} web",
        description=(
            "Serve the dashboard with gunicorn; WhiteNoise serves the static files. Needs "
            "TASKTRAIL_RECORDER_URL (or REDIS_URL). Run `tasktrail migrate` first."
        ),
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1:8000",
        help="HOST:PORT to listen on (default 127.0.0.1:8000; 0.0.0.0:8000 for every interface).",
    )
    parser.add_argument(
        "--workers", type=_positive, default=2, help="Worker processes (default 2)."
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=30,
        help="Seconds before a stuck request's worker is restarted (default 30).",
    )
    return parser


def web(args: Sequence[str]) -> None:
    options = web_parser().parse_args(list(args))
    require_stream("web")
    _check_bind(options.bind)
    from gunicorn.app.base import BaseApplication

    config = {
        "bind": [options.bind],
        "workers": options.workers,
        "timeout": options.timeout,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": f"{PROG}-web",
        # gunicorn >= 25 opens a control socket in the home directory: nothing here uses it.
        "control_socket_disable": True,
    }

    class Web(BaseApplication):
        def load_config(self) -> None:
            for key, value in config.items():
                if key in self.cfg.settings:  # settings a gunicorn release does not know: skipped
                    self.cfg.set(key, value)

        def load(self) -> Any:
            from dashboard.wsgi import application

            return application

    Web().run()


def _check_bind(bind: str) -> None:
    if bind.startswith("unix:"):
        return
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"{PROG} web: --bind wants HOST:PORT (e.g. 127.0.0.1:8000), got {bind!r}")


if __name__ == "__main__":
    main()
