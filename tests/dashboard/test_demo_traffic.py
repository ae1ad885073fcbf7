"""The demo traffic mix (``dashboard.demo``): what it would publish, tested without a broker."""

from __future__ import annotations

import itertools
import os
import random
import re
from collections import Counter
from collections.abc import Callable

import pytest
from celery.canvas import _chain

from dashboard.demo import (
    HANG_EVERY,
    HANG_FIRST_AFTER,
    HANG_SECONDS,
    Call,
    Publication,
    TrafficMix,
    ensure_demo_logins,
)
from tasktrail.task_inputs import extract_input_id, resolve_rule
from workers import tasks

N = 3000


class FakeClock:
    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value


def generate(seed: int, n: int = N, clock: Callable[[], float] | None = None) -> list[Publication]:
    mix = TrafficMix(random.Random(seed), clock=clock or FakeClock(0.0))
    return [mix.next() for _ in range(n)]


def calls_of(publications: list[Publication]) -> list[Call]:
    return [call for publication in publications for call in publication.calls]


def by_task(calls: list[Call], task: object) -> list[Call]:
    return [call for call in calls if call.task is task]


@pytest.fixture(scope="module")
def traffic() -> list[Publication]:
    return generate(seed=20250611)


def test_every_demo_task_but_the_hanging_one_is_published(traffic: list[Publication]) -> None:
    counts = Counter(call.task.name for call in calls_of(traffic))
    assert set(counts) == {
        tasks.send_invoice.name,
        tasks.sync_inventory.name,
        tasks.book_shipment.name,
        tasks.charge_card.name,
        tasks.notify_customer.name,
    }
    # a mix, not one task with a sprinkle of the others
    assert min(counts.values()) > N * 0.05


def test_invoices_use_integer_order_ids_and_some_end_in_7(traffic: list[Publication]) -> None:
    invoices = by_task(calls_of(traffic), tasks.send_invoice)
    for call in invoices:
        (order_id,) = call.args
        assert type(order_id) is int and 10000 <= order_id <= 99999
        assert call.input_id == str(order_id)
        assert set(call.kwargs) <= {"email"}
    failing = [call for call in invoices if call.args[0] % 10 == 7]
    assert 0.05 < len(failing) / len(invoices) < 0.2


def test_inventory_syncs_use_skus(traffic: list[Publication]) -> None:
    syncs = by_task(calls_of(traffic), tasks.sync_inventory)
    assert syncs
    for call in syncs:
        assert re.fullmatch(r"SKU-\d{4}", call.args[0])
        assert call.input_id == call.args[0]
        assert call.kwargs["warehouse"] in {"north", "south", "east"}


def test_shipments_fail_zero_to_two_times(traffic: list[Publication]) -> None:
    shipments = by_task(calls_of(traffic), tasks.book_shipment)
    for call in shipments:
        assert re.fullmatch(r"SHP-\d{6}", call.args[0])
    fail_times = Counter(call.kwargs["fail_times"] for call in shipments)
    assert set(fail_times) == {0, 1, 2}
    # within book_shipment's max_retries, so every shipment eventually succeeds
    assert max(fail_times) <= tasks.book_shipment.max_retries


def test_payments_some_declined_some_with_a_card_token(traffic: list[Publication]) -> None:
    payments = by_task(calls_of(traffic), tasks.charge_card)
    for call in payments:
        payment_id, amount_cents = call.args
        assert re.fullmatch(r"PAY-\d{4}X?", payment_id)
        assert type(amount_cents) is int and amount_cents > 0
        assert call.input_id == payment_id
    declined = [call for call in payments if call.args[0].endswith("X")]
    assert 0.1 < len(declined) / len(payments) < 0.4
    tokens = [call.kwargs["card_token"] for call in payments if "card_token" in call.kwargs]
    assert 0 < len(tokens) < len(payments)
    assert all(re.fullmatch(r"tok_[0-9a-f]{24}", token) for token in tokens)


def test_notifications_name_a_customer(traffic: list[Publication]) -> None:
    for call in by_task(calls_of(traffic), tasks.notify_customer):
        customer_id, message = call.args
        assert type(customer_id) is int and call.input_id == str(customer_id)
        assert isinstance(message, str) and message


