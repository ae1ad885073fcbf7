"""Settings: where data lives (clone or installed), which Redis is the event stream, and that
loading them starts no server."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from dashboard import paths
from tests.processes import ROOT

URL_VARIABLES = (
    "REDIS_URL",
    "TASKTRAIL_RECORDER_URL",
    "TASKTRAIL_BROKER_URL",
    "TASKTRAIL_EMBEDDED_REDIS",
    "DATABASE_URL",
    "TASKTRAIL_VAR_DIR",
)


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any stream URL, data in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    env.update(TASKTRAIL_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="dashboard.settings")
    env.update(extra)
    return env


def load_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict[str, Any]:
    """The settings module run afresh with exactly these URL variables."""
    for name in URL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TASKTRAIL_DATA_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # A fresh copy of the module (run_path: the loaded one stays as it is).
    return runpy.run_path(str(paths.PACKAGE_DIR / "settings.py"), run_name="settings_under_test")


# -- no server by surprise ------------------------------------------------------------------------


def test_loading_the_settings_starts_no_server(tmp_path):
    """A full Django start (apps, the Celery app) without any URL: no child process, no URL."""
    script = textwrap.dedent(
        """
        import json, os, django
        django.setup()
        from django.conf import settings
        from workers import embedded_redis
        me = str(os.getpid())
        children = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                children.append(pid)
        print(json.dumps({
            "redis": settings.REDIS_URL, "recorder": settings.TASKTRAIL_RECORDER_URL,
            "broker": settings.TASKTRAIL_BROKER_URL, "env": os.environ.get("REDIS_URL"),
            "server": embedded_redis._server is not None, "children": children,
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=bare_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        '{"redis": "", "recorder": "", "broker": "", "env": null, "server": false, "children": []}'
    )
    assert "embedded Valkey" not in result.stderr


def test_the_embedded_valkey_only_when_asked_and_children_share_it(tmp_path):
    """TASKTRAIL_EMBEDDED_REDIS=1: the settings start one server and export its URL, a child process
    reaches that server through the inherited environment, and it stops with its owner."""
    script = textwrap.dedent(
        """
        import os, subprocess, sys
        from django.conf import settings
        url = settings.REDIS_URL
        assert url.startswith("redis://127.0.0.1:") and os.environ["REDIS_URL"] == url, url
        child = "import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); "
        child += "r.set('tasktrail:settings-test', 'shared'); print(os.environ['REDIS_URL'])"
        seen = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
        import redis
        print(url, seen.stdout.strip(), redis.Redis.from_url(url).get("tasktrail:settings-test"))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=bare_env(tmp_path, TASKTRAIL_EMBEDDED_REDIS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    url, child_url, value = result.stdout.split()
    assert child_url == url
    assert value == "b'shared'"
    with pytest.raises(redis.ConnectionError):  # stopped when the process that started it exited
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()


def test_the_suite_asked_for_its_server_before_the_settings_loaded():
    """The suite's stream: REDIS_URL as given, or the embedded server the settings started because
    tests.embedded_valkey asked first; exported either way, so processes of the tests share it."""
    assert settings.REDIS_URL
    if not os.environ.get("TASKTRAIL_RECORDER_URL"):
        assert os.environ["REDIS_URL"] == settings.REDIS_URL
    redis.Redis.from_url(settings.REDIS_URL).ping()


# -- which Redis is which -------------------------------------------------------------------------


def test_no_url_means_no_stream(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, tmp_path)
    assert loaded["REDIS_URL"] == loaded["TASKTRAIL_RECORDER_URL"] == ""
    assert loaded["CELERY_BROKER_URL"] == loaded["TASKTRAIL_BROKER_URL"] == ""


def test_redis_url_alone_is_stream_and_broker(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, tmp_path, REDIS_URL="redis://shop:6379/0")
    assert loaded["REDIS_URL"] == loaded["TASKTRAIL_RECORDER_URL"] == "redis://shop:6379/0"
    assert loaded["TASKTRAIL_BROKER_URL"] == loaded["CELERY_BROKER_URL"] == "redis://shop:6379/0"


def test_recorder_url_alone_is_stream_and_broker(monkeypatch, tmp_path):
    loaded = load_settings(monkeypatch, tmp_path, TASKTRAIL_RECORDER_URL="redis://events:6379/2")
    assert loaded["REDIS_URL"] == loaded["TASKTRAIL_RECORDER_URL"] == "redis://events:6379/2"
    assert loaded["TASKTRAIL_BROKER_URL"] == "redis://events:6379/2"


def test_recorder_url_wins_for_the_stream_redis_url_stays_the_broker(monkeypatch, tmp_path):
    loaded = load_settings(
        monkeypatch,
        tmp_path,
        TASKTRAIL_RECORDER_URL="redis://events:6379/2",
        REDIS_URL="redis://shop:6379/0",
        TASKTRAIL_EMBEDDED_REDIS="1",  # a URL is given: nothing is started
    )
    assert loaded["REDIS_URL"] == loaded["TASKTRAIL_RECORDER_URL"] == "redis://events:6379/2"
    assert loaded["TASKTRAIL_BROKER_URL"] == loaded["CELERY_BROKER_URL"] == "redis://shop:6379/0"


def test_broker_url_set_on_its_own(monkeypatch, tmp_path):
    loaded = load_settings(
        monkeypatch,
        tmp_path,
        REDIS_URL="redis://shop:6379/0",
        TASKTRAIL_BROKER_URL="redis://broker:6379/5",
    )
    assert loaded["TASKTRAIL_BROKER_URL"] == "redis://broker:6379/5"
    assert loaded["REDIS_URL"] == "redis://shop:6379/0"


# -- data directory -------------------------------------------------------------------------------


def clone(tmp_path: Path) -> Path:
    base = tmp_path / "clone"
    (base / "dashboard").mkdir(parents=True)
    (base / "manage.py").write_text("")
    return base


def installed(tmp_path: Path) -> Path:
    base = tmp_path / "site-packages"
    (base / "dashboard").mkdir(parents=True)
    return base


def test_data_dir_in_a_clone_is_var(tmp_path):
    base = clone(tmp_path)
    assert paths.data_dir({}, base) == base / "var"
    assert paths.resource_dir("templates", base, base / "dashboard") == base / "templates"


def test_data_dir_installed_is_the_users_data_folder(tmp_path):
    base, home = installed(tmp_path), tmp_path / "home"
    assert paths.data_dir({}, base, home) == home / ".local" / "share" / "tasktrail"
    xdg = str(tmp_path / "xdg")
    assert paths.data_dir({"XDG_DATA_HOME": xdg}, base, home) == tmp_path / "xdg" / "tasktrail"
    # The XDG rule: a relative XDG_DATA_HOME is ignored.
    assert paths.data_dir({"XDG_DATA_HOME": "rel"}, base, home) == home / ".local/share/tasktrail"
    bundled = paths.resource_dir("static", base, base / "dashboard")
    assert bundled == base / "dashboard" / "bundled" / "static"


def test_data_dir_from_the_environment_wins(tmp_path):
    for base in (clone(tmp_path), installed(tmp_path)):
        env = {"TASKTRAIL_DATA_DIR": "/srv/tt", "TASKTRAIL_VAR_DIR": "/old", "XDG_DATA_HOME": "/x"}
        assert paths.data_dir(env, base) == Path("/srv/tt")
        assert paths.data_dir({"TASKTRAIL_VAR_DIR": "/old"}, base) == Path("/old")


def test_this_checkout_is_a_clone():
    assert paths.is_clone()
    assert Path(settings.TEMPLATES[0]["DIRS"][0]) == ROOT / "templates"
    assert Path(settings.WHITENOISE_ROOT) == ROOT / "static" / "root"


def test_files_go_to_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    data = tmp_path / "data"
    loaded = load_settings(monkeypatch, data)
    assert (data / "secret_key").read_text().strip() == loaded["SECRET_KEY"]
    assert loaded["DATABASES"]["default"]["NAME"] == str(data / "tasktrail.sqlite3")
    assert loaded["STATIC_ROOT"] == data / "static" and (data / "static").is_dir()
    assert loaded["VAR_DIR"] == loaded["DATA_DIR"] == data


def test_an_unwritable_data_dir_is_a_clear_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="TASKTRAIL_DATA_DIR"):
        load_settings(monkeypatch, blocker / "data")
