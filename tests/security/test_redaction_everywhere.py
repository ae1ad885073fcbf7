"""Secrets in nested Celery signatures (map, starmap, chunks, a chord callback), in error messages,
tracebacks and results, and in django-celery-results' rows appear in no page, API answer or admin
page; arguments nested far too deep show a marker, never a 500."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import GroupResult, TaskResult

from dashboard.models import RegisteredTask, TaskAttempt, TaskRun
from dashboard.redaction import MASK, TOO_DEEP, redact, redacted_call, redacted_repr, scrub_text
from tasktrail.events import make_event
from tests.security.conftest import client_for, ingest

pytestmark = pytest.mark.django_db

KEYS = ["password", "token", "secret", "authorization", "card"]
SECRETS = ["tok_map_1", "tok_star_2", "tok_chunk_3", "tok_kw_4", "pw_err_5", "bearer_6", "tb_7",
           "res_8", "dcr_9", "dcr_10", "url_pw_11", "tok_inner_12"]  # fmt: skip


def sig(
    task: str, args: list[Any], kwargs: dict[str, Any], kind: str | None = None
) -> dict[str, Any]:
    """A signature as Celery puts it in a message (Signature is a dict)."""
    return {"task": task, "args": args, "kwargs": kwargs, "options": {}, "subtask_type": kind,
            "immutable": False, "chord_size": None}  # fmt: skip


INNER = sig("shop.charge", [], {"card_token": "tok_kw_4"})
CALL_ARGS = [
    sig("celery.map", [], {"task": INNER, "it": ["tok_map_1"]}, "xmap"),
    sig("celery.starmap", [], {"task": INNER, "it": [["tok_star_2", 3]]}, "xstarmap"),
    sig("celery.chunks", [], {"task": INNER, "it": [["tok_chunk_3", 4]], "n": 1}, "chunks"),
    sig("shop.refund", ["tok_inner_12", 5], {}),
]
ERROR = (
    'charge failed: card_token=\'pw_err_5\' {"password": "pw_err_5"} Authorization: Bearer bearer_6'
)
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/app/shop.py", line 3, in charge\n'
    "    token = kwargs.get('token')\nValueError: secret=tb_7 while calling redis://u:url_pw_11@h/0"
)


def no_secret(text: str, where: str) -> None:
    found = [s for s in SECRETS if s in text]
    assert not found, f"{found} in {where}"


def record(task_id: str, *, args: str, kwargs: str = "{}", name: str = "shop.batch") -> None:
    t0 = time.time() - 60
    ingest(
        [
            make_event("published", task_id, t0, name=name, queue="q", retries=0, published_at=t0,
                       args=args, kwargs=kwargs, arg_names="callbacks"),
            make_event("started", task_id, t0 + 1, retries=0, hostname="w1", pid=3),
            make_event("failed", task_id, t0 + 2, retries=0, hostname="w1", pid=3,
                       exc_type="shop.Declined", exc_message=ERROR, traceback=TRACEBACK),
        ]
    )  # fmt: skip


@pytest.fixture
def secret_task() -> str:
    record("sig-1", args=json.dumps([CALL_ARGS]))
    TaskResult.objects.create(
        task_id="sig-1",
        task_name="shop.batch_v2",  # no recorded parameter names: every string is masked
        status="FAILURE",
        content_type="application/json",
        content_encoding="utf-8",
        task_args="('dcr_9', 2)",
        task_kwargs="{'card_token': 'dcr_10', 'note': 'kept'}",
        result=json.dumps({"password": "res_8", "total": 12, "note": "api_key=res_8"}),
        traceback=TRACEBACK,
        meta=json.dumps({"children": [], "secret": "res_8"}),
    )
    return "sig-1"


def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(f"adm-{time.time_ns()}"))
    return client


def test_nested_signatures_errors_and_tracebacks_are_masked_on_the_task_page(secret_task):
    client = client_for("viewer")
    page = client.get(reverse("task-detail", args=[secret_task]))
    assert page.status_code == 200
    text = page.content.decode()
    no_secret(text, "task page")
    assert "shop.charge" in text and MASK in text  # the structure is shown, the values masked
    assert "ValueError" in text and "most recent call last" in text  # ordinary text kept
    for url in (reverse("tasks"), reverse("overview")):
        no_secret(client.get(url).content.decode(), url)
    export = client.get(reverse("tasks-export"))
    no_secret(b"".join(export.streaming_content).decode(), "CSV export")  # type: ignore[attr-defined]
    result = client.get(reverse("task-result", args=[secret_task]))
    assert result.status_code == 200
    no_secret(result.content.decode(), "result partial")
    assert "total" in result.content.decode()


@pytest.mark.parametrize("role", ["viewer", "token"])
def test_nested_signatures_errors_and_tracebacks_are_masked_in_the_api(secret_task, role):
    answer = client_for(role).get(reverse("api-task", args=[secret_task]))
    assert answer.status_code == 200
    no_secret(answer.content.decode(), "API")
    body = answer.json()
    assert "Bearer " + MASK in body["error"]["message"]
    assert body["attempts"][0]["traceback"].startswith("Traceback (most recent call last)")


def test_django_celery_results_admin_shows_rows_redacted(secret_task):
    client = admin_client()
    stored = TaskResult.objects.get(task_id=secret_task)
    group = GroupResult.objects.create(group_id="g-1", result=json.dumps(["sig-1"]))
    urls = [
        reverse("admin:django_celery_results_taskresult_changelist"),
        reverse("admin:django_celery_results_taskresult_change", args=[stored.pk]),
        reverse("admin:django_celery_results_groupresult_change", args=[group.pk]),
        reverse("admin:dashboard_taskrun_change", args=[TaskRun.objects.get(task_id="sig-1").pk]),
        reverse("admin:dashboard_taskattempt_change", args=[TaskAttempt.objects.get().pk]),
    ]
    for url in urls:
        page = client.get(url)
        assert page.status_code == 200, url
        no_secret(page.content.decode(), url)
    change = client.get(urls[1]).content.decode()
    assert "kept" in change and "total" in change and MASK in change
    # a search on the arguments would confirm a guessed secret
    found = client.get(urls[0], {"q": "dcr_10"}).content.decode()
    assert "0 results" in found or "sig-1" not in found.split('id="result_list"')[-1]


DEEP = 600


@pytest.mark.parametrize("where", ["args", "kwargs"])
def test_arguments_nested_600_deep_show_a_marker_not_a_500(where):
    deep_list = "[" * DEEP + '"x"' + "]" * DEEP
    deep_dict = '{"a": ' * DEEP + '"x"' + "}" * DEEP
    record("deep-1", args=deep_list if where == "args" else "[]",
           kwargs=deep_dict if where == "kwargs" else "{}")  # fmt: skip
    TaskResult.objects.create(task_id="deep-1", task_name="shop.batch", status="SUCCESS",
                              content_type="application/json", result=deep_list,
                              task_args=deep_list, task_kwargs=deep_dict)  # fmt: skip
    client = client_for("viewer")
    page = client.get(reverse("task-detail", args=["deep-1"]))
    assert page.status_code == 200
    assert TOO_DEEP in page.content.decode()
    # an operator's page also shows the call a retry would send
    RegisteredTask.objects.create(hostname="w1", name="shop.batch", last_reported_at=timezone.now())
    assert client_for("operator").get(reverse("task-detail", args=["deep-1"])).status_code == 200
    assert client.get(reverse("task-result", args=["deep-1"])).status_code == 200
    api = client.get(reverse("api-task", args=["deep-1"]))
    assert api.status_code == 200 and TOO_DEEP in api.json()[where]
    admin = admin_client()
    run = TaskRun.objects.get(task_id="deep-1")
    assert admin.get(reverse("admin:dashboard_taskrun_change", args=[run.pk])).status_code == 200
    stored = TaskResult.objects.get(task_id="deep-1")
    answer = admin.get(reverse("admin:django_celery_results_taskresult_change", args=[stored.pk]))
    assert answer.status_code == 200


# -- the functions themselves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("card_token='tok_123' declined", f"card_token='{MASK}' declined"),
        ('{"password": "x", "user": "ann"}', f'{{"password": "{MASK}", "user": "ann"}}'),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {MASK}"),
        ("GET /?secret=s1&page=2", f"GET /?secret={MASK}&page=2"),
        ("redis://u:pw@host:6379/0 refused", f"redis://u:{MASK}@host:6379/0 refused"),
        # ordinary text and code are left alone
        ("KeyError: 'token'", "KeyError: 'token'"),
        ("    token = kwargs.get('token')", "    token = kwargs.get('token')"),
        ("ValueError: invalid literal for int() with base 10: 'abc'",
         "ValueError: invalid literal for int() with base 10: 'abc'"),
        ("Connection refused: retry in 5 s", "Connection refused: retry in 5 s"),
    ],
)  # fmt: skip
def test_free_text_secrets_are_masked_and_other_text_kept(text, shown):
    assert scrub_text(text, KEYS) == shown


def test_long_hostile_text_is_cut_first_and_scanned_quickly():
    # Bounded patterns: each of these would take minutes with an unbounded nested repeat.
    for text in ("a=" * 200_000, "token='" + "\\" * 300_000, "password" * 50_000, "'" * 300_000):
        shown = scrub_text(text, KEYS)
        assert len(shown) <= 256 * 1024 + 40


def test_unknown_parameter_names_mask_every_string_of_a_nested_call():
    shown = json.loads(redacted_call(json.dumps(CALL_ARGS), "{}", "", KEYS).args or "")
    text = json.dumps(shown)
    no_secret(text, "nested call")
    assert shown[1]["kwargs"]["it"] == [[MASK, 3]]  # numbers stay readable


def test_known_parameter_names_mask_only_the_secret_ones():
    names = {"shop.charge": ["card_token", "amount"], "shop.refund": ["order_id", "amount"]}
    call = redacted_call(json.dumps(CALL_ARGS), "{}", "", KEYS, names_of=names.get).args or ""
    shown = json.loads(call)
    assert shown[1]["kwargs"]["it"] == [[MASK, 3]]
    assert shown[3]["args"] == ["tok_inner_12", 5]  # named, and not a secret's name: shown


def test_a_starmap_task_itself_masks_its_items():
    kwargs = json.dumps({"task": INNER, "it": [["tok_star_2", 1]]})
    shown = redacted_call("[]", kwargs, "", KEYS, name="celery.starmap").kwargs or ""
    no_secret(shown, "starmap kwargs")


def test_redact_never_recurses_past_the_depth_limit():
    value: Any = "x"
    for _ in range(5000):
        value = {"a": [value]}
    assert TOO_DEEP in json.dumps(redact(value, KEYS), ensure_ascii=False)


def test_a_repr_is_read_as_a_literal():
    assert json.loads(redacted_repr("{'card_token': 'tok_1', 'n': 2}", KEYS)) == {
        "card_token": MASK,
        "n": 2,
    }
    assert "tok_1" not in redacted_repr("('tok_1', 2)", KEYS, args_of="shop.unknown")


def test_the_admin_lists_do_not_grow_with_forged_names():
    for i in range(30):
        record(f"forged-{i}", args="[]", name=f"forged.name_{i:03d}")
    client = admin_client()
    page = client.get(reverse("admin:dashboard_taskrun_changelist")).content.decode()
    assert "forged.name_000" in page  # the rows themselves, not a filter of every name
    assert page.count("forged.name_0") == 30
    found = client.get(reverse("admin:dashboard_taskrun_changelist"), {"q": "forged.name_007"})
    assert "forged-7" in found.content.decode() and "forged-8" not in found.content.decode()
