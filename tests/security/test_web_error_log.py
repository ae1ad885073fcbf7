"""A 500 in the real web process (gunicorn, DEBUG off) reaches its output with the traceback, and
secret-looking values in the error's lines are masked."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings

from tests.dashboard.test_cli import (
    PASSWORD,
    TASKTRAIL,
    cli_env,
    free_port,
    pytestmark,  # noqa: F401  (skipped without the console script)
    tasktrail,
    wait_for_port,
)


def test_a_500_is_logged_by_the_web_process_with_its_traceback_and_masked(tmp_path):
    stream = {"TASKTRAIL_RECORDER_URL": settings.REDIS_URL, "DEBUG": "false"}
    assert tasktrail(tmp_path, "migrate", "-v0").returncode == 0
    assert tasktrail(tmp_path, "createuser", "bob", "--role", "viewer",
                     TASKTRAIL_PASSWORD=PASSWORD).returncode == 0  # fmt: skip
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
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        page = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        form = {"csrfmiddlewaretoken": token[1], "username": "bob", "password": PASSWORD}
        opener.open(
            urllib.request.Request(  # noqa: S310 (http on loopback)
                f"{base}/accounts/login/",
                data=urllib.parse.urlencode(form).encode(),
                headers={"Referer": f"{base}/accounts/login/"},
            ),
            timeout=10,
        )
        # the task table gone: the task page fails inside the view, as any unexpected error would
        with sqlite3.connect(tmp_path / "data" / "tasktrail.sqlite3") as db:
            db.execute("DROP TABLE dashboard_taskrun")
        try:
            opener.open(f"{base}/tasks/card_token=tok_live_777/", timeout=10)
            raise AssertionError("the task page answered without its table")
        except urllib.error.HTTPError as exc:
            assert exc.code == 500
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            output, _ = web.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
            output, _ = web.communicate()
    assert "ERROR django.request: Internal Server Error: /tasks/card_token=••••" in output, output
    assert "Traceback (most recent call last)" in output
    assert "no such table: dashboard_taskrun" in output
    # gunicorn's access log line has the path as requested; the error's lines are masked
    logged = [line for line in output.splitlines() if '"GET /tasks/' not in line]
    assert not [line for line in logged if "tok_live_777" in line]
