"""The task page's result, read from a real Redis result backend (a db of its own on the test
Redis) written by real Celery backends and a real in-process worker, and from django-celery-results
in the test database."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery
from celery import _state as celery_state
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django_celery_results.models import TaskResult

from dashboard.ingest.writer import write_events
from dashboard.redaction import MASK
from dashboard.selectors.results import (
    MAX_SHOWN_CHARS,
    NOT_CONFIGURED,
    PICKLE_REFUSED,
    Outcome,
    shown_url,
    task_result,
)
from tests.conftest import new_task_id, story_success

pytestmark = pytest.mark.django_db

RESULTS_DB = 13  # the result backend's db on the test Redis, apart from the stream's


def results_url() -> str:
    parts = urlsplit(django_settings.REDIS_URL)
    return urlunsplit(parts._replace(path=f"/{RESULTS_DB}"))


def shop_app(serializer: str = "json") -> Celery:
    """The shop's side: a Celery app writing results to the Redis result backend."""
    # no Django fixup: the in-process worker would close the test's database connection
    app = Celery("shop", set_as_current=False, broker="memory://", backend=results_url(), fixups=[])
    app.conf.update(
        result_serializer=serializer,
        accept_content=[serializer],
        result_accept_content=[serializer],
    )
    return app


@pytest.fixture
def result_redis(settings: Any) -> Iterator[redis.Redis]:
    settings.TASKTRAIL_RESULT_BACKEND = results_url()
    client = redis.Redis.from_url(results_url())
    yield client
    keys = list(client.scan_iter(match="celery-task-meta-*", count=1000))  # a db of its own
    if keys:
        client.delete(*keys)
    client.close()


def recorded_task() -> str:
    task_id = new_task_id()
    write_events(story_success(task_id))
    return task_id


