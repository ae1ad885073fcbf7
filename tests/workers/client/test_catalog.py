"""The task catalog a worker reports: what it says about each task, the entry it writes to the
stream, and the decoder the monitor runs on whatever arrives there."""

from __future__ import annotations

import time
from types import SimpleNamespace

import msgpack
import pytest
from celery import Celery
from django.conf import settings

from tasktrail import catalog
from tasktrail.catalog import (
    MAX_TASKS,
    CatalogError,
    Report,
    Reporter,
    TaskInfo,
    decode_catalog,
    describe,
    encode_catalog,
    is_catalog,
)
from tasktrail.events import ENTRY_FIELD


def shop_app(**conf) -> Celery:
    app = Celery("shop", set_as_current=False)
    app.conf.update(broker_url="memory://", task_default_queue="shop-default", **conf)
    return app


def by_name(app: Celery) -> dict[str, TaskInfo]:
    tasks, _ = describe(app)
    return {t.name: t for t in tasks}


def test_queue_is_the_tasks_own_then_its_route_then_the_default():
    def route_fn(name, args, kwargs, options, task=None, **kw):
        if name == "shop.needs_args":
            return {"queue": args[0]}  # raises with no arguments: skipped
        return None

    app = shop_app(task_routes=[{"shop.billing.*": {"queue": "billing"}}, route_fn])

    @app.task(shared=False, name="shop.mail.send", queue="mail")
    def send(): ...

    @app.task(shared=False, name="shop.billing.charge")
    def charge(): ...

    @app.task(shared=False, name="shop.sync")
    def sync(): ...

    @app.task(shared=False, name="shop.needs_args")
    def needs_args(): ...

    tasks = by_name(app)
    assert tasks["shop.mail.send"].queue == "mail"
    assert tasks["shop.billing.charge"].queue == "billing"
    assert tasks["shop.sync"].queue == "shop-default"
    assert tasks["shop.needs_args"].queue == "shop-default"


def test_a_route_to_a_queue_missing_from_task_queues_falls_back_to_the_default():
    from kombu import Queue

    app = shop_app(
        task_queues=[Queue("shop-default")],
        task_create_missing_queues=False,
        task_routes={"shop.x": {"queue": "nowhere"}},
    )

    @app.task(shared=False, name="shop.x")
    def x(): ...

    assert by_name(app)["shop.x"].queue == "shop-default"


def test_opt_out_max_retries_and_time_limits_are_reported():
    app = shop_app(task_time_limit=600, task_soft_time_limit=None)

    @app.task(
        shared=False,
        name="shop.charge",
        tasktrail_retryable=False,
        max_retries=5,
        soft_time_limit=20,
    )
    def charge(): ...

    @app.task(shared=False, name="shop.forever", max_retries=None, time_limit=30)
    def forever(): ...

    tasks = by_name(app)
    charge_info, forever_info = tasks["shop.charge"], tasks["shop.forever"]
    assert (charge_info.retryable, charge_info.max_retries) == (False, 5)
    assert (charge_info.time_limit, charge_info.soft_time_limit) == (600.0, 20.0)
    assert (forever_info.retryable, forever_info.max_retries) == (True, None)
    assert (forever_info.time_limit, forever_info.soft_time_limit) == (30.0, None)
    assert "celery.chord_unlock" in tasks  # Celery's own tasks are registered tasks too


def test_an_explicit_opt_in_and_the_parameter_names_are_reported():
    app = shop_app()

    @app.task(shared=False, name="shop.declared", tasktrail_retryable=True)
    def declared(order_id, email="x"): ...

    @app.task(shared=False, name="shop.silent", bind=True)
    def silent(self, payment_id, card_token): ...

    @app.task(shared=False, name="shop.opted_out", tasktrail_retryable=False)
    def opted_out(*args, **kwargs): ...

    @app.task(shared=False, name="shop.truthy", tasktrail_retryable=1)
    def truthy(): ...

    tasks = by_name(app)
    assert (tasks["shop.declared"].retryable, tasks["shop.declared"].declared_retryable) == (
        True,
        True,
    )
    assert tasks["shop.declared"].arg_names == ("order_id", "email")
    # absent is retryable in the default mode, but not declared; only True itself declares
    assert (tasks["shop.silent"].retryable, tasks["shop.silent"].declared_retryable) == (
        True,
        False,
    )
    assert tasks["shop.silent"].arg_names == ("payment_id", "card_token")  # bound: no self
    assert (tasks["shop.opted_out"].retryable, tasks["shop.opted_out"].declared_retryable) == (
        False,
        False,
    )
    assert tasks["shop.opted_out"].arg_names == ()
    assert tasks["shop.truthy"].declared_retryable is False
    decoded = decode_catalog(
        encode_catalog(Report("w@h", "shop", time.time(), tuple(tasks.values())))
    )
    assert {t.name: t for t in decoded.report.tasks} == tasks