def test_chains_link_the_expected_tasks(traffic: list[Publication]) -> None:
    chains = Counter(
        tuple(call.task for call in publication.calls)
        for publication in traffic
        if publication.is_chain
    )
    restock = (tasks.sync_inventory, tasks.notify_customer)
    checkout = (tasks.charge_card, tasks.book_shipment, tasks.send_invoice)
    assert set(chains) == {restock, checkout}
    assert 0.05 < sum(chains.values()) / N < 0.3
    for publication in traffic:
        if publication.calls[0].task is tasks.sync_inventory and publication.is_chain:
            sync, notify = publication.calls
            assert sync.input_id in notify.args[1]  # "SKU-1234 is back in stock"


def test_the_recorder_finds_the_same_business_ids(traffic: list[Publication]) -> None:
    # What the dashboard will show as the input id is what the traffic meant to be the business id.
    for call in calls_of(traffic)[:500]:
        assert extract_input_id(resolve_rule(call.task), call.args, call.kwargs) == call.input_id


def test_signatures_are_what_a_publisher_sends() -> None:
    single = Publication((Call(tasks.send_invoice, "10237", (10237,), {"email": "a@example.com"}),))
    signature = single.signature()
    assert signature.task == tasks.send_invoice.name
    assert tuple(signature.args) == (10237,)
    assert signature.kwargs == {"email": "a@example.com"}
    assert signature.immutable
    assert single.describe() == "send_invoice 10237"

    chained = Publication(
        (
            Call(tasks.sync_inventory, "SKU-3141", ("SKU-3141",), {"warehouse": "north"}),
            Call(tasks.notify_customer, "4411", (4411, "SKU-3141 is back in stock")),
        )
    )
    signature = chained.signature()
    assert isinstance(signature, _chain)
    assert [step.task for step in signature.tasks] == [
        tasks.sync_inventory.name,
        tasks.notify_customer.name,
    ]
    # immutable: the notification does not get the inventory result as its first argument
    assert all(step.immutable for step in signature.tasks)
    assert chained.describe() == "chain sync_inventory SKU-3141 -> notify_customer 4411"


def test_the_same_seed_gives_the_same_traffic() -> None:
    def summary(publications: list[Publication]) -> list[tuple[object, ...]]:
        return [(c.task.name, c.args, dict(c.kwargs)) for c in calls_of(publications)]

    assert summary(generate(seed=7, n=200)) == summary(generate(seed=7, n=200))
    assert summary(generate(seed=7, n=200)) != summary(generate(seed=8, n=200))


def hangs(publications: list[Publication]) -> list[int]:
    return [
        index
        for index, publication in enumerate(publications)
        if any(call.task is tasks.build_report for call in publication.calls)
    ]


