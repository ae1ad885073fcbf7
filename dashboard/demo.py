"""Demo traffic and demo logins, shared by ``manage.py demo_traffic`` and ``manage.py demo``.

``TrafficMix`` decides *what* to publish: each ``next()`` returns a ``Publication`` (one task call,
or a chain of them) built from the shop tasks in ``workers.tasks`` with business-looking ids.
It publishes nothing itself, so it can be tested with a seeded ``random.Random`` and a fake clock;
``publish()`` is the thin part that sends a publication to the broker.

The mix (weights in ``MIX``):

- ``send_invoice`` for order ids like 10234; ids ending in 7 fail (about one in ten);
- ``sync_inventory`` for SKUs like ``SKU-3141``, on the second queue ``inventory``;
- ``book_shipment`` for ``SHP-…`` ids with ``fail_times`` 0-2: Celery retries it with back-off;
- ``charge_card`` for ``PAY-7781``; a quarter are ``PAY-7782X``, declined, retried, then failed.
  Most carry a ``card_token`` keyword argument, to show argument redaction;
- ``notify_customer`` for customer ids;
- chains (``sync_inventory → notify_customer``, ``charge_card → book_shipment → send_invoice``) so
  parent and root ids appear;
- rarely, a ``build_report`` that hangs for ten minutes: one soon after start, then one every
  ``hang_every`` seconds. The default (11 min) is longer than the hang, so with the demo worker's
  two processes at most one is ever stuck and the other keeps the queues moving.
- every ``stuck_every`` seconds (from ``stuck_first_after``), an ``export_report`` to the queue
  ``reports``, which no demo worker consumes: that queue gets stuck and the monitor mails an alert
  (console email backend: the mail shows in the monitor's output).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import chain
from celery.canvas import Signature

from workers import tasks

HANG_SECONDS = 600.0
HANG_FIRST_AFTER = 20.0
HANG_EVERY = 660.0
STUCK_QUEUE = "reports"  # no demo worker consumes it
STUCK_FIRST_AFTER = 10.0
STUCK_EVERY = 45.0

WAREHOUSES = ("north", "south", "east")
MESSAGES = (
    "Your order has shipped",
    "Your parcel is out for delivery",
    "We received your return",
    "Your refund is on its way",
    "Items in your basket are selling fast",
)


@dataclass(frozen=True)
class Call:
    """One task call: the task, its arguments, and the business id it works on (for display)."""

    task: Any  # a task of workers.tasks
    input_id: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None  # None: the task's own route

    @property
    def name(self) -> str:
        return str(self.task.name).rsplit(".", 1)[-1]

    def signature(self) -> Signature:
        signature: Signature = self.task.si(*self.args, **self.kwargs)
        return signature.set(queue=self.queue) if self.queue else signature


@dataclass(frozen=True)
class Publication:
    """What to publish next: one call, or several run as a chain (each after the previous)."""

    calls: tuple[Call, ...]

    @property
    def is_chain(self) -> bool:
        return len(self.calls) > 1

    def signature(self) -> Signature:
        if self.is_chain:
            return chain(*(call.signature() for call in self.calls))
        return self.calls[0].signature()

    def describe(self) -> str:
        text = " -> ".join(f"{call.name} {call.input_id}" for call in self.calls)
        return f"chain {text}" if self.is_chain else text


def publish(publication: Publication) -> list[str]:
    """Send ``publication`` to the broker; the task ids, in the order the tasks will run.

    Needs the project's Celery app configured (import ``workers.celery_app`` first), or the tasks
    go to Celery's default app.
    """
    result: Any = publication.signature().apply_async()
    ids = []
    while result is not None:
        ids.append(str(result.id))
        result = result.parent
    return ids[::-1]


# -- the mix --------------------------------------------------------------------------------------


def _hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choices("0123456789abcdef", k=length))


def invoice(rng: random.Random) -> Call:
    order_id = rng.randint(10000, 99999)
    kwargs = (
        {"email": f"customer{rng.randint(100, 9999)}@example.com"} if rng.random() < 0.5 else {}
    )
    return Call(tasks.send_invoice, str(order_id), (order_id,), kwargs)


def inventory(rng: random.Random) -> Call:
    sku = f"SKU-{rng.randint(1000, 9999)}"
    return Call(tasks.sync_inventory, sku, (sku,), {"warehouse": rng.choice(WAREHOUSES)})


def shipment(rng: random.Random, fail_times: int | None = None) -> Call:
    shipment_id = f"SHP-{rng.randint(100000, 999999)}"
    if fail_times is None:
        fail_times = rng.choices((0, 1, 2), weights=(5, 3, 2))[0]
    return Call(tasks.book_shipment, shipment_id, (shipment_id,), {"fail_times": fail_times})


def payment(rng: random.Random) -> Call:
    payment_id = f"PAY-{rng.randint(1000, 9999)}" + ("X" if rng.random() < 0.25 else "")
    amount_cents = rng.randint(5, 400) * 100 + rng.choice((0, 49, 95, 99))
    kwargs = {"card_token": f"tok_{_hex(rng, 24)}"} if rng.random() < 0.7 else {}
    return Call(tasks.charge_card, payment_id, (payment_id, amount_cents), kwargs)


def notification(rng: random.Random) -> Call:
    customer_id = rng.randint(1000, 9999)
    return Call(tasks.notify_customer, str(customer_id), (customer_id, rng.choice(MESSAGES)))


def restock_chain(rng: random.Random) -> tuple[Call, ...]:
    """Inventory sync (queue ``inventory``), then tell a waiting customer (queue ``default``)."""
    sync = inventory(rng)
    customer_id = rng.randint(1000, 9999)
    notify = Call(
        tasks.notify_customer, str(customer_id), (customer_id, f"{sync.input_id} is back in stock")
    )
    return (sync, notify)


def checkout_chain(rng: random.Random) -> tuple[Call, ...]:
    """Charge, ship, invoice; a declined card stops the chain after its retries."""
    return (payment(rng), shipment(rng, fail_times=0), invoice(rng))


def hanging_report(rng: random.Random) -> Call:
    report_id = f"RPT-{rng.randint(2024, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(100, 999)}"
    return Call(tasks.build_report, report_id, (report_id,), {"seconds": HANG_SECONDS})


def stuck_export(rng: random.Random) -> Call:
    report_id = f"EXP-{rng.randint(1000, 9999)}"
    return Call(tasks.export_report, report_id, (report_id,), queue=STUCK_QUEUE)


MIX: tuple[tuple[Callable[[random.Random], Call | tuple[Call, ...]], int], ...] = (
    (invoice, 25),
    (inventory, 20),
    (shipment, 15),
    (payment, 15),
    (notification, 10),
    (restock_chain, 8),
    (checkout_chain, 7),
)


class TrafficMix:
    """An endless, seedable stream of publications; see the module docstring for the mix."""

    def __init__(
        self,
        rng: random.Random,
        *,
        clock: Callable[[], float] = time.monotonic,
        hang_first_after: float = HANG_FIRST_AFTER,
        hang_every: float = HANG_EVERY,
        stuck_first_after: float = STUCK_FIRST_AFTER,
        stuck_every: float = STUCK_EVERY,
    ) -> None:
        self.rng = rng
        self.clock = clock
        self.hang_every = hang_every
        self._next_hang = clock() + hang_first_after
        self.stuck_every = stuck_every
        self._next_stuck = clock() + stuck_first_after
        self._builders = [builder for builder, _ in MIX]
        self._weights = [weight for _, weight in MIX]

    def next(self) -> Publication:
        now = self.clock()
        if now >= self._next_hang:
            self._next_hang = now + self.hang_every
            return Publication((hanging_report(self.rng),))
        if now >= self._next_stuck:
            self._next_stuck = now + self.stuck_every
            return Publication((stuck_export(self.rng),))
        built = self.rng.choices(self._builders, weights=self._weights)[0](self.rng)
        return Publication(built if isinstance(built, tuple) else (built,))


# -- demo logins ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    created: bool = False
    password_works: bool = True  # False: an existing user with a password of its own


DEMO_LOGINS = (
    # username, password, role group (dashboard.roles), what to print
    ("admin", "demo-admin", "admin", "superuser"),
    ("operator", "demo-operator", "operator", "staff, role operator: view, retry, cancel"),
    ("viewer", "demo-viewer", "viewer", "staff, role viewer: read only"),
)


def ensure_demo_logins() -> list[DemoLogin]:
    """Create the missing demo users and put each in its role group.

    An existing user keeps its password and flags; only the group membership is added, and
    ``password_works`` says whether the demo password still logs it in.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user_model = get_user_model()
    # The role groups carry the permissions; every migrate keeps them (dashboard.roles).
    groups = {
        g.name: g for g in Group.objects.filter(name__in=[group for _, _, group, _ in DEMO_LOGINS])
    }
    if len(groups) != len(DEMO_LOGINS):
        raise RuntimeError("role groups missing: run `manage.py migrate` first")
    logins = []
    for username, password, group_name, role in DEMO_LOGINS:
        user: Any = user_model.objects.filter(username=username).first()
        created = user is None
        if user is None:
            email = f"{username}@example.com"
            if group_name == "admin":
                user = user_model.objects.create_superuser(username, email, password)
            else:
                user = user_model.objects.create_user(username, email, password, is_staff=True)
        user.groups.add(groups[group_name])
        works = created or user.check_password(password)
        logins.append(DemoLogin(username, password, role, created, works))
    return logins
