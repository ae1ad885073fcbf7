"""README screenshots of the overview, the task list and a task's page, with realistic rows.

Not collected by the suite (the name does not start with ``test_``); run it by hand:

    .venv/bin/python -m pytest tests/browser/screenshots.py -q

It writes docs/screenshots/{overview,tasks,tasks-dark,task-detail,queues}.png.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from dashboard import redis_keys
from dashboard.ingest.writer import write_events
from tests.browser.conftest import NO_PLAYWRIGHT, log_in, user_in
from tests.conftest import event
from tests.overview_figures import measure_overview

expect = pytest.importorskip("playwright.sync_api", reason=NO_PLAYWRIGHT).expect
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WORKERS = ("celery@shop-worker-1", "celery@shop-worker-2", "celery@inventory-1")


def task_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def traceparent(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


def run(
    rng,
    *,
    name,
    queue,
    input_id,
    t0,
    args,
    kwargs="{}",
    arg_names="",
    outcome="ok",
    runtime=0.4,
    parent_id=None,
    root_id=None,
    worker=None,
    failures=(),
):
    """The events of one task: published, then attempts; ``failures``: (exc_type, message) of the
    attempts that Celery retried before the last one, which ends with ``outcome``."""
    tid = task_id(rng)
    worker = worker or rng.choice(WORKERS[:2])
    common = {"name": name, "queue": queue}
    events = [
        event(
            "published",
            tid,
            t0,
            **common,
            input_id=input_id,
            args=args,
            kwargs=kwargs,
            arg_names=arg_names or None,
            retries=0,
            published_at=t0,
            parent_id=parent_id,
            root_id=root_id or tid,
            traceparent=traceparent(rng),
        ),
    ]
    t = t0
    attempts = [*failures, None]
    for attempt, failure in enumerate(attempts):
        wait = rng.uniform(0.02, 0.6)
        pid = rng.randint(4000, 4200)
        t += wait
        events += [
            event("received", tid, t, **common, hostname=worker, retries=attempt),
            event(
                "started", tid, t + 0.01, retries=attempt, hostname=worker, pid=pid, queue_wait=wait
            ),
        ]
        took = runtime * rng.uniform(0.6, 1.6)
        t += 0.01 + took
        if failure is not None:
            exc_type, message = failure
            events += [
                event(
                    "retried",
                    tid,
                    t,
                    retries=attempt,
                    hostname=worker,
                    pid=pid,
                    exc_type=exc_type,
                    exc_message=message,
                    traceback=traceback(name, exc_type, message),
                ),
                event(
                    "published",
                    tid,
                    t,
                    **common,
                    retries=attempt + 1,
                    published_at=t,
                    eta=t + 2 ** (attempt + 1),
                ),
            ]
            t += 2 ** (attempt + 1)
            continue
        if outcome == "ok":
            events.append(
                event("succeeded", tid, t, retries=attempt, hostname=worker, pid=pid, runtime=took)
            )
        elif outcome == "running":
            pass
        else:
            exc_type, message = outcome
            events.append(
                event(
                    "failed",
                    tid,
                    t,
                    retries=attempt,
                    hostname=worker,
                    pid=pid,
                    exc_type=exc_type,
                    exc_message=message,
                    runtime=took,
                    traceback=traceback(name, exc_type, message),
                )
            )
    write_events(events)
    return tid


def traceback(name: str, exc_type: str, message: str) -> str:
    function = name.rsplit(".", 1)[-1]
    return (
        "Traceback (most recent call last):\n"
        '  File "/srv/shop/.venv/lib/python3.12/site-packages/celery/app/trace.py", line 453, '
        "in trace_task\n    R = retval = fun(*args, **kwargs)\n"
        f'  File "/srv/shop/workers/tasks.py", line 88, in {function}\n'
        "    response = client.send(payload)\n"
        '  File "/srv/shop/shop/clients.py", line 41, in send\n'
        f"    raise {exc_type}(response.reason)\n"
        f"shop.clients.{exc_type}: {message}"
    )


def history(now: float) -> str:
    """About an hour of shop traffic; returns the id of the task to show in detail."""
    rng = random.Random(20250614)
    shown = ""
    for i in range(140):
        t0 = now - 3300 + i * 23.5 + rng.uniform(0, 10)
        kind = rng.random()
        if kind < 0.35:
            order = rng.randint(10200, 10999)
            outcome = (
                ("SMTPServerDisconnected", "Connection unexpectedly closed")
                if (order % 10 == 7)
                else "ok"
            )
            run(
                rng,
                name="shop.send_invoice",
                queue="default",
                input_id=str(order),
                t0=t0,
                args=f"[{order}]",
                outcome=outcome,
                runtime=0.35,
            )
        elif kind < 0.55:
            sku = f"SKU-{rng.randint(1000, 9999)}"
            parent = run(
                rng,
                name="shop.sync_inventory",
                queue="inventory",
                input_id=sku,
                t0=t0,
                args=f'["{sku}", "{rng.choice(["north", "south", "east"])}"]',
                worker=WORKERS[2],
                runtime=1.2,
            )
            run(
                rng,
                name="shop.notify_customer",
                queue="default",
                t0=t0 + 2,
                input_id=f"CUST-{rng.randint(100, 999)}",
                args='["Items in your basket are selling fast"]',
                parent_id=parent,
                root_id=parent,
                runtime=0.15,
            )
        elif kind < 0.75:
            ship = f"SHP-{rng.randint(2000, 2999)}"
            failures = [("CarrierTimeout", "DHL API did not answer in 10 s")] * rng.randint(0, 2)
            run(
                rng,
                name="shop.book_shipment",
                queue="default",
                input_id=ship,
                t0=t0,
                args=f'["{ship}"]',
                failures=failures,
                runtime=0.9,
            )
        else:
            pay = f"PAY-{rng.randint(7000, 7999)}"
            declined = rng.random() < 0.25
            tid = run(
                rng,
                name="shop.charge_card",
                queue="payments",
                input_id=pay + ("X" if declined else ""),
                t0=t0,
                args=f'["{pay}", 4999]',
                kwargs='{"card_token": "tok_1PqG8s2eZvKYlo2C"}',
                arg_names="payment_id,amount_cents",
                failures=[("CardDeclined", "issuer_unavailable")] if declined else (),
                outcome=("CardDeclined", "do_not_honor: the issuer declined the charge")
                if declined
                else "ok",
                runtime=0.7,
            )
            if declined:
                shown = tid
    # still moving: two running and two waiting
    for name, queue, input_id in [
        ("shop.build_report", "default", "RPT-2025-06"),
        ("shop.sync_inventory", "inventory", "SKU-3141"),
    ]:
        run(
            rng,
            name=name,
            queue=queue,
            input_id=input_id,
            t0=now - 40,
            args=f'["{input_id}"]',
            outcome="running",
        )
    for input_id in ("10991", "10992"):
        write_events(
            [
                event(
                    "published",
                    task_id(rng),
                    now - 3,
                    name="shop.send_invoice",
                    queue="default",
                    input_id=input_id,
                    args=f"[{input_id}]",
                    retries=0,
                    published_at=now - 3,
                )
            ]
        )
    return shown


def monitor_alive(client) -> None:
    """A fresh monitor heartbeat, so the pages show no 'no monitor' banner."""
    beat = {"at": time.time(), "lag": 0}
    client.hset(redis_keys.monitors(settings.TASKTRAIL_STREAM), "screenshots", json.dumps(beat))


def queue_check(client) -> None:
    """The monitor's latest check, as the Queues page reads it."""
    queues = {
        "default": {"state": "ok", "words": "moving", "depth": 12, "oldest_age": 1.4,
                    "consumers": 2, "finished_per_minute": 184.0},
        "inventory": {"state": "ok", "words": "moving", "depth": 0, "oldest_age": None,
                      "consumers": 1, "finished_per_minute": 22.5},
        "reports": {"state": "stuck", "words": "oldest message 6m12s old; no consumer for 6m10s",
                    "depth": 9, "oldest_age": 372.0, "consumers": 0, "finished_per_minute": 0.0},
    }  # fmt: skip
    snapshot = {
        "at": time.time() - 3, "every": 10.0, "queues": queues, "workers": 3,
        "redis_seconds": 0.002, "stream": {"lag_entries": 0, "lag_seconds": 0.0},
    }  # fmt: skip
    client.set(redis_keys.alert_snapshot(settings.TASKTRAIL_STREAM), json.dumps(snapshot))


