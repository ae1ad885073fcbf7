"""Housekeeping of the benchmark database between sections.

Measurements create rows and delete them again. On a PostgreSQL server without autovacuum (the one
these figures come from has it off) the dead rows stay, and the next section's upserts and pages
would pay for the previous section's churn; ``vacuum`` clears them (seconds, not timed). Without
autovacuum there is no auto-analyze either: ``analyze`` refreshes the statistics after a size of
the scaling section, as auto-analyze would after that many new rows.
"""

from __future__ import annotations

from typing import Final

TABLES: Final = ("dashboard_taskrun", "dashboard_taskattempt", "django_celery_results_taskresult")


def analyze() -> None:
    """Fresh planner statistics after a burst of new rows: what autovacuum's auto-analyze does on
    a default server (not timed)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {', '.join(TABLES)}")


def vacuum() -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # Django's autocommit: VACUUM needs no transaction
            cursor.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
