from __future__ import annotations

import json

import pytest

from dashboard.redaction import MASK, redact, redacted_call

KEYS = ["password", "token", "card", "authorization"]


def test_nested_keys_are_masked_case_insensitively():
    value = {
        "user": "ann",
        "Password": "p",
        "headers": {"Authorization": "Bearer x"},
        "items": [{"card_number": "4242"}],
    }
    assert redact(value, KEYS) == {
        "user": "ann",
        "Password": MASK,
        "headers": {"Authorization": MASK},
        "items": [{"card_number": MASK}],
    }


def test_positional_args_are_masked_by_parameter_name():
    shown = redacted_call(
        '["PAY-1", 500, "tok_live"]',
        '{"card_token": "x", "note": "hi"}',
        "payment_id,amount,api_token",
        KEYS,
    )
    assert json.loads(shown.args) == ["PAY-1", 500, MASK]
    assert json.loads(shown.kwargs) == {"card_token": MASK, "note": "hi"}


def test_missing_args_show_nothing():
    assert redacted_call(None, None, None, KEYS).args is None


@pytest.mark.parametrize("bad", ["{not json", "[1,"])
def test_unreadable_json_never_raises(bad):
    assert redacted_call(bad, bad, "", KEYS).args == "(unreadable)"
