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
    conflict_sql = ", ".join(qn(c) for c in conflict)
    column_sql = ", ".join(qn(c) for c in columns)
    ordered = sorted(rows, key=lambda r: tuple(r[c] for c in conflict))  # stable lock order
    table_rows = [[row.get(c, defaults[c]) for c in columns] for row in ordered]

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One array per column through unnest(): a fixed number of parameters whatever the
            # row count (psycopg parses every placeholder of a query in Python; 35,000 of them
            # cost more than the write itself).
            casts = ", ".join(f"%s::{fields[c].db_type(connection)}[]" for c in columns)
            # identifiers come from the model and are quoted; every value is a parameter
            sql = (
                f"INSERT INTO {table} ({column_sql}) SELECT * FROM unnest({casts}) "  # noqa: S608
                f"ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}"
            )
            for start in range(0, len(table_rows), 5000):
                part = table_rows[start : start + 5000]
                cursor.execute(sql, [list(column) for column in zip(*part, strict=True)])
            return len(ordered)

        adapt = connection.ops.adapt_datetimefield_value
        datetime_positions = [i for i, c in enumerate(columns) if c in datetime_columns]
        max_params = connection.features.max_query_params or 30000
        chunk = max(1, min(1000, max_params // len(columns)))
        row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
        for start in range(0, len(table_rows), chunk):
            part = table_rows[start : start + chunk]
            params: list[Any] = []
            for values in part:
                for i in datetime_positions:
                    if isinstance(values[i], dt.datetime):
                        values[i] = adapt(values[i])
                params.extend(values)
            sql = (
                f"INSERT INTO {table} ({column_sql}) VALUES "  # noqa: S608
                + ", ".join([row_sql] * len(part))
                + f" ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}"
            )
            cursor.execute(sql, params)
    return len(ordered)
