"""The retention lease: one holder at a time, across threads and processes."""

from __future__ import annotations

import sys
import textwrap
import threading
import time

import pytest
from django.conf import settings

from dashboard import redis_keys
from dashboard.retention.lease import Lease
from dashboard.retention.policy import RetentionPolicy
from dashboard.retention.runner import LeaseHeld, lease_for, run_pass
from tests.dashboard.retention.rows import NOW, task
from tests.processes import ROOT, spawn

KEY = "tasktrail-test:retention:lease"


def test_one_holder_renew_and_release_only_by_the_holder(redis_client):
    redis_client.delete(KEY)
    first, second = Lease(redis_client, KEY, 30), Lease(redis_client, KEY, 30)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder() == first.token
    assert first.renew()
    assert not second.renew()  # never held
    second.release()  # not the holder: the key stays
    assert redis_client.get(KEY) == first.token.encode()
    first.release()
    assert redis_client.get(KEY) is None
    assert second.acquire()
    second.release()


def test_an_expired_holder_neither_renews_nor_releases_the_next_one(redis_client):
    redis_client.delete(KEY)
    old = Lease(redis_client, KEY, 0.05)
    assert old.acquire()
    deadline = time.monotonic() + 5
    while redis_client.exists(KEY) and time.monotonic() < deadline:
        time.sleep(0.01)
    new = Lease(redis_client, KEY, 30)
    assert new.acquire()
    assert not old.renew()
    old.held = True  # as if it still believed it held it
    old.release()
    assert redis_client.get(KEY) == new.token.encode()
    new.release()


CONTENDER = textwrap.dedent(
    """
    import sys, time, redis
    from dashboard.retention.lease import Lease
    client = redis.Redis.from_url(sys.argv[1])
    key, inside, overlaps = sys.argv[2], sys.argv[2] + ":inside", sys.argv[2] + ":overlaps"
    held = 0
    end = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        lease = Lease(client, key, 5)
        if lease.acquire():
            held += 1
            if client.incr(inside) != 1:
                client.incr(overlaps)
            time.sleep(0.005)
            client.decr(inside)
            lease.release()
        time.sleep(0.001)
    print("held", held, flush=True)
    """
)


def test_two_processes_never_hold_the_lease_at_once(redis_client):
    redis_client.delete(KEY, KEY + ":inside", KEY + ":overlaps")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    children = [
        spawn([sys.executable, "-c", CONTENDER, settings.REDIS_URL, KEY, "2"], env)
        for _ in range(3)
    ]
    try:
        lines = [child.output.wait_for("held", 60) for child in children]
    finally:
        for child in children:
            child.stop()
    held = [int(line.split()[1]) for line in lines]
    assert sum(held) > 3 and all(h > 0 for h in held), lines  # they did contend
    assert redis_client.get(KEY + ":overlaps") is None
    redis_client.delete(KEY, KEY + ":inside", KEY + ":overlaps")


@pytest.mark.django_db(transaction=True)
def test_a_second_pass_is_refused_while_one_runs(redis_client):
    for days in (20, 21, 22):
        task("SUCCESS", finished=days)
    inside, go_on = threading.Event(), threading.Event()
    reports = []

    def hold() -> bool:  # asked before each batch, lease held: wait there, then go on
        inside.set()
        go_on.wait(30)
        return False

    policy = RetentionPolicy()
    thread = threading.Thread(
        target=lambda: reports.append(run_pass(redis_client, policy=policy, now=NOW, stopping=hold))
    )
    thread.start()
    try:
        assert inside.wait(30)
        with pytest.raises(LeaseHeld) as refused:
            run_pass(redis_client, policy=policy, now=NOW)
        assert lease_for(redis_client).holder() in str(refused.value)
    finally:
        go_on.set()
        thread.join(30)
    assert redis_client.get(redis_keys.prune_lease(settings.TASKTRAIL_STREAM)) is None  # released
    assert reports[0].removed["TaskRun"] == 3
    assert run_pass(redis_client, policy=policy, now=NOW).removed["TaskRun"] == 0
