"""A shop's Celery project and the tasktrail service, each in a virtualenv of its own, driven the
way the README tells a user to: wheels built from this checkout, ``pip install``, console commands,
HTTP to the web server. Everything stays on loopback; every wait has a deadline."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from tests.processes import ROOT, Child, Output

SHOP_DIR = Path(__file__).resolve().parent / "shop"
# The client promises Python >= 3.10: the shop runs the oldest one this machine has
# (TASKTRAIL_TEST_SHOP_PYTHON names one), else the suite's own.
OLDEST_PYTHONS = ("python3.10", "/root/.pyenv/versions/3.10.13/bin/python")
# What pip prints when it cannot reach the package index.
NETWORK_ERRORS = (
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "Connection refused",
    "ProxyError",
)


class Unreachable(Exception):
    """The package index could not be reached (the test skips with this reason)."""


def shop_base_python() -> str:
    named = os.environ.get("TASKTRAIL_TEST_SHOP_PYTHON")
    for candidate in ([named] if named else []) + list(OLDEST_PYTHONS):
        found = shutil.which(candidate)
        # A pyenv shim is on PATH even where that version is not installed: it must run.
        if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
            return found
    return sys.executable


def base_env(**extra: str) -> dict[str, str]:
    """A plain user's environment: none of the suite's own variables (DATABASE_URL, REDIS_URL,
    TASKTRAIL_*, DJANGO_SETTINGS_MODULE) leak into the shop or the service."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_FIND_LINKS", "PIP_CERT", "SSL_CERT_FILE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    stdin: str | None = None,
) -> str:
    """Run a command to its end; its output (stdout and stderr). Fails with both on an error."""
    try:
        done = subprocess.run(
            list(command),
            env=dict(env),
            cwd=cwd,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode()
        why = f"timed out after {timeout:.0f}s: {_shell(command)}\n{out[-3000:]}"
        raise AssertionError(why) from None
    if done.returncode != 0:
        raise AssertionError(
            f"exit {done.returncode}: {_shell(command)}\n{_quiet(done.stdout)[-4000:]}"
        )
    return done.stdout


def _shell(command: Sequence[str]) -> str:
    return " ".join(command)


def _quiet(pip_output: str) -> str:
    """pip's output without the warnings about the machine's local index locations."""
    return "\n".join(line for line in pip_output.splitlines() if "is ignored: it is" not in line)


def make_venv(base_python: str, path: Path) -> Path:
    """A fresh virtualenv with ``base_python``; its bin directory."""
    run([base_python, "-m", "venv", str(path)], env=base_env(), cwd=path.parent, timeout=120)
    return path / "bin"


def pip_install(bin_dir: Path, *args: str, cwd: Path, timeout: float = 600) -> str:
    """``pip install ARGS`` in a virtualenv; Unreachable when the index cannot be reached."""
    command = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *args]
    try:
        return _quiet(run(command, env=base_env(), cwd=cwd, timeout=timeout))
    except AssertionError as exc:
        if any(marker in str(exc) for marker in NETWORK_ERRORS):
            raise Unreachable(f"package index unreachable: pip install {' '.join(args)}") from exc
        raise


def build_wheels(python: str, dist: Path) -> tuple[Path, Path]:
    """The client and service wheels, as ``make dist`` builds them, into ``dist``."""
    command = [python, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), "./workers/client", "."]
    try:  # the build backend (hatchling) comes from the package index
        run(command, env=base_env(), cwd=ROOT, timeout=300)
    except AssertionError as exc:
        if any(marker in str(exc) for marker in NETWORK_ERRORS):
            raise Unreachable("package index unreachable: pip wheel (build backend)") from exc
        raise
    client = dist / "tasktrail-0.1.0-py3-none-any.whl"
    server = dist / "tasktrail_server-0.1.0-py3-none-any.whl"
    built = sorted(p.name for p in dist.iterdir())
    assert client.is_file() and server.is_file(), f"make dist built {built}"
    return client, server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_in(cwd: Path, command: Sequence[str], env: Mapping[str, str]) -> Child:
    """Start a long-running command in ``cwd`` in a process group of its own (stopping it reaches
    its children: pool processes, gunicorn workers); stdout and stderr read as one stream."""
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    return Child(process, Output(process.stdout), group=True)


