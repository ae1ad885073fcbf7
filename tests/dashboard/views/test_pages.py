from __future__ import annotations

import pytest
from django.urls import reverse

from dashboard.pagination import Cursor
from tests.dashboard.views.conftest import HOSTILE
from tests.overview_figures import measure_overview

pytestmark = pytest.mark.django_db

PAGES = [
    reverse("overview"),
    reverse("tasks"),
    reverse("task-stats"),
    reverse("queues"),
    reverse("task-detail", args=["any-id"]),
    reverse("workers"),
]


@pytest.mark.parametrize("url", PAGES)
def test_pages_require_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("url", PAGES)
def test_pages_refuse_a_user_without_the_view_permission(client, django_user_model, url):
    client.force_login(django_user_model.objects.create_user("nobody"))
    assert client.get(url).status_code == 403


@pytest.mark.parametrize("url", PAGES[:4])
def test_htmx_partials_require_login_too(client, url):
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 302


def test_overview_full_page_and_partial(viewer_client, tasks, redis_client):
    measure_overview(client=redis_client)
    full = viewer_client.get(reverse("overview"))
    assert full.status_code == 200
    body = full.content.decode()
    assert "<html" in body and "Recent failures" in body
    assert 'hx-trigger="every 5s, tasktrail:visible from:body"' in body
    partial = viewer_client.get(reverse("overview"), headers={"HX-Request": "true"})
    assert "<html" not in partial.content.decode()
    assert "payments" in partial.content.decode()
    assert partial["Vary"].count("HX-Request") == 1


def test_overview_escapes_error_messages(viewer_client, tasks):
    body = viewer_client.get(reverse("overview")).content.decode()
    assert HOSTILE not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_overview_empty_state(viewer_client, redis_client):
    measure_overview(client=redis_client)
    assert "No tasks recorded yet" in viewer_client.get(reverse("overview")).content.decode()


def test_task_list_shows_rows_newest_first(viewer_client, tasks):
    body = viewer_client.get(reverse("tasks")).content.decode()
    assert body.index(tasks["child"].task_id) < body.index(tasks["ok"].task_id)
    assert HOSTILE not in body and "w<script>@h" not in body


@pytest.mark.parametrize(
    ("query", "present", "absent"),
    [
        ({"state": "FAILURE"}, ["bad"], ["ok", "retrying"]),
        ({"state": "RETRY,SUCCESS"}, ["retrying", "ok"], ["bad"]),
        ({"name": "shop.charge"}, ["bad"], ["ok"]),
        ({"queue": "inventory"}, ["parent"], ["child"]),
        ({"worker": "w1"}, ["retrying"], ["bad"]),
        ({"q": "SHP-1"}, ["retrying"], ["ok"]),
        ({"q": "SKU"}, ["parent"], ["child"]),  # input-id prefix
        ({"window": "15m"}, ["child"], []),
    ],
)
def test_task_list_filters(viewer_client, tasks, query, present, absent):
    # the list partial: a full page would open a search's single match instead
    body = viewer_client.get(
        reverse("tasks"), query, headers={"HX-Request": "true"}
    ).content.decode()
    for name in present:
        assert tasks[name].task_id in body, name
    for name in absent:
        assert tasks[name].task_id not in body, name


def test_search_by_task_id(viewer_client, tasks):
    response = viewer_client.get(
        reverse("tasks"), {"q": tasks["ok"].task_id}, headers={"HX-Request": "true"}
    )
    assert [row.task_id for row in response.context["page"].rows] == [tasks["ok"].task_id]


@pytest.mark.parametrize("q", ["SHP-1", "order SHP-1", "#shp-1"])
def test_search_with_one_match_opens_the_task(viewer_client, tasks, q):
    response = viewer_client.get(reverse("tasks"), {"q": q})
    assert response.status_code == 302
    assert response["Location"] == reverse("task-detail", args=[tasks["retrying"].task_id])