def test_parameter_names_are_left_out_past_the_budget(monkeypatch):
    monkeypatch.setattr(catalog, "ARG_NAMES_BUDGET", 30)
    app = shop_app()

    @app.task(shared=False, name="shop.a1")
    def a1(first_parameter, second_parameter): ...

    @app.task(shared=False, name="shop.a2")
    def a2(third_parameter): ...

    tasks = by_name(app)
    known = [tasks[n].arg_names for n in ("shop.a1", "shop.a2")]
    assert known.count(None) >= 1  # the budget ran out; the tasks are reported all the same


def test_a_catalog_is_capped_in_tasks_and_name_length():
    app = shop_app()

    def noop() -> None: ...

    for i in range(MAX_TASKS + 7):
        app.task(noop, shared=False, name=f"shop.t{i:05d}")
    app.task(noop, shared=False, name="shop." + "x" * 300)
    tasks, left_out = describe(app)
    assert len(tasks) == MAX_TASKS
    assert all(len(t.name) <= 255 for t in tasks)
    # Over the cap (Celery's own and any shared tasks count too), and the name too long to match.
    assert left_out == len(app.tasks) - MAX_TASKS
    assert "shop." + "x" * 300 not in {t.name for t in tasks}
    entry = encode_catalog(Report("w@h", "shop", time.time(), tuple(tasks), truncated=left_out))
    assert len(entry[catalog.ENTRY_FIELD]) < catalog.MAX_ENTRY_BYTES
    decoded = decode_catalog(entry)
    assert len(decoded.report.tasks) == MAX_TASKS and decoded.invalid == []


def test_encode_decode_round_trip():
    report = Report(
        hostname="celery@pod-1",
        app="shop",
        ts=1_750_000_000.5,
        pid=42,
        tasks=(
            TaskInfo("shop.a", "q", False, 3, 10.0, 5.0),
            TaskInfo("shop.b"),
        ),
    )
    fields = encode_catalog(report)
    assert is_catalog(fields) and ENTRY_FIELD not in fields  # never mistaken for an event batch
    assert decode_catalog(fields).report == report


def packed(body: object) -> dict[bytes, bytes]:
    return {catalog.ENTRY_FIELD: msgpack.packb(body, use_bin_type=True)}


def valid_body(**changes) -> dict:
    body = {"v": 1, "hostname": "w@h", "app": "shop", "ts": time.time(), "pid": 1, "tasks": []}
    body.update(changes)
    return body


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"c": b"\xc1\xff not msgpack"}, "not msgpack"),
        ({b"c": b"\x00" * (catalog.MAX_ENTRY_BYTES + 1)}, "larger than"),
        (packed([1, 2, 3]), "not a map"),
        (packed(valid_body(v=2)), "schema version"),
        (packed(valid_body(v=True)), "schema version"),
        (packed(valid_body(hostname=None)), "hostname"),
        (packed(valid_body(hostname="h" * 256)), "hostname"),
        (packed(valid_body(hostname=["w@h"])), "hostname"),
        (packed(valid_body(app={"x": 1})), "app name"),
        (packed(valid_body(ts="now")), "ts"),
        (packed(valid_body(ts=float("nan"))), "ts"),
        (packed(valid_body(ts=1e20)), "ts"),
        (packed(valid_body(pid="1")), "pid"),
        (packed(valid_body(pid=2**40)), "pid"),
        (packed(valid_body(truncated=-1)), "truncated"),
        (packed(valid_body(tasks={"shop.a": {}})), "not a list"),
        (packed(valid_body(tasks=[{"name": f"t{i}"} for i in range(MAX_TASKS + 1)])), "more than"),
        ({b"c": b"\x91" * 100_000 + b"\xc0"}, "not msgpack"),  # arrays nested 100,000 deep
        ({b"x": b"1"}, "no 'c' field"),
    ],
)
def test_an_unusable_catalog_is_refused_with_its_reason(fields, reason):
    with pytest.raises(CatalogError) as refused:
        decode_catalog(fields)
    assert reason in refused.value.reason
    assert len(repr(refused.value.raw)) < 100_000  # what is dead-lettered stays small


