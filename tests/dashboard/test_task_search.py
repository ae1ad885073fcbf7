"""The search and the Task name filter against recorded rows, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from dashboard.filters import parse_task_filter
from dashboard.ingest.writer import write_events
from dashboard.models import TaskRun
from dashboard.selectors.tasks import filtered_task_runs, known_task_names, task_names_matching
from tests.conftest import event, new_task_id, story_success

pytestmark = pytest.mark.django_db

T0 = 1_750_000_000.0


def record(*, task_id: str, name: str, input_id: str, ts: float = T0) -> str:
    write_events(
        [event("published", task_id, ts, name=name, queue="default", input_id=input_id,
               published_at=ts)]
    )  # fmt: skip
    return task_id


@pytest.fixture
def shop() -> dict[str, str]:
    return {
        "invoice": record(task_id=str(uuid.uuid4()), name="workers.tasks.send_invoice",
                          input_id="19817"),
        "other_invoice": record(task_id=str(uuid.uuid4()), name="workers.tasks.send_invoice",
                                input_id="29817", ts=T0 + 1),
        "sku": record(task_id=str(uuid.uuid4()), name="workers.tasks.sync_inventory",
                      input_id="SKU-3141", ts=T0 + 2),
        "reminder": record(task_id=str(uuid.uuid4()), name="billing.Send_Invoice_Reminder",
                           input_id="55", ts=T0 + 3),
    }  # fmt: skip


def found(query: str) -> set[str]:
    task_filter = parse_task_filter(QueryDict(query))
    return set(filtered_task_runs(task_filter).values_list("task_id", flat=True))


@pytest.mark.parametrize(
    "query", ["q=order+19817", "q=Order+19817", "q=%2319817", "q=ORDER+%2319817"]
)
def test_search_finds_an_input_id_in_pasted_text(shop, query):
    assert found(query) == {shop["invoice"]}


def test_search_finds_an_input_id_in_another_case(shop):
    assert found("q=sku-3141") == {shop["sku"]}


def test_search_finds_a_task_by_the_first_8_characters_of_its_id(shop):
    assert found(f"q={shop['sku'][:8]}") == {shop["sku"]}


def test_search_finds_a_task_by_an_upper_case_id_prefix(shop):
    assert found(f"q=task+{shop['sku'][:12].upper()}") == {shop["sku"]}


def test_search_does_not_take_7_characters_as_a_task_id_prefix(shop):
    assert found(f"q={shop['sku'][:7]}") == set()


def test_search_finds_a_whole_task_id(shop):
    assert found(f"q={shop['invoice']}") == {shop["invoice"]}


def test_search_keeps_the_input_id_prefix_match(shop):
    assert found("q=SKU") == {shop["sku"]}


def test_search_of_filler_words_alone_finds_nothing(shop):
    assert found("q=order") == set()


def test_name_filter_finds_a_part_of_the_name_in_any_case(shop):
    assert found("name=send_invoice") == {shop["invoice"], shop["other_invoice"], shop["reminder"]}


def test_name_filter_with_the_full_name_finds_only_that_name(shop):
    assert found("name=workers.tasks.sync_inventory") == {shop["sku"]}


def test_name_filter_with_an_unknown_part_finds_nothing(shop):
    assert found("name=charge_card") == set()


def test_known_task_names_are_distinct_and_in_order(shop):
    assert known_task_names() == [
        "billing.Send_Invoice_Reminder",
        "workers.tasks.send_invoice",
        "workers.tasks.sync_inventory",
    ]


def test_known_task_names_stop_at_the_limit(shop):
    assert known_task_names(limit=2) == [
        "billing.Send_Invoice_Reminder",
        "workers.tasks.send_invoice",
    ]


def test_known_task_names_of_an_empty_table_are_none():
    assert known_task_names() == []


def test_task_names_matching_keeps_the_text_first(shop):
    assert task_names_matching("INVOICE") == [
        "INVOICE",
        "billing.Send_Invoice_Reminder",
        "workers.tasks.send_invoice",
    ]


def test_task_id_prefix_search_uses_an_index(shop):
    """The plan of the search query names the task id index, on either database."""
    task_filter = parse_task_filter(QueryDict(f"q={shop['sku'][:8]}"))
    with CaptureQueriesContext(connection) as queries:
        list(filtered_task_runs(task_filter))
    sql = queries.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        else:
            cursor.execute("SET enable_seqscan = off")  # a 4-row table would otherwise be scanned
            cursor.execute("EXPLAIN " + sql)
            plan = " ".join(row[0] for row in cursor.fetchall())
    assert "task_id" in plan and "SCAN dashboard_taskrun " not in plan + " ", plan


@pytest.mark.parametrize(
    ("names", "prefix"),
    [
        (["workers.tasks.send_invoice", "workers.tasks.sync_inventory"], "workers.tasks."),
        (["shop.billing.send", "shop.mail.send"], "shop."),
        (["shop.billing.send", "reports.build"], ""),
        (["send_invoice"], ""),
        ([], ""),
    ],
)
def test_task_name_prefix_is_the_module_path_every_name_shares(names, prefix):
    from django.core.cache import cache

    from dashboard.selectors.tasks import NAME_PREFIX_CACHE_KEY, task_name_prefix

    cache.delete(NAME_PREFIX_CACHE_KEY)
    now = time.time()
    for name in names:
        write_events(story_success(new_task_id(), t0=now))
        TaskRun.objects.filter(name="shop.send_invoice").update(name=name)
    assert task_name_prefix() == prefix