def test_screenshots(browser, live_server, viewer, redis_client):
    shown = history(time.time())
    OUT.mkdir(parents=True, exist_ok=True)
    operator = user_in("operator", "screenshots-operator")  # the actions on offer, or why not
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1440, "height": 900},
        device_scale_factor=1,
        timezone_id="Europe/Paris",
    )
    page = context.new_page()
    try:
        monitor_alive(redis_client)
        queue_check(redis_client)
        measure_overview(client=redis_client)  # the figures the monitor's check counts
        log_in(page, viewer, "/")
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        page.screenshot(path=OUT / "overview.png", full_page=True)

        monitor_alive(redis_client)
        page.goto("/tasks/")
        page.screenshot(path=OUT / "tasks.png")

        monitor_alive(redis_client)
        page.goto("/queues/")
        page.screenshot(path=OUT / "queues.png")
    finally:
        context.close()

    dark = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1440, "height": 900},
        color_scheme="dark",
        timezone_id="Europe/Paris",
    )
    page = dark.new_page()
    try:
        monitor_alive(redis_client)
        log_in(page, viewer, "/tasks/")
        page.screenshot(path=OUT / "tasks-dark.png")
    finally:
        dark.close()

    as_operator = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1440, "height": 900},
        timezone_id="Europe/Paris",
    )
    page = as_operator.new_page()
    try:
        monitor_alive(redis_client)
        log_in(page, operator, f"/tasks/{shown}/")
        page.locator("ol.attempts details").last.locator("summary").click()
        page.screenshot(path=OUT / "task-detail.png", full_page=True)
    finally:
        as_operator.close()
