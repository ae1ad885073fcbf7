"""Write joined patches with one ``INSERT … ON CONFLICT DO UPDATE`` per chunk of rows.

The update clause applies the same join as ``merge.join`` inside the database, against the row as it
is stored, so two monitors writing events of the same task concurrently still converge (PostgreSQL
serializes the two upserts on the row; neither reads then overwrites). Works on PostgreSQL and
SQLite (3.24+), which share this syntax.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models

from dashboard.ingest.merge import Patch, Rule


def _merge_expr(column: str, rule: Rule, rules: Mapping[str, Rule], table: str) -> str:
    qn = connection.ops.quote_name
    cur, new = f"{table}.{qn(column)}", f"excluded.{qn(column)}"

    def pick(op: str) -> str:
        return (
            f"CASE WHEN {cur} IS NULL THEN {new} WHEN {new} IS NULL THEN {cur} "
            f"WHEN {new} {op} {cur} THEN {new} ELSE {cur} END"
        )

    if rule.kind == "min":
        return pick("<")
    if rule.kind == "max":
        return pick(">")
    assert rule.key is not None and rule.key in rules
    cur_key, new_key = f"{table}.{qn(rule.key)}", f"excluded.{qn(rule.key)}"
    return (
        f"CASE WHEN {new_key} > {cur_key} THEN {new} WHEN {new_key} < {cur_key} THEN {cur} "
        f"ELSE {pick('>')} END"
    )


def upsert(
    model: type[models.Model],
    rules: Mapping[str, Rule],
    conflict: Sequence[str],
    rows: Sequence[Patch],
) -> int:
    """Join ``rows`` into ``model``'s table, keyed by the ``conflict`` columns.

    Returns the number of rows sent."""
    if not rows:
        return 0
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [*conflict, *rules]
    fields = {f.column: f for f in model._meta.concrete_fields}
    datetime_columns = {c for c in columns if isinstance(fields[c], models.DateTimeField)}
    # A column no event filled gets the model's default on insert (None for nullable ones).
    defaults = {c: fields[c].get_default() for c in columns}

    updates = ", ".join(
        f"{qn(c)} = {_merge_expr(c, rule, rules, table)}" for c, rule in rules.items()
    )
    column_sql = ", ".join(qn(c) for c in columns)
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    max_params = connection.features.max_query_params or 30000
    chunk = max(1, min(1000, max_params // len(columns)))

    ordered = sorted(rows, key=lambda r: tuple(r[c] for c in conflict))  # stable lock order
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        for start in range(0, len(ordered), chunk):
            part = ordered[start : start + chunk]
            params: list[Any] = []
            for row in part:
                for column in columns:
                    value = row.get(column, defaults.get(column))
                    if column in datetime_columns and isinstance(value, dt.datetime):
                        value = adapt(value)
                    params.append(value)
            # Identifiers come from the model and are quoted; every value is a parameter.
            sql = (
                f"INSERT INTO {table} ({column_sql}) VALUES "  # noqa: S608
                + ", ".join([row_sql] * len(part))
                + f" ON CONFLICT ({', '.join(qn(c) for c in conflict)}) DO UPDATE SET {updates}"
            )
            cursor.execute(sql, params)
    return len(ordered)