def test_a_hanging_report_comes_soon_after_start_then_rarely() -> None:
    step = 0.5  # two publications a second, the demo's default rate
    publications = generate(seed=1, n=8000, clock=FakeClock(step))  # about 67 minutes
    indexes = hangs(publications)
    assert indexes, "no hanging report at all"
    assert indexes[0] * step <= HANG_FIRST_AFTER + 1
    gaps = [(b - a) * step for a, b in itertools.pairwise(indexes)]
    # never two hung reports at once on the demo worker: each hangs HANG_SECONDS
    assert all(gap >= HANG_EVERY > HANG_SECONDS for gap in gaps)
    assert len(indexes) == 1 + int((8000 * step - HANG_FIRST_AFTER) // HANG_EVERY)
    for index in indexes:
        (report,) = publications[index].calls
        assert re.fullmatch(r"RPT-\d{4}-\d{2}-\d{3}", report.input_id)
        assert report.kwargs == {"seconds": HANG_SECONDS}


def test_a_burst_brings_at_most_one_hanging_report() -> None:
    clock = FakeClock(0.0)
    mix = TrafficMix(random.Random(3), clock=clock)
    assert hangs([mix.next() for _ in range(1000)]) == []  # not before HANG_FIRST_AFTER
    clock.now += HANG_FIRST_AFTER
    assert len(hangs([mix.next() for _ in range(5000)])) == 1


@pytest.mark.django_db
def test_demo_logins_are_created_once_with_their_roles() -> None:
    from django.contrib.auth import authenticate, get_user_model

    logins = {login.username: login for login in ensure_demo_logins()}
    assert set(logins) == {"admin", "operator", "viewer"}
    assert all(login.created and login.password_works for login in logins.values())
    users = get_user_model().objects
    admin, operator, viewer = (users.get(username=name) for name in ("admin", "operator", "viewer"))
    assert admin.is_superuser and admin.is_staff
    assert operator.is_staff and not operator.is_superuser
    assert viewer.is_staff and not viewer.is_superuser
    for user in (operator, viewer):
        assert user.has_perm("dashboard.view_taskrun")
        assert user.has_perm("dashboard.view_taskattempt")
        assert authenticate(username=user.username, password=logins[user.username].password)
    assert {group.name for group in viewer.groups.all()} == {"viewer"}
    assert {group.name for group in operator.groups.all()} == {"operator"}

    viewer.set_password("changed-by-someone")
    viewer.save()
    again = {login.username: login for login in ensure_demo_logins()}
    assert not any(login.created for login in again.values())
    assert not again["viewer"].password_works and again["operator"].password_works
    assert users.filter(username__in=list(again)).count() == 3


def test_exports_go_to_a_queue_no_demo_worker_consumes() -> None:
    from dashboard.demo import STUCK_EVERY, STUCK_FIRST_AFTER, STUCK_QUEUE
    from dashboard.management.commands.demo import WORKER_ARGS

    clock = FakeClock(0.0)
    mix = TrafficMix(random.Random(5), clock=clock)
    assert not any(c.task is tasks.export_report for c in calls_of([mix.next() for _ in range(50)]))
    clock.now += STUCK_FIRST_AFTER
    exports = [
        c for c in calls_of([mix.next() for _ in range(50)]) if c.task is tasks.export_report
    ]
    assert len(exports) == 1  # then one every STUCK_EVERY seconds
    signature = Publication((exports[0],)).signature()
    assert signature.options["queue"] == STUCK_QUEUE
    assert STUCK_QUEUE not in " ".join(WORKER_ARGS) and STUCK_EVERY > 0


def test_the_demo_traces_without_a_collector_and_links_every_row() -> None:
    from dashboard.management.commands.demo import DEMO_TRACING
    from tasktrail.tracing.config import config_from_env
    from tracing.links import parse_viewer

    config = config_from_env(DEMO_TRACING)
    assert config.enabled and config.exporters == ()  # spans made, none exported
    viewer = parse_viewer(DEMO_TRACING["TASKTRAIL_TRACE_VIEWER"])
    assert viewer is not None


def test_the_demo_keeps_only_request_errors_in_its_log() -> None:
    import subprocess
    import sys

    from dashboard.management.commands.demo import DEMO_QUIET

    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.LOGGING['loggers']['django.server']['level'])"
    )
    env = {
        **os.environ,
        **DEMO_QUIET,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # never contacted; no embedded server started
    }
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert shown.stdout.strip() == "WARNING"


@pytest.mark.parametrize(("verbosity", "lines"), [(1, 1), (2, 4)])
def test_demo_traffic_prints_a_line_per_publication_only_when_asked(redis_client, verbosity, lines):
    """The demo's log stays readable: by default a summary line every SUMMARY_SECONDS (none in a
    short run) and the total; ``-v 2`` prints each publication."""
    from io import StringIO

    from django.core.management import call_command

    before = set(redis_client.keys())
    out = StringIO()
    try:
        call_command("demo_traffic", count=3, rate=1000, seed=7, verbosity=verbosity, stdout=out)
    finally:
        redis_client.delete(*(set(redis_client.keys()) - before) or [b"-"])  # its queues
    printed = out.getvalue().splitlines()
    assert len(printed) == lines
    assert printed[-1] == "published 3 demo task(s)"
