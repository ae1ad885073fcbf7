"""Section 4: the dashboard at 1,000,000 rows beside django-celery-results' admin, from ``bench``.

Runs ``python -m bench.pages`` as a child (it configures Django for its own database,
``tasktrail_pages`` on the server of ``DATABASE_URL``; the rows are generated there once and reused
while the count matches) and reads its ``--json`` output. PostgreSQL only.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from bench.context import Bench

GOAL_MS: Final = 50.0


@dataclass(frozen=True)
class Page:
    page: str
    tasktrail_ms: float
    admin_ms: float | None


@dataclass(frozen=True)
class Result:
    rows: int
    repeat: int
    generated_seconds: float | None
    pages: list[Page]
    skipped: str = ""


def pages_url(database_url: str) -> str | None:
    """The pages database on the same PostgreSQL server, or None when it is not PostgreSQL."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        return None
    return urlunsplit(parts._replace(path="/tasktrail_pages"))


def run(bench: Bench, *, rows: int, repeat: int) -> Result:
    url = pages_url(bench.database_url)
    if url is None:
        return Result(rows, repeat, None, [], skipped="skipped: needs PostgreSQL")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pages.json"
        bench.procs.run_python(
            "pages",
            ["-m", "bench.pages", "--rows", str(rows), "--repeat", str(repeat), "--json", str(out)],
            bench.child_env(BENCH_PAGES_DATABASE_URL=url),
            timeout=3600,
        )
        data = json.loads(out.read_text())
    return Result(
        rows=data["rows"],
        repeat=data["repeat"],
        generated_seconds=data["generated_seconds"],
        pages=[Page(p["page"], p["tasktrail_ms"], p["admin_ms"]) for p in data["pages"]],
    )
