"""Signed stream entries: keys from TASKTRAIL_EVENT_KEY, signing, verifying, rotating."""

from __future__ import annotations

import pytest

from tasktrail.signing import SigningConfigError, as_sent, parse_keys, sign, verify

OLD = "old:" + "o" * 24
NEW = "new:" + "n" * 24
ENTRY = {b"e": b"\x90", b"h": b"heartbeat", b"c": b"catalog"}


def test_keys_are_parsed_the_first_one_signing():
    keys = parse_keys(f" {NEW} , {OLD},")
    assert [k.id for k in keys] == ["new", "old"]
    assert keys[0].secret == b"n" * 24
    assert parse_keys("") == () and parse_keys(None) == ()
    assert "n" * 24 not in repr(keys)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nocolon", "is not id:secret"),
        ("bad id:" + "x" * 20, "is not id:secret"),
        ("k:short-secret", "shorter than 16"),
        (f"{OLD},{OLD}", "given twice"),
    ],
)
def test_an_unusable_key_setting_says_why_without_the_secret(text, why):
    with pytest.raises(SigningConfigError, match=why) as caught:
        parse_keys(text)
    assert "short-secret" not in str(caught.value) and "o" * 20 not in str(caught.value)


def test_a_signed_entry_verifies_and_any_change_is_caught():
    keys = parse_keys(NEW)
    fields = sign(ENTRY, keys[0], "tasktrail:events")
    assert verify(fields, keys, "tasktrail:events") is None
    for name in ENTRY:  # every field is covered, whatever it holds
        changed = {**fields, name: fields[name] + b"x"}
        assert verify(changed, keys, "tasktrail:events") == "wrong signature for key id 'new'"
    added = {**fields, b"z": b"added"}
    assert verify(added, keys, "tasktrail:events") == "wrong signature for key id 'new'"
    removed = {k: v for k, v in fields.items() if k != b"h"}
    assert verify(removed, keys, "tasktrail:events") == "wrong signature for key id 'new'"
    assert verify(fields, keys, "other:stream") == "wrong signature for key id 'new'"


def test_unsigned_forged_and_other_key_entries_are_refused():
    keys = parse_keys(NEW)
    assert "unsigned entry" in (verify(ENTRY, keys, "s") or "")
    forged = {**ENTRY, b"s": b"new:" + b"0" * 64}
    assert verify(forged, keys, "s") == "wrong signature for key id 'new'"
    other = sign(ENTRY, parse_keys("new:" + "x" * 24)[0], "s")  # same id, another secret
    assert verify(other, keys, "s") == "wrong signature for key id 'new'"
    unknown = sign(ENTRY, parse_keys(OLD)[0], "s")
    assert verify(unknown, keys, "s") == "signed with key id 'old', which the monitor does not have"
    assert verify({**ENTRY, b"s": b"\xff" * 500}, keys, "s") == "malformed signature field"


def test_rotation_both_keys_verify_while_the_new_one_signs():
    monitor_keys = parse_keys(f"{NEW},{OLD}")
    by_old = sign(ENTRY, parse_keys(OLD)[0], "s")  # a worker not yet moved to the new key
    by_new = sign(ENTRY, monitor_keys[0], "s")
    assert verify(by_old, monitor_keys, "s") is None
    assert verify(by_new, monitor_keys, "s") is None
    assert verify(by_old, parse_keys(NEW), "s") is not None  # the old key removed at the end


def test_fields_are_signed_as_redis_sends_them():
    key = parse_keys(NEW)[0]
    fields = sign({"h": "text é", b"n": 5, "f": 1.5}, key, "s")
    assert fields == {**as_sent({"h": "text é", b"n": 5, "f": 1.5}), b"s": fields[b"s"]}
    assert as_sent({"n": 5, "f": 1.5}) == {b"n": b"5", b"f": b"1.5"}
    assert verify(fields, (key,), "s") is None


def test_the_client_reads_its_keys_from_install_then_the_environment():
    from celery import Celery

    from tasktrail.config import ConfigError, resolve

    app = Celery("shop", broker="redis://127.0.0.1:6379/0", set_as_current=False)
    assert resolve(app, environ={}).event_keys == ()
    config = resolve(app, environ={"TASKTRAIL_EVENT_KEY": f"{NEW},{OLD}"})
    assert [k.id for k in config.event_keys] == ["new", "old"]
    assert "n" * 24 not in repr(config) and "['new', 'old']" in repr(config)
    assert [k.id for k in resolve(app, {"event_key": OLD}, environ={}).event_keys] == ["old"]
    with pytest.raises(ConfigError, match="TASKTRAIL_EVENT_KEY") as caught:
        resolve(app, environ={"TASKTRAIL_EVENT_KEY": "k:tooshort"})
    assert "tooshort" not in str(caught.value)