def test_invalid_tasks_are_left_out_and_named_the_rest_kept():
    tasks = [
        {"name": "shop.ok", "queue": "q", "retryable": False, "max_retries": 2},
        {"name": "shop.ok2", "time_limit": 5},
        "shop.not_a_map",
        {"name": None},
        {"name": "shop.\x00nul"},
        {"name": "shop.q", "queue": ["a"]},
        {"name": "shop.r", "retryable": "no"},
        {"name": "shop.m", "max_retries": 1.5},
        {"name": "shop.t", "time_limit": -1},
        {"name": "shop.t2", "soft_time_limit": float("inf")},
        {"name": "shop.deep", "queue": nested(50)},
        nested(200),
        {"name": "shop.ok", "queue": "later", "retryable": True},  # listed twice: the last counts
        {"name": "shop.d", "declared_retryable": "yes"},
        {"name": "shop.n", "arg_names": "a,b"},
        {"name": "shop.n2", "arg_names": ["a", "b,c"]},
        {"name": "shop.n3", "arg_names": ["x"] * (catalog.MAX_ARG_NAMES + 1)},
        {"name": "shop.both", "retryable": False, "declared_retryable": True, "arg_names": ["a"]},
    ]
    decoded = decode_catalog(packed(valid_body(tasks=tasks, hostname="w\x00@h")))
    report = decoded.report
    assert {t.name: t for t in report.tasks} == {
        "shop.ok": TaskInfo("shop.ok", "later", True),
        "shop.ok2": TaskInfo("shop.ok2", time_limit=5.0),
        # opting out wins over a declared opt-in
        "shop.both": TaskInfo("shop.both", retryable=False, arg_names=("a",)),
    }
    assert len(decoded.invalid) == 14 and report.truncated == 14
    assert report.hostname == "w\ufffd@h"  # NUL replaced in text that only labels


def test_reporter_writes_the_catalog_to_the_stream(redis_client):
    app = shop_app()

    @app.task(shared=False, name="shop.a", queue="a")
    def a(): ...

    target = SimpleNamespace(recorder_url=settings.REDIS_URL, stream=settings.TASKTRAIL_STREAM)
    reporter = Reporter(app, "celery@pod-1", target)
    assert reporter.send() and reporter.send()
    entries = redis_client.xrange(settings.TASKTRAIL_STREAM)
    assert len(entries) == 2
    report = decode_catalog(entries[-1][1]).report
    assert report.hostname == "celery@pod-1" and report.app == "shop"
    assert TaskInfo("shop.a", "a", max_retries=3, arg_names=()) in report.tasks  # Celery's max


def test_a_report_that_cannot_be_written_is_logged_never_raised(tasktrail_log):
    app = shop_app()
    target = SimpleNamespace(recorder_url="redis://127.0.0.1:1/0", stream="tasktrail:events")
    reporter = Reporter(app, "w@h", target)
    assert reporter.send() is False
    assert reporter.failures == 1
    assert any("report to tasktrail:events failed" in w for w in tasktrail_log.warnings())


def test_worker_ready_starts_reporting_only_for_the_installed_app(redis_client, monkeypatch):
    monkeypatch.setattr(catalog, "_reporter", None)
    monkeypatch.setattr(catalog, "_installed", None)
    app, other = shop_app(), shop_app()
    target = SimpleNamespace(recorder_url=settings.REDIS_URL, stream=settings.TASKTRAIL_STREAM)
    catalog.install(app, lambda: target)

    catalog._on_worker_ready(sender=SimpleNamespace(app=other, hostname="other@h"))
    assert catalog.current() is None and redis_client.xlen(settings.TASKTRAIL_STREAM) == 0

    catalog._on_worker_ready(sender=SimpleNamespace(app=app, hostname="shop@h"))
    reporter = catalog.current()
    assert reporter is not None
    try:
        deadline = time.monotonic() + 10  # the first report is sent from the reporter's thread
        while reporter.sent + reporter.failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (reporter.sent, reporter.failures) == (1, 0)
        [(_, fields)] = redis_client.xrange(settings.TASKTRAIL_STREAM)
        assert decode_catalog(fields).report.hostname == "shop@h"
    finally:
        reporter.stop()


def test_worker_ready_with_recording_off_reports_nothing(redis_client, monkeypatch):
    monkeypatch.setattr(catalog, "_reporter", None)
    monkeypatch.setattr(catalog, "_installed", None)
    app = shop_app()
    catalog.install(app, lambda: None)
    catalog._on_worker_ready(sender=SimpleNamespace(app=app, hostname="shop@h"))
    assert catalog.current() is None and redis_client.xlen(settings.TASKTRAIL_STREAM) == 0


def test_a_catalog_of_millions_of_empty_maps_is_refused_before_they_are_built():
    count = catalog.MAX_ENTRY_BYTES - 100  # 4 MiB of 1-byte maps in the task list
    body = b"\x81\xa5tasks\xdd" + count.to_bytes(4, "big") + b"\x80" * count
    with pytest.raises(catalog.CatalogError, match="not msgpack"):
        catalog.decode_catalog({b"c": body})
    nested = b"\x81\xa5tasks\xdc" + (5000).to_bytes(2, "big") + (b"\x9f" + b"\x90" * 15) * 5000
    with pytest.raises(catalog.CatalogError, match="not msgpack"):  # 80,000 lists in 85 KB
        catalog.decode_catalog({b"c": nested})