class Marked:
    """Unpickling this object appends to UNPICKLED: a reader that unpickles is caught."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (UNPICKLED.append, ("unpickled",))


UNPICKLED: list[str] = []


def test_a_json_result_is_shown_with_its_state_and_time(result_redis):
    task_id = recorded_task()
    shop_app().backend.store_result(task_id, {"total": 3, "lines": ["a", "b"]}, "SUCCESS")
    result = task_result(task_id=task_id)
    assert result is not None
    assert result.outcome == Outcome.SHOWN, result.message
    assert result.status == "SUCCESS"
    assert result.date_done is not None and result.date_done.tzinfo is not None
    assert '"total": 3' in (result.text or "")
    assert result.source == results_url()


def test_a_result_stored_by_a_real_worker_is_shown(result_redis):
    app = shop_app()

    @app.task(name="shop.invoice_total")
    def invoice_total(order: int) -> dict[str, Any]:
        return {"order": order, "total": "12.50", "card_token": "tok_live_123"}

    task_id = new_task_id()
    write_events(story_success(task_id))
    # The embedded worker makes its app this process's current and default one: later tests'
    # shared tasks would publish to its memory:// broker. Put the previous one back.
    previous = celery_state.get_current_app()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            invoice_total.apply_async((19817,), task_id=task_id).get(timeout=10)
    finally:
        previous.set_current()
        previous.set_default()
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.SHOWN, result
    assert result.status == "SUCCESS"
    assert '"order": 19817' in (result.text or "")
    assert "tok_live_123" not in (result.text or "")  # card_token is a secret-looking key


def test_a_result_stored_under_the_shops_key_prefix_is_shown(result_redis, settings):
    options = {"global_keyprefix": "shop:"}
    app = shop_app()
    app.conf.result_backend_transport_options = options
    task_id = recorded_task()
    app.backend.store_result(task_id, {"total": 7}, "SUCCESS")
    key = f"shop:celery-task-meta-{task_id}"
    try:
        assert result_redis.exists(key)  # where the shop's prefix put it
        missed = task_result(task_id=task_id)
        assert missed is not None and missed.outcome == Outcome.NOT_STORED
        settings.TASKTRAIL_RESULT_BACKEND_TRANSPORT_OPTIONS = options
        result = task_result(task_id=task_id)
        assert result is not None
        assert result.outcome == Outcome.SHOWN, result.message
        assert result.status == "SUCCESS" and '"total": 7' in (result.text or "")
    finally:
        result_redis.delete(key)


def test_secret_looking_keys_are_redacted_at_any_depth(result_redis):
    task_id = recorded_task()
    value = {"user": "ann", "password": "hunter2", "nested": [{"api_key": "k-123", "n": 1}]}
    shop_app().backend.store_result(task_id, value, "SUCCESS")
    result = task_result(task_id=task_id)
    assert result is not None and result.text is not None
    assert "hunter2" not in result.text and "k-123" not in result.text
    assert result.text.count(MASK) == 2
    assert '"user": "ann"' in result.text


def test_a_pickled_result_is_refused_and_never_unpickled(result_redis):
    task_id = recorded_task()
    shop_app("pickle").backend.store_result(task_id, Marked(), "SUCCESS")
    assert result_redis.get(f"celery-task-meta-{task_id}")[:1] == b"\x80"
    result = task_result(task_id=task_id)
    assert result is not None
    assert result.outcome == Outcome.REFUSED
    assert result.message == PICKLE_REFUSED
    assert "pickle serializer, which tasktrail does not read" in result.message
    assert UNPICKLED == []


def test_a_msgpack_result_is_shown(result_redis):
    task_id = recorded_task()
    shop_app("msgpack").backend.store_result(task_id, {"rows": 2}, "SUCCESS")
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.SHOWN, result.message
    assert '"rows": 2' in (result.text or "")


def test_a_failure_is_shown_as_data_without_importing_its_exception(result_redis):
    task_id = recorded_task()
    shop_app().backend.store_result(task_id, ValueError("card declined"), "FAILURE")
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.SHOWN
    assert result.status == "FAILURE"
    assert '"exc_type": "ValueError"' in (result.text or "")
    assert "card declined" in (result.text or "")


def test_a_result_not_stored_says_so(result_redis):
    result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.NOT_STORED
    assert "No result stored" in result.message


def test_an_unreadable_payload_is_refused_with_a_reason(result_redis):
    task_id = recorded_task()
    result_redis.set(f"celery-task-meta-{task_id}", b"<html>not a result</html>")
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.REFUSED
    assert "neither JSON nor msgpack" in result.message


def test_a_large_result_is_truncated(result_redis):
    task_id = recorded_task()
    shop_app().backend.store_result(task_id, {"blob": "x" * (3 * MAX_SHOWN_CHARS)}, "SUCCESS")
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.SHOWN
    assert result.truncated and len(result.text or "") == MAX_SHOWN_CHARS
    assert result.size > 3 * MAX_SHOWN_CHARS


def test_a_result_too_large_to_read_is_not_fetched(result_redis):
    task_id = recorded_task()
    result_redis.set(f"celery-task-meta-{task_id}", b"{" + b" " * (5 * 1024 * 1024) + b"}")
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.REFUSED
    assert "more than tasktrail reads" in result.message


def test_an_unreachable_backend_gives_a_clear_message_without_its_password(settings):
    settings.TASKTRAIL_RESULT_BACKEND = "redis://:s3cret-pw@127.0.0.1:1/0"
    result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.UNREACHABLE
    assert result.message.startswith("result backend unreachable: ")
    assert "s3cret-pw" not in result.message + result.source
    assert result.source == "redis://:**@127.0.0.1:1/0"


def test_a_backend_that_never_answers_is_unreachable_not_a_stuck_page(settings):
    # A port that accepts connections and never replies: the read ends by its timeouts.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings.TASKTRAIL_RESULT_BACKEND = f"redis://127.0.0.1:{port}/0"
        result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.UNREACHABLE
    assert result.message.startswith("result backend unreachable: ")
    assert "imeout" in result.message or "no answer within" in result.message


def test_the_rpc_backend_is_explained(settings):
    settings.TASKTRAIL_RESULT_BACKEND = "rpc://guest:pw@rabbit//"
    result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.UNSUPPORTED
    assert "after the fact" in result.message
    assert "pw@" not in result.source


def test_a_backend_whose_library_is_missing_says_so(settings):
    settings.TASKTRAIL_RESULT_BACKEND = "db+postgresql://shop:s3cret-pw@db.internal/shop"
    result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.UNSUPPORTED
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        assert "needs the Python package sqlalchemy" in result.message
    else:  # installed: the database backend is refused for its pickle fallback
        assert "db+" in result.message
    assert "s3cret-pw" not in result.message + result.source


def test_an_unknown_backend_is_a_clear_message(settings):
    settings.TASKTRAIL_RESULT_BACKEND = "nosuchbackend://host/"
    result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.UNSUPPORTED
    assert "no result backend named 'nosuchbackend'" in result.message


# -- django-celery-results ---------------------------------------------------------------------


def django_db_app() -> Celery:
    app = Celery("shop-db", set_as_current=False, broker="memory://", backend="django-db")
    app.conf.update(result_serializer="json", accept_content=["json"])
    return app


def test_django_celery_results_is_read_when_no_backend_is_set(settings):
    settings.TASKTRAIL_RESULT_BACKEND = ""
    task_id = recorded_task()
    django_db_app().backend.store_result(task_id, {"sent": True, "token": "t-1"}, "SUCCESS")
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.SHOWN, result.message
    assert result.source == "django-celery-results"
    assert result.status == "SUCCESS" and result.date_done is not None
    assert '"sent": true' in (result.text or "")
    assert "t-1" not in (result.text or "")


def test_django_celery_results_without_a_row_names_the_setting(settings):
    settings.TASKTRAIL_RESULT_BACKEND = ""
    result = task_result(task_id=recorded_task())
    assert result is not None and result.outcome == Outcome.NOT_STORED
    assert "TASKTRAIL_RESULT_BACKEND" in result.message


def test_django_celery_results_pickle_is_refused_with_its_state(settings):
    settings.TASKTRAIL_RESULT_BACKEND = ""
    task_id = recorded_task()
    TaskResult.objects.create(
        task_id=task_id,
        status="SUCCESS",
        content_type="application/x-python-serialize",
        content_encoding="binary",
        result="gASVAAAAAAAAAAAu",
    )
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.REFUSED
    assert result.message == PICKLE_REFUSED and result.status == "SUCCESS"


def test_without_a_backend_or_django_celery_results_says_how_to_configure(settings):
    settings.TASKTRAIL_RESULT_BACKEND = ""
    task_id = recorded_task()
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_celery_results"]
    result = task_result(task_id=task_id)
    assert result is not None and result.outcome == Outcome.NOT_CONFIGURED
    assert result.message == NOT_CONFIGURED
    assert "TASKTRAIL_RESULT_BACKEND" in result.message


def test_an_unrecorded_task_has_no_result(result_redis):
    assert task_result(task_id=f"t-unknown-{uuid.uuid4()}") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/1", "redis://:**@h:6379/1"),
        ("rediss://user:pw@h/0", "rediss://user:**@h/0"),
        (
            "sentinel://:pw@a:26379;sentinel://:pw@b:26379",
            "sentinel://:**@a:26379/;sentinel://:**@b:26379/",
        ),
        ("redis://h:6379/1", "redis://h:6379/1"),
    ],
)
def test_backend_urls_are_shown_without_passwords(url, shown):
    assert shown_url(url) == shown