class Processes:
    """The long-running children of a test, by name; each stopped on the way out."""

    def __init__(self) -> None:
        self.children: list[tuple[str, Child]] = []

    def start(self, name: str, cwd: Path, command: Sequence[str], env: Mapping[str, str]) -> Child:
        child = spawn_in(cwd, command, env)
        self.children.append((name, child))
        return child

    def stop_all(self) -> None:
        for _, child in reversed(self.children):
            child.stop(timeout=20)

    def report(self, lines: int = 40) -> str:
        return "".join(
            f"\n--- {name} (pid {child.process.pid}, exit {child.process.poll()}) ---\n"
            + child.output.tail(lines)
            for name, child in self.children
        )


@contextlib.contextmanager
def running() -> Iterator[Processes]:
    """Processes stopped on the way out, whatever happened; on a failure the end of each one's
    output is printed (pytest shows it with the failure)."""
    processes = Processes()
    try:
        yield processes
    except BaseException:
        print(processes.report())
        raise
    finally:
        processes.stop_all()


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.3
) -> Any:
    """``condition()``'s first truthy value; fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- the web pages, as a browser uses them ------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._open = Form(action=a.get("action", ""), method=a.get("method", "get").lower())
            self.forms.append(self._open)
        elif tag in ("input", "textarea") and self._open is not None and a.get("name"):
            self._open.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def forms(html: str) -> list[Form]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Response:
    status: int
    body: str
    headers: Mapping[str, str]


class Browser:
    """A session on the service's web server: cookies, CSRF tokens from the forms, no redirects
    followed (the test asserts where each one goes). Loopback only."""

    def __init__(self, base_url: str) -> None:
        assert urllib.parse.urlsplit(base_url).hostname == "127.0.0.1"
        self.base_url = base_url.rstrip("/")
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(self, path: str, data: Mapping[str, str] | None = None) -> Response:
        assert path.startswith("/"), path
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base_url + path, data=body)  # noqa: S310 (http, checked)
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
            req.add_header("Referer", self.base_url + path)
        try:
            with self._opener.open(req, timeout=30) as resp:
                return Response(resp.status, resp.read().decode(), dict(resp.headers))
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.read().decode(errors="replace"), dict(exc.headers))

    def get(self, path: str) -> Response:
        return self.request(path)

    def get_json(self, path: str) -> tuple[int, Any]:
        response = self.get(path)
        try:
            return response.status, json.loads(response.body)
        except ValueError:
            return response.status, response.body[:500]

    def submit(self, page: str, action_pattern: str, **values: str) -> Response:
        """Fill in and post the form of ``page`` whose action matches ``action_pattern``, as a
        browser would (its hidden fields, the CSRF token among them, are sent as they are)."""
        html = self.get(page)
        assert html.status == 200, f"GET {page}: {html.status}\n{html.body[:500]}"
        matching = [f for f in forms(html.body) if re.search(action_pattern, f.action)]
        assert matching, (
            f"no form posting to {action_pattern!r} on {page}; forms: "
            f"{[f.action for f in forms(html.body)]}"
        )
        form = matching[0]
        action = urllib.parse.urlsplit(urllib.parse.urljoin(self.base_url + page, form.action))
        return self.request(action.path, {**form.fields, **values})

    def log_in(self, username: str, password: str) -> None:
        response = self.submit(
            "/accounts/login/", r"/accounts/login/", username=username, password=password
        )
        assert response.status == 302, (
            f"login as {username}: {response.status}\n{response.body[:1000]}"
        )
