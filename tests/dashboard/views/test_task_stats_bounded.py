"""/tasks/stats/ shows the busiest task names only, with how many more there are, at a query
count that does not grow with the number of names."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard.models import TaskRun
from dashboard.selectors.tasks import STATS_MAX_NAMES, task_type_stats

pytestmark = pytest.mark.django_db


def forge(names: int) -> None:
    """``names`` task names, name i with i + 1 tasks (the last names are the busiest)."""
    now = timezone.now()
    TaskRun.objects.bulk_create(
        TaskRun(
            task_id=f"t-{n}-{i}",
            name=f"forged.n{n:04d}",
            state="SUCCESS" if i else "FAILURE",
            first_seen_at=now - dt.timedelta(minutes=i),
            updated_at=now,
            runtime=0.5 + i,
            queue_wait=0.01,
        )
        for n in range(names)
        for i in range(1 + n % 7)
    )


def viewer_client() -> Client:
    user = User.objects.create_user("stats-viewer")
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    return client


def test_only_the_busiest_names_are_shown_with_how_many_more():
    forge(STATS_MAX_NAMES + 30)
    stats = task_type_stats(since=timezone.now() - dt.timedelta(hours=1))
    assert len(stats.rows) == STATS_MAX_NAMES
    assert stats.more_names == 30
    counts = [row.count for row in stats.rows]
    assert counts == sorted(counts, reverse=True) and counts[0] == 7
    assert stats.rows[0].runtime.p50 is not None
    page = viewer_client().get(reverse("task-stats"), {"window": "1h"})
    assert page.status_code == 200
    assert "And 30 more task names" in page.content.decode()


def test_the_query_count_does_not_grow_with_the_names(django_assert_max_num_queries):
    forge(STATS_MAX_NAMES * 4)
    since = timezone.now() - dt.timedelta(hours=1)
    # two grouped queries, then at most two sample queries per shown name (SQLite) or one in all
    with django_assert_max_num_queries(2 + 2 * STATS_MAX_NAMES):
        stats = task_type_stats(since=since)
    assert stats.more_names == STATS_MAX_NAMES * 3


def test_a_named_search_shows_that_name_alone():
    forge(STATS_MAX_NAMES + 5)
    stats = task_type_stats(since=timezone.now() - dt.timedelta(hours=1), name="forged.n0003")
    assert [row.name for row in stats.rows] == ["forged.n0003"] and stats.more_names == 0