def test_search_with_one_match_in_the_live_poll_stays_a_list(viewer_client, tasks):
    response = viewer_client.get(reverse("tasks"), {"q": "SHP-1"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert [row.task_id for row in response.context["page"].rows] == [tasks["retrying"].task_id]


def test_search_with_two_matches_stays_a_list(viewer_client, tasks):
    from tests.conftest import event, new_task_id
    from tests.dashboard.views.conftest import record

    record([event("published", new_task_id(), 1.75e9, name="shop.ship", input_id="SHP-12",
                  published_at=1.75e9)])  # fmt: skip
    response = viewer_client.get(reverse("tasks"), {"q": "SHP-1"})
    assert response.status_code == 200
    assert len(response.context["page"].rows) == 2


def test_filter_without_a_search_with_one_match_stays_a_list(viewer_client, tasks):
    response = viewer_client.get(reverse("tasks"), {"state": "FAILURE"})
    assert response.status_code == 200
    assert [row.task_id for row in response.context["page"].rows] == [tasks["bad"].task_id]


def test_search_by_trace_id_any_case(viewer_client, tasks):
    from tests.conftest import event, new_task_id
    from tests.dashboard.views.conftest import record

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = new_task_id()
    record([event("published", traced, 1.75e9, traceparent=f"00-{trace}-00f067aa0ba902b7-01",
                  published_at=1.75e9)])  # fmt: skip
    response = viewer_client.get(reverse("tasks"), {"q": trace.upper()})
    assert response["Location"] == reverse("task-detail", args=[traced])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"state": "EXPLODED"}, "Unknown state"),
        ({"since": "yesterday-ish"}, "must be a date"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "after"),
        ({"window": "3 weeks"}, "Unknown window"),
        ({"cursor": "!!!garbage!!!"}, "page link is not valid"),
        ({"cursor": "MjAyNi0wMS0wMXwtNQ"}, "page link is not valid"),
        ({"q": "x" * 300}, "longer than"),
    ],
)
def test_bad_query_parameters_give_a_clear_400(viewer_client, query, message):
    response = viewer_client.get(reverse("tasks"), query)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_keyset_pagination_walks_every_row_once(viewer_client, tasks, monkeypatch):
    from dashboard.selectors import tasks as task_selectors

    monkeypatch.setattr(task_selectors, "DEFAULT_PAGE_SIZE", 2)
    seen: list[str] = []
    url = reverse("tasks")
    params: dict[str, str] = {}
    for _ in range(10):
        response = viewer_client.get(url, params, headers={"HX-Request": "true"})
        page = response.context["page"]
        seen += [row.task_id for row in page.rows]
        if page.next_cursor is None:
            break
        params = {"cursor": page.next_cursor.encode()}
    assert sorted(seen) == sorted(t.task_id for t in tasks.values())
    assert len(seen) == len(set(seen))


