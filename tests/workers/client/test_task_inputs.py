from __future__ import annotations

import json

import pytest
from celery import Celery

from tasktrail.task_inputs import extract_input_id, keep_args, resolve_rule

app = Celery("inputs-test", set_as_current=False)


@app.task(tasktrail_input_id="order_id")
def invoice(template, order_id, email=None):
    pass


@app.task(bind=True, tasktrail_input_id="payment_id")
def charge(self, payment_id, amount):
    pass


@app.task
def notify(message, customer_id):
    pass


@app.task
def plain(sku, qty):
    pass


@app.task(tasktrail_input_id=lambda args, kwargs: kwargs["payload"]["order"]["id"])
def nested(payload):
    pass


@app.task(tasktrail_input_id=False)
def secret(order_id):
    pass


@app.task
def pay(card_token, amount):
    pass


@app.task
def rotate(api_key_id, tenant_id):
    pass


@app.task
def refund(card_token, **options):
    pass


@app.task(tasktrail_input_id="card_token")
def declared_secret(card_token):
    pass


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "expected"),
    [
        (invoice, ("t1", 1234), {}, "1234"),
        (invoice, ("t1",), {"order_id": 99}, "99"),
        (charge, ("PAY-1", 100), {}, "PAY-1"),
        (notify, ("hello", 42), {}, "42"),  # default: first *_id parameter
        (plain, ("SKU-1", 3), {}, "SKU-1"),  # default: first positional str/int
        (plain, (), {"sku": "SKU-2", "qty": 1}, None),  # keyword only, no *_id: nothing
        (nested, ({"order": {"id": 7}},), {}, None),  # callable raising KeyError -> None
        (nested, (), {"payload": {"order": {"id": 7}}}, "7"),
        (secret, (5,), {}, None),
        (invoice, ("t1", {"not": "an id"}), {}, None),
        (invoice, ("t1", True), {}, None),
        (pay, ("tok_live_1", 10), {}, None),  # a secret first parameter is never the default
        (refund, ("tok_live_3",), {"order_id": 77}, "77"),  # a keyword *_id still counts
        (rotate, ("key-1", "T-9"), {}, "T-9"),  # the first *_id that is not a secret name
        (declared_secret, ("tok_live_2",), {}, "tok_live_2"),  # declared: what was asked for
    ],
)
def test_input_id(task, args, kwargs, expected):
    assert extract_input_id(resolve_rule(task), args, kwargs) == expected


def test_unregistered_task_uses_keyword_default():
    rule = resolve_rule(None)
    assert extract_input_id(rule, (), {"order_id": 5, "x": 1}) == "5"
    assert extract_input_id(rule, ("ABC",), {}) == "ABC"


def test_unregistered_task_default_skips_secret_keywords():
    rule = resolve_rule(None)
    assert extract_input_id(rule, (), {"card_id": "4242", "order_id": 5}) == "5"


def test_secret_keys_come_from_the_caller():
    assert extract_input_id(resolve_rule(notify, ("customer",)), ("hi", 42), {}) == "hi"


def test_bound_task_arg_names_leave_out_self():
    assert resolve_rule(charge).arg_names == ("payment_id", "amount")


def test_keep_args_as_json():
    kept = keep_args((1, "a"), {"k": [1, 2]}, 1024)
    assert (json.loads(kept.args), json.loads(kept.kwargs), kept.dropped) == (
        [1, "a"],
        {"k": [1, 2]},
        None,
    )


def test_keep_args_over_cap_says_so():
    kept = keep_args(("x" * 2000,), {}, 1024)
    assert kept.args is None and kept.kwargs is None
    assert "too large" in kept.dropped


def test_keep_args_not_json():
    kept = keep_args((object(),), {}, 1024)
    assert kept.args is None
    assert "not JSON" in kept.dropped
