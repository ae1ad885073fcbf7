"""A shop's existing Celery project (Django 4.2, Celery 5.4, its own top-level packages named
``workers``, ``tracing`` and ``dashboard``) gets tasktrail as the README tells it to:

1. ``make dist``'s two wheels, built from this checkout;
2. the shop's virtualenv gets only the client wheel: its Django and Celery stay, its own packages
   stay its own, ``manage.py check`` passes;
3. the service gets a virtualenv of its own: ``tasktrail migrate``, ``createuser``, ``monitor``,
   ``web``;
4. the shop's real worker runs the shop's tasks; the web pages show them; an operator retries the
   failed one (it runs on the shop's worker, linked both ways) and cancels a queued one (a worker
   started afterwards skips it).

Slow (a few minutes: two virtualenvs), so the environments are built once for the module.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from tests.integration.shop_env import (
    ROOT,
    SHOP_DIR,
    Browser,
    Processes,
    Unreachable,
    base_env,
    build_wheels,
    free_port,
    make_venv,
    pip_install,
    run,
    running,
    shop_base_python,
    wait_for,
)
from tests.processes import Child

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# A shop that has run Celery 5.4 for a while has the kombu of its time in its lock file: a fresh
# resolve of celery[redis]==5.4.* alone takes today's kombu, whose Redis transport then imports
# `packaging`, which neither Celery 5.4's nor kombu's plain requirements bring.
SHOP_REQUIREMENTS = ("django==4.2.*", "celery[redis]==5.4.*", "kombu==5.4.*")
OPERATOR, PASSWORD = "op", "shop-install-Passw0rd!"


@dataclass
class Installation:
    tmp: Path
    base_python: str
    shop_bin: Path
    service_bin: Path
    client_wheel: Path
    server_wheel: Path
    freeze_before: dict[str, str]  # the shop's distributions before the client was installed


def freeze(bin_dir: Path) -> dict[str, str]:
    """Installed distributions of a virtualenv, lower-cased name -> version."""
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version"
        " for d in m.distributions()}))"
    )
    out = run([str(bin_dir / "python"), "-c", code], env=base_env(), cwd=SHOP_DIR, timeout=60)
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def installation(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Installation:
    tmp = tmp_path_factory.mktemp("shop-install")
    base_python = shop_base_python()
    version = run(
        [base_python, "-c", "import sys; print(sys.version.split()[0])"],
        env=base_env(),
        cwd=tmp,
        timeout=30,
    ).strip()
    # Which Python the shop runs on is part of the result: said on the terminal, not captured.
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nshop virtualenv: Python {version} ({base_python})")
    try:
        client_wheel, server_wheel = build_wheels(sys.executable, tmp / "dist")
        shop_bin = make_venv(base_python, tmp / "shop-venv")
        pip_install(shop_bin, *SHOP_REQUIREMENTS, cwd=tmp)
        freeze_before = freeze(shop_bin)
        pip_install(shop_bin, str(client_wheel), cwd=tmp)
        # The service runs on this suite's Python (it needs 3.11+), pinned to the locked versions.
        service_bin = make_venv(sys.executable, tmp / "service-venv")
        lock = str(ROOT / "requirements.lock")
        pip_install(service_bin, "-c", lock, str(server_wheel), str(client_wheel), cwd=tmp)
    except Unreachable as exc:
        pytest.skip(str(exc))
    return Installation(
        tmp, base_python, shop_bin, service_bin, client_wheel, server_wheel, freeze_before
    )


# -- the shop's side --------------------------------------------------------------------------


def shop_env(inst: Installation, **extra: str) -> dict[str, str]:
    return base_env(
        PATH=f"{inst.shop_bin}:{base_env()['PATH']}",
        PYTHONPATH=str(SHOP_DIR),  # the shop's project is not installed, as in most shops
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        SHOP_DB=str(inst.tmp / "shop.sqlite3"),
        **extra,
    )


def test_shop_keeps_its_versions_and_its_own_packages(installation: Installation) -> None:
    inst = installation
    after = freeze(inst.shop_bin)
    before = inst.freeze_before
    assert after["django"].startswith("4.2."), after["django"]
    assert after["celery"].startswith("5.4."), after["celery"]
    moved = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    assert not moved, f"installing the client changed the shop's packages: {moved}"
    added = sorted(set(after) - set(before))
    assert "tasktrail" in added
    assert "tasktrail-server" not in after
    assert set(added) <= {"tasktrail", "msgpack"}, f"the client brought more than it needs: {added}"

    # The shop's workers, tracing and dashboard are its own: no distribution provides them.
    code = (
        "import importlib.metadata as m, json, dashboard, tracing, workers, tasktrail;"
        "tops = {d.metadata['Name']: (d.read_text('top_level.txt') or '').split()"
        " + sorted({f.parts[0] for f in (d.files or []) if len(f.parts) > 1})"
        " for d in m.distributions()};"
        "print(json.dumps({'files': {n.__name__: n.__file__ for n in"
        " (dashboard, tracing, workers, tasktrail)}, 'tops': tops}))"
    )
    env = shop_env(inst)
    out = run([str(inst.shop_bin / "python"), "-c", code], env=env, cwd=inst.tmp, timeout=60)
    found = json.loads(out.strip().splitlines()[-1])
    for name in ("dashboard", "tracing", "workers"):
        assert Path(found["files"][name]).is_relative_to(SHOP_DIR), found["files"]
        owners = [dist for dist, tops in found["tops"].items() if name in tops]
        assert not owners, f"{owners} install a top-level {name!r} into the shop"
    assert Path(found["files"]["tasktrail"]).is_relative_to(inst.tmp / "shop-venv")

    # The client imports nothing of Django or of the shop's packages' names by itself (Celery
    # imports a few django.utils modules when Django is installed: those are Celery's).
    code = (
        "import sys, celery, celery.app.base, kombu, redis;"
        "before = set(sys.modules);"
        "import tasktrail;"
        "print(sorted(m for m in set(sys.modules) - before"
        " if m.split('.')[0] in ('django', 'dashboard', 'workers', 'tracing')))"
    )
    out = run([str(inst.shop_bin / "python"), "-c", code], env=env, cwd=inst.tmp, timeout=60)
    assert out.strip().splitlines()[-1] == "[]", out

    out = run(
        [str(inst.shop_bin / "python"), "manage.py", "check"], env=env, cwd=SHOP_DIR, timeout=120
    )
    assert "System check identified no issues" in out, out


# -- the service ------------------------------------------------------------------------------


@pytest.fixture
def service_database(tmp_path: Path) -> Iterator[str]:
    """A database of its own for the service: on the suite's PostgreSQL server when the suite runs
    on PostgreSQL (created here, dropped after), else a SQLite file."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        yield f"sqlite:///{tmp_path / 'tasktrail.sqlite3'}"
        return
    import psycopg
    from psycopg import sql

    name = f"test_{db['NAME']}_shop_{secrets.token_hex(4)}"[:63]
    params: dict[str, Any] = {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(db.get("PORT") or 5432),
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "dbname": "postgres",
        "autocommit": True,
        "connect_timeout": 10,
    }
    with psycopg.connect(**params) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    user = urllib.parse.quote(params["user"] or "")
    password = f":{urllib.parse.quote(params['password'])}" if params["password"] else ""
    auth = f"{user}{password}@" if user else ""
    try:
        yield f"postgres://{auth}{params['host']}:{params['port']}/{name}"
    finally:
        with psycopg.connect(**params) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@dataclass
