"""The ``tasktrail`` command, run as a user runs it: the venv's console script in a subprocess."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.processes import ROOT

TASKTRAIL = Path(sys.executable).parent / "tasktrail"
pytestmark = pytest.mark.skipif(
    not TASKTRAIL.exists(), reason="no tasktrail script in this venv: run `make venv`"
)
STREAM_VARIABLES = ("REDIS_URL", "TASKTRAIL_RECORDER_URL", "TASKTRAIL_EMBEDDED_REDIS")
PASSWORD = "cli-Test-password-9"


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No stream URL, a SQLite file of its own in ``tmp_path`` (never the suite's database)."""
    drop = {*STREAM_VARIABLES, "DATABASE_URL", "DJANGO_SETTINGS_MODULE", "TASKTRAIL_VAR_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TASKTRAIL_DATA_DIR"] = str(tmp_path / "data")
    env.update(extra)
    return env


def tasktrail(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TASKTRAIL), *args],
        cwd=tmp_path,
        env=cli_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_arguments_prints_help_with_web_and_djangos_commands(tmp_path):
    for args in ([], ["help"]):
        result = tasktrail(tmp_path, *args)
        assert result.returncode == 0, result.stderr
        assert "tasktrail web --bind HOST:PORT [--workers N]" in result.stdout
        for command in ("createuser", "migrate", "monitor", "shell", "createsuperuser"):
            assert re.search(rf"^\s+{command}$", result.stdout, re.MULTILINE), command
        assert "Type 'tasktrail help <subcommand>'" in result.stdout


def test_help_on_web(tmp_path):
    result = tasktrail(tmp_path, "help", "web")
    assert result.returncode == 0
    assert "usage: tasktrail web" in result.stdout and "--workers" in result.stdout


def test_check_passes_through_to_django_without_a_stream(tmp_path):
    result = tasktrail(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert (tmp_path / "data" / "secret_key").exists()  # the data directory, not the package


def test_an_unknown_command_is_djangos_error(tmp_path):
    result = tasktrail(tmp_path, "frobnicate")
    assert result.returncode == 1
    assert "Unknown command: 'frobnicate'" in result.stderr


@pytest.mark.parametrize(
    "args", [["web", "--bind", "127.0.0.1:8999"], ["monitor"], ["runserver", "--noreload"]]
)
def test_web_and_monitor_refuse_without_a_stream_url(tmp_path, args):
    result = tasktrail(tmp_path, *args)
    assert result.returncode == 1
    assert f"tasktrail {args[0]}: no event stream configured: set TASKTRAIL_RECORDER_URL" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_manage_py_refuses_the_same_way(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "monitor"],
        cwd=tmp_path,
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "set TASKTRAIL_RECORDER_URL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--bind", "8000"], 1, "--bind wants HOST:PORT"),
        (["--bind", "127.0.0.1:99999"], 1, "--bind wants HOST:PORT"),
        (["--workers", "0"], 2, "must be 1 or more"),  # argparse's own usage error
    ],
)
def test_web_refuses_bad_options(tmp_path, args, status, message):
    result = tasktrail(tmp_path, "web", *args, TASKTRAIL_RECORDER_URL=settings.REDIS_URL)
    assert result.returncode == status
    assert message in result.stderr and "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tasktrail web exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {timeout}s")


def test_migrate_createuser_web_and_log_in(tmp_path):
    """The shop's path: migrate, add a login, serve with gunicorn, log in; static files answer."""
    stream = {"TASKTRAIL_RECORDER_URL": settings.REDIS_URL}
    assert tasktrail(tmp_path, "migrate", "-v0").returncode == 0
    made = tasktrail(
        tmp_path, "createuser", "alice", "--role", "operator", TASKTRAIL_PASSWORD=PASSWORD
    )
    assert made.stdout == "created alice with role operator\n", made.stderr
    port = free_port()
    web = subprocess.Popen(
        [str(TASKTRAIL), "web", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=tmp_path,
        env=cli_env(tmp_path, **stream),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_port(port, web)
        base = f"http://127.0.0.1:{port}"
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
        css = opener.open(f"{base}/static/css/tasktrail.css", timeout=10)
        assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
        assert opener.open(f"{base}/favicon.ico", timeout=10).status == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        form = {"csrfmiddlewaretoken": token[1], "username": "alice", "password": PASSWORD}
        request = urllib.request.Request(  # noqa: S310 (http on loopback)
            f"{base}/accounts/login/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Referer": f"{base}/accounts/login/"},
        )
        landed = opener.open(request, timeout=10)  # follows the redirect to the overview
        assert landed.status == 200 and landed.url == f"{base}/"
        assert "alice" in landed.read().decode()
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            output, _ = web.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
            output, _ = web.communicate()
    assert "Listening at: http://127.0.0.1:" in output
    assert web.returncode == 0, output
