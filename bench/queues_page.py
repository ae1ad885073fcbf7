"""Server time of the Queues page and of /metrics, with a real worker and monitor beside them.

    python -m bench.queues_page [--repeat 15] [--no-worker] [--json PATH]

``REDIS_URL`` (default: the embedded Valkey) and ``DATABASE_URL`` (default: the SQLite file in
``var/``, migrated if needed) as for the dashboard. The run starts a Celery worker of tasktrail's
own app on a queue of the run (``--no-worker``: none, so nobody answers a broadcast) and
``manage.py monitor`` on a stream of the run, and waits until the monitor's alert check has
written a snapshot in which the worker answered. Then it requests, through Django's test client in
this process, as a viewer (server time only):

- the Queues page: its first load (a fresh process: no Redis connection yet), the median of
  ``--repeat`` further full loads and of ``--repeat`` htmx polls of its table;
- the same polls with Django's cache cleared before each, as a poll finds it once a cached
  answer has expired;
- /metrics with its bearer token: first load and median.

The control exchange, the stream and the queue are named after the run (``bench.queues_settings``),
and every key the run created is deleted on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

METRICS_TOKEN = "bench-metrics-token"
READY_SECONDS = 120.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.queues_page", description=__doc__)
    parser.add_argument("--repeat", type=int, default=15, help="Loads per median (default 15).")
    parser.add_argument("--no-worker", action="store_true", help="Run no Celery worker.")
    parser.add_argument(
        "--check-seconds", type=float, default=5.0, help="The monitor's check interval (5)."
    )
    parser.add_argument("--json", type=Path, help="Also write the timings here, as JSON.")
    return parser.parse_args(argv)


def _setup(run: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.queues_settings"
    os.environ.setdefault("TASKTRAIL_EMBEDDED_REDIS", "1")  # used only without REDIS_URL
    os.environ["BENCH_CONTROL_EXCHANGE"] = f"bench.{run}.control"
    os.environ["TASKTRAIL_STREAM"] = f"bench:{run}:queues:events"
    os.environ["TASKTRAIL_METRICS_TOKEN"] = METRICS_TOKEN
    os.environ["ALLOWED_HOSTS"] = "testserver"  # the test client's host
    import django

    django.setup()  # starts the embedded Valkey when REDIS_URL is not set
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def _wait_until(what: str, ready: Callable[[], bool], children: list[Any]) -> None:
    from bench.procs import ChildFailed

    deadline = time.monotonic() + READY_SECONDS
    while not ready():
        for child in children:
            if not child.running():
                raise ChildFailed(f"{child.name} exited while waiting for {what}\n{child.tail()}")
        if time.monotonic() > deadline:
            tails = "\n".join(child.tail() for child in children)
            raise ChildFailed(f"no {what} after {READY_SECONDS:.0f}s\n{tails}")
        time.sleep(0.2)


def _snapshot(client: Any, stream: str) -> dict[str, Any] | None:
    from dashboard import redis_keys

    raw = client.get(redis_keys.alert_snapshot(stream))
    return json.loads(raw) if raw else None


def _ms(fetch: Callable[[], int]) -> float:
    started = time.perf_counter()
    status = fetch()
    elapsed = (time.perf_counter() - started) * 1000
    if status != 200:
        raise RuntimeError(f"the page answered {status}")
    return elapsed


def _median(
    fetch: Callable[[], int], repeat: int, before: Callable[[], None] | None = None
) -> float:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        samples.append(_ms(fetch))
    return statistics.median(samples)


def measure(options: argparse.Namespace, bench: Any, stream: str, queue: str) -> dict[str, Any]:
    from django.contrib.auth.models import Permission, User
    from django.core.cache import cache
    from django.test import Client
    from django.urls import reverse

    env = bench.child_env(
        DJANGO_SETTINGS_MODULE="bench.queues_settings",
        TASKTRAIL_STREAM=stream,
        TASKTRAIL_ALERT_CHECK_SECONDS=str(options.check_seconds),
    )
    children = []
    if not options.no_worker:
        worker = bench.procs.python(
            "worker",
            ["-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queue, "-c", "1",
             "-n", f"bench-{bench.run_id}@%h", "--without-mingle", "--without-gossip",
             "--loglevel", "INFO"],
            env,
        )  # fmt: skip
        children.append(worker)
        _wait_until("ready worker", lambda: " ready." in worker.output(), children)
    monitor = bench.procs.python(
        "monitor", ["manage.py", "monitor", "--consumer", f"bench-{bench.run_id}"], env
    )
    children.append(monitor)

    def checked() -> bool:
        snap = _snapshot(bench.client, stream)
        if snap is None:
            return False
        return options.no_worker or bool(snap.get("workers"))

    _wait_until("alert snapshot", checked, children)

    user, _ = User.objects.get_or_create(username=f"bench-viewer-{bench.run_id}")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_taskrun", "view_taskattempt"])
    )
    client = Client()
    client.force_login(user)
    queues_url, metrics_url = reverse("queues"), reverse("metrics")
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}

    def page() -> int:
        return client.get(queues_url).status_code

    def poll() -> int:
        return client.get(queues_url, headers={"HX-Request": "true"}).status_code

    def scrape() -> int:
        return client.get(metrics_url, headers=bearer).status_code

    table = client.get(queues_url, headers={"HX-Request": "true"}).content.decode()
    cache.clear()
    # First loads are measured in fresh processes (``first_loads``); these follow a warm-up.
    result: dict[str, Any] = {"worker": not options.no_worker, "repeat": options.repeat}
    result["queues_page_ms"] = _median(page, options.repeat)
    result["queues_poll_ms"] = _median(poll, options.repeat)
    result["queues_poll_cache_cleared_ms"] = _median(poll, options.repeat, before=cache.clear)
    result["metrics_ms"] = _median(scrape, options.repeat)
    result["queues_shown"] = table.count('<th scope="row">')
    user.delete()
    return result


def first_loads(bench: Any, stream: str) -> dict[str, float]:
    """First load of each page in a fresh process: no Redis connection, nothing cached."""
    out = {}
    for name, path in (("queues_page_first_ms", "queues"), ("metrics_first_ms", "metrics")):
        env = bench.child_env(
            DJANGO_SETTINGS_MODULE="bench.queues_settings", TASKTRAIL_STREAM=stream
        )
        output = bench.procs.run_python(
            f"first-{path}", ["-m", "bench.queues_page", "--first", path], env, timeout=120
        )
        out[name] = float(output.strip().splitlines()[-1])
    return out


def _first(path: str) -> int:
    """Child: one request of ``path`` (queues or metrics) in this fresh process; prints its ms."""
    os.environ["TASKTRAIL_METRICS_TOKEN"] = METRICS_TOKEN
    os.environ["ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.contrib.auth.models import Permission, User
    from django.test import Client
    from django.urls import reverse

    client = Client()
    user = None
    headers = {}
    if path == "queues":
        user = User.objects.create_user(f"bench-first-{secrets.token_hex(3)}")
        user.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_taskrun", "view_taskattempt"])
        )
        client.force_login(user)
    else:
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    url = reverse(path)
    try:
        print(f"{_ms(lambda: client.get(url, headers=headers).status_code):.3f}")
    finally:
        if user is not None:
            user.delete()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--first"]:
        return _first(argv[1])
    options = parse_args(argv)
    run = secrets.token_hex(3)
    _setup(run)
    from django.conf import settings

    from bench.context import Bench
    from bench.machine import safe_url

    bench = Bench(settings.REDIS_URL, settings.DATABASE_URL, settings.VAR_DIR, run_id=run)
    stream = bench.stream("queues", "events")
    assert stream == settings.TASKTRAIL_STREAM, (stream, settings.TASKTRAIL_STREAM)
    queue = bench.queue("queues")
    try:
        result = measure(options, bench, stream, queue)
        result.update(first_loads(bench, stream))
    finally:
        bench.close()
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"Queues page and /metrics, {result['queues_shown']} queues shown")
    print(f"  redis: {safe_url(settings.REDIS_URL)}; database: {engine}")
    print(f"  worker answering broadcasts: {'yes' if result['worker'] else 'no (none running)'}")
    n = options.repeat
    for label, key in [
        ("Queues page, first load (fresh process)", "queues_page_first_ms"),
        (f"Queues page, median of {n}", "queues_page_ms"),
        (f"Queues table poll (htmx), median of {n}", "queues_poll_ms"),
        ("poll with Django's cache cleared, median", "queues_poll_cache_cleared_ms"),
        ("/metrics, first load (fresh process)", "metrics_first_ms"),
        (f"/metrics, median of {n}", "metrics_ms"),
    ]:
        print(f"  {label:<44} {result[key]:8.1f} ms")
    if options.json:
        options.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