class Names:
    """What keeps this test's traffic apart from every other test's on the shared Redis."""

    stream: str
    prefix: str
    cancelled: list[str] = field(default_factory=list)  # ids the durable cancel keeps

    @property
    def transport_options(self) -> str:
        return json.dumps({"global_keyprefix": self.prefix})


@pytest.fixture
def names() -> Iterator[Names]:
    token = secrets.token_hex(4)
    chosen = Names(stream=f"shoptest{token}:events", prefix=f"shoptest{token}:")
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        yield chosen
    finally:
        keys = list(client.scan_iter(match=f"shoptest{token}*", count=1000))
        if keys:
            client.delete(*keys)
        if chosen.cancelled:
            client.zrem("tasktrail:revoked", *chosen.cancelled)
        client.close()


def createuser(inst: Installation, env: dict[str, str]) -> str:
    """``tasktrail createuser op --role operator --password-stdin``: no terminal needed."""
    command = [str(inst.service_bin / "tasktrail"), "createuser", OPERATOR, "--role", "operator"]
    return run([*command, "--password-stdin"], env=env, cwd=inst.tmp, timeout=60, stdin=PASSWORD)


class Stack:
    """The service (monitor and web server, from its virtualenv) and the shop (its worker and its
    publishing command, from its own), on one Redis, apart from every other test's traffic."""

    def __init__(
        self, inst: Installation, database: str, names: Names, tmp: Path, processes: Processes
    ) -> None:
        self.inst, self.names, self.processes = inst, names, processes
        self.markers = tmp / "markers"
        redis_url = settings.REDIS_URL
        self.service = base_env(
            DATABASE_URL=database,
            TASKTRAIL_DATA_DIR=str(tmp / "data"),
            TASKTRAIL_RECORDER_URL=redis_url,
            TASKTRAIL_STREAM=names.stream,
            TASKTRAIL_BROKER_URL=redis_url,
            TASKTRAIL_BROKER_TRANSPORT_OPTIONS=names.transport_options,
        )
        self.shop = shop_env(
            inst,
            SHOP_BROKER_URL=redis_url,
            SHOP_BROKER_TRANSPORT_OPTIONS=names.transport_options,
            SHOP_MARKER_DIR=str(self.markers),
            # No TASKTRAIL_RECORDER_URL: the client writes to the shop's Redis broker by default.
            TASKTRAIL_STREAM=names.stream,
        )
        tasktrail = str(inst.service_bin / "tasktrail")
        run([tasktrail, "migrate"], env=self.service, cwd=inst.tmp, timeout=300)
        createuser(inst, self.service)
        port = free_port()
        self.monitor = processes.start(
            "tasktrail monitor", inst.tmp, [tasktrail, "monitor"], self.service
        )
        web_command = [tasktrail, "web", "--bind", f"127.0.0.1:{port}"]
        self.web = processes.start("tasktrail web", inst.tmp, web_command, self.service)
        self.browser = Browser(f"http://127.0.0.1:{port}")
        wait_for(self._web_answers, timeout=60, what="the web server's login page")

    def _web_answers(self) -> bool:
        try:
            return self.browser.get("/accounts/login/").status == 200
        except OSError:
            assert self.web.process.poll() is None, f"web exited:\n{self.web.output.tail()}"
            return False

    def start_worker(self) -> Child:
        command = [
            str(self.inst.shop_bin / "celery"), "-A", "workers", "worker", "-l", "info",
            "-P", "prefork", "-c", "1", "-Q", "default,shipping", "-n", "shop1@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        child = self.processes.start("shop worker", SHOP_DIR, command, self.shop)
        child.output.wait_for(" ready.", 90)
        return child

    def place_order(self, order_id: str, *only: str) -> dict[str, str]:
        """``manage.py place_order``: the shop publishes; the ids of its tasks."""
        command = [str(self.inst.shop_bin / "python"), "manage.py", "place_order", order_id]
        command += [arg for step in only for arg in ("--only", step)]
        out = run(command, env=self.shop, cwd=SHOP_DIR, timeout=60)
        return dict(json.loads(out.strip().splitlines()[-1]))

    def task(self, task_id: str, *states: str) -> dict[str, Any] | None:
        """The task as the JSON API shows it (None: not recorded, or not in one of ``states``)."""
        path = f"/api/tasks/{urllib.parse.quote(task_id, safe='')}"
        status, body = self.browser.get_json(path)
        if status == 404:
            return None
        assert status == 200, f"{path}: {status} {body}"
        return body if not states or body["state"] in states else None

    def settled(self, task_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        found: dict[str, Any] = wait_for(
            lambda: self.task(task_id, *states),
            timeout=timeout,
            what=f"{task_id} in {states or 'any state'}; monitor:\n{self.monitor.output.tail()}",
        )
        return found


@pytest.fixture
def stack(
    installation: Installation, service_database: str, names: Names, tmp_path: Path
) -> Iterator[Stack]:
    with running() as processes:
        built = Stack(installation, service_database, names, tmp_path, processes)
        built.browser.log_in(OPERATOR, PASSWORD)
        yield built
        # Shown by pytest only when the test failed: the end of each process's output.
        print(processes.report())


def test_service_records_retries_and_cancels_the_shops_tasks(stack: Stack, names: Names) -> None:
    browser, markers, settled, task = stack.browser, stack.markers, stack.settled, stack.task
    # The wheel carries the static files and the web server serves them.
    login_page = browser.get("/accounts/login/").body
    stylesheets = re.findall(r'<link[^>]+href="(/static/[^"]+\.css)"', login_page)
    assert stylesheets, login_page[:1000]
    for href in stylesheets:
        assert browser.get(href).status == 200, href
    worker = stack.start_worker()

    # The shop publishes an order's tasks; its worker runs them; the monitor records them.
    order = stack.place_order("ORD-1001")
    charge = settled(order["charge"], "SUCCESS")
    receipt = settled(order["receipt"], "SUCCESS")
    stock = settled(order["stock"], "FAILURE")
    assert charge["name"] == "workers.tasks.charge_order"
    assert receipt["name"] == "workers.tasks.send_receipt"
    assert stock["name"] == "workers.tasks.reserve_stock"
    for row in (charge, receipt, stock):
        assert row["input_id"] == "ORD-1001", row
        assert row["queue"] == "default", row
        assert row["worker"].startswith("shop1@"), row
    assert json.loads(charge["args"]) == ["ORD-1001", 4200]  # as shown: JSON text
    assert json.loads(receipt["kwargs"]) == {"email": "ann@example.com"}
    assert stock["error"]["type"].endswith("StockUnavailable"), stock["error"]
    assert "MUG-1" in stock["error"]["message"]
    listing = browser.get("/tasks/?q=ORD-1001")
    assert listing.status == 200
    for task_id in order.values():
        assert task_id in listing.body, f"{task_id} missing from the task list"

    # Retry the failed task from its page: it runs again on the shop's worker.
    page = f"/tasks/{urllib.parse.quote(order['stock'], safe='')}/"
    response = browser.submit(page, r"/retry$", reason="warehouse is back")
    assert response.status in (200, 302, 303), f"retry: {response.status}\n{response.body[:800]}"
    original = settled(order["stock"], timeout=30)
    retried_as = wait_for(
        lambda: (task(order["stock"]) or {}).get("retried_as"),
        timeout=60,
        what="the failed task to link to its retry",
    )
    settled(retried_as, "SUCCESS")
    # The link back comes with the retry's publication (from the web process), which may be
    # recorded after the shop's worker reported the run.
    retry = wait_for(
        lambda: (r := task(retried_as)) and r["retry_of"] and r,
        timeout=30,
        what="the retry to link back to the failed task (retry_of)",
    )
    assert retry["retry_of"] == order["stock"]
    assert retry["name"] == "workers.tasks.reserve_stock"
    assert retry["worker"].startswith("shop1@"), retry
    assert retry["input_id"] == "ORD-1001"
    assert original["state"] == "FAILURE"
    assert (markers / "stock-reserved-ORD-1001").read_text() == "shop.stock/ORD-1001"

    # Cancel a task while no worker runs; the worker started afterwards must skip it.
    worker.stop(timeout=30)
    assert worker.process.returncode is not None
    queued = stack.place_order("ORD-1002", "ship")["ship"]
    names.cancelled.append(queued)
    row = settled(queued, "PENDING")
    assert row["input_id"] == "ORD-1002" and row["queue"] == "shipping", row
    page = f"/tasks/{urllib.parse.quote(queued, safe='')}/"
    response = browser.submit(page, r"/cancel$", reason="customer withdrew the order")
    assert response.status in (200, 302, 303), f"cancel: {response.status}\n{response.body[:800]}"
    worker = stack.start_worker()
    # A task published after the cancelled one, on the same queue, runs: the worker has been
    # through the queue by the time it finishes.
    after = stack.place_order("ORD-1003", "ship")["ship"]
    settled(after, "SUCCESS")
    cancelled = settled(queued, "REVOKED")
    assert cancelled["worker"] in (None, "") or cancelled["worker"].startswith("shop1@")
    assert (markers / "shipped-ORD-1003").exists()
    assert not (markers / "shipped-ORD-1002").exists(), "the cancelled task ran"
    # Skipped by the worker itself, from the cancel it loaded when it started: no other worker
    # was there to hear the cancel's broadcast.
    worker.output.wait_for(f"Discarding revoked task: workers.tasks.ship_order[{queued}]", 10)

    # Both actions are on the audit page, by the operator who took them.
    audit = browser.get(f"/audit/?user={OPERATOR}")
    assert audit.status == 200
    for task_id in (order["stock"], queued):
        assert task_id in audit.body, f"{task_id} missing from the audit page"
    # The recorder never failed in the shop's processes.
    assert "tasktrail" not in "".join(
        line for line in worker.output.text.splitlines(True) if "ERROR" in line
    ), worker.output.text[-3000:]