def test_new_rows_partial_returns_only_newer_rows_and_moves_the_poller(viewer_client, tasks):
    oldest = tasks["ok"]
    newer = Cursor(oldest.first_seen_at, oldest.id).encode()
    response = viewer_client.get(reverse("tasks"), {"newer": newer}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert oldest.task_id not in body
    assert tasks["child"].task_id in body
    assert 'hx-swap-oob="true"' in body


def test_new_rows_partial_with_nothing_new_is_204(viewer_client, tasks):
    newest = tasks["child"]
    cursor = Cursor(newest.first_seen_at, newest.id).encode()
    response = viewer_client.get(
        reverse("tasks"), {"newer": cursor}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 204


def test_list_partial_has_no_page_chrome(viewer_client, tasks):
    body = viewer_client.get(reverse("tasks"), headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in body and 'id="task-rows"' in body


def test_empty_list_says_what_was_searched(viewer_client, tasks):
    body = viewer_client.get(reverse("tasks"), {"q": "no-such-order"}).content.decode()
    assert "No task matches the search “no-such-order”." in body
    assert "matches matching" not in body


def test_empty_list_names_every_condition_once(viewer_client, tasks):
    body = viewer_client.get(
        reverse("tasks"), {"q": "order 404", "state": "FAILURE", "name": "charge"}
    ).content.decode()
    assert (
        "No task matches state FAILURE, a name containing “charge”, the search “order 404”."
    ) in body


def test_empty_list_without_a_filter_says_nothing_is_recorded(viewer_client):
    body = viewer_client.get(reverse("tasks")).content.decode()
    assert "No tasks recorded yet." in body and "No task matches" not in body


def test_task_list_says_what_it_shows(viewer_client, tasks):
    body = viewer_client.get(reverse("tasks"), {"state": "FAILURE"}).content.decode()
    assert "Showing tasks matching state FAILURE." in body


def test_state_filter_is_a_checkbox_per_state_with_the_chosen_ones_checked(viewer_client, tasks):
    body = viewer_client.get(reverse("tasks"), {"state": ["FAILURE", "RETRY"]}).content.decode()
    assert 'type="checkbox" name="state" value="FAILURE" checked' in body
    assert 'type="checkbox" name="state" value="RETRY" checked' in body
    assert 'type="checkbox" name="state" value="LOST">' in body  # the last option is there too
    assert "<select" not in body.split('class="state-pick"')[1].split("</details>")[0]


def test_task_name_field_offers_the_recorded_names(viewer_client, tasks):
    body = viewer_client.get(reverse("tasks")).content.decode()
    assert 'list="f-name-known"' in body
    assert '<option value="shop.charge"></option>' in body
    assert '<option value="shop.send_invoice"></option>' in body


def test_detail_shows_attempts_error_traceback_and_redacted_args(viewer_client, tasks):
    bad = tasks["bad"]
    body = viewer_client.get(reverse("task-detail", args=[bad.task_id])).content.decode()
    assert "Attempt 1" in body and "Traceback" in body
    assert HOSTILE not in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "hunter2" not in body and "tok_secret_1" not in body and "PAY-7" in body
    assert "PAY-&lt;b&gt;7&lt;/b&gt;" in body
    assert "hx-trigger" not in body.split('id="story"')[1].split(">")[0]  # finished: no polling


def test_detail_of_unfinished_task_polls_and_partial_stops_when_finished(viewer_client, tasks):
    live = viewer_client.get(reverse("task-detail", args=[tasks["retrying"].task_id]))
    assert "every 2s" in live.content.decode()
    finished = viewer_client.get(
        reverse("task-detail", args=[tasks["ok"].task_id]), headers={"HX-Request": "true"}
    )
    assert finished.status_code == 286  # htmx: stop polling
    assert "<html" not in finished.content.decode()


def test_detail_shows_the_workflow(viewer_client, tasks):
    body = viewer_client.get(
        reverse("task-detail", args=[tasks["parent"].task_id])
    ).content.decode()
    assert tasks["child"].task_id in body and "Child:" in body
    body = viewer_client.get(reverse("task-detail", args=[tasks["child"].task_id])).content.decode()
    assert "Parent:" in body and tasks["parent"].task_id in body


def test_detail_unknown_task_is_404(viewer_client):
    assert viewer_client.get(reverse("task-detail", args=["nope"])).status_code == 404


def test_stats_page_counts_and_failure_rate(viewer_client, tasks):
    response = viewer_client.get(reverse("task-stats"), {"window": "24h"})
    stats = {s.name: s for s in response.context["stats"]}
    assert stats["shop.charge"].count == 1 and stats["shop.charge"].failure_rate == 1.0
    assert stats["shop.send_invoice"].runtime.p50 == 2.0
    assert "100.0%" in response.content.decode()


def test_stats_bad_window_is_400(viewer_client):
    assert viewer_client.get(reverse("task-stats"), {"window": "forever"}).status_code == 400


def test_queues_page_reads_the_monitors_snapshot_not_the_broker(viewer_client, redis_client, tasks):
    import json

    from tests.dashboard.views.snapshots import write_snapshot

    redis_client.lpush("default", json.dumps({"headers": {"tasktrail_published": 1.0}}))
    write_snapshot(redis_client, {"default": {"state": "ok", "depth": 3, "oldest_age": 42.0}})
    response = viewer_client.get(reverse("queues"), headers={"HX-Request": "true"})
    queues = {q.name: q for q in response.context["overview"].queues}
    assert list(queues) == ["default"]
    assert queues["default"].depth == 3
    assert queues["default"].oldest_age == 42.0


def test_login_page_has_labels(client, db):
    body = client.get(reverse("login")).content.decode()
    assert '<label for="id_username">' in body and '<label for="id_password">' in body
