"""Write joined patches with one ``INSERT … ON CONFLICT DO UPDATE`` per chunk of rows.

The update clause applies the same join as ``merge.join`` inside the database, against the row as it
is stored, so two monitors writing events of the same task concurrently still converge (PostgreSQL
serializes the two upserts on the row; neither reads then overwrites). Works on PostgreSQL and
SQLite (3.35+, for RETURNING), which share this syntax.

Every ``SET`` expression reads the row as it was before the statement (SQL evaluates them all
against the old row), so the conflict columns recompute the joined state key themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models

from dashboard.ingest import merge
from dashboard.ingest.merge import Patch, Rule


class _Sql:
    """The update clause of one table: every rule of ``dashboard.ingest.merge`` as SQL, the row as
    stored (``cur``) against the row sent (``excluded``)."""

    def __init__(self, rules: Mapping[str, Rule], table: str) -> None:
        self.rules = rules
        self.table = table
        self.qn = connection.ops.quote_name
        self.firsts: dict[str, list[str]] = {}
        for column, rule in rules.items():
            if rule.kind == "first":
                assert rule.key is not None
                self.firsts.setdefault(rule.key, []).append(column)

    def cur(self, column: str) -> str:
        return f"{self.table}.{self.qn(column)}"

    def new(self, column: str) -> str:
        return f"excluded.{self.qn(column)}"

    @staticmethod
    def pick(op: str, cur: str, new: str) -> str:
        return (
            f"CASE WHEN {cur} IS NULL THEN {new} WHEN {new} IS NULL THEN {cur} "
            f"WHEN {new} {op} {cur} THEN {new} ELSE {cur} END"
        )

    def cur_first_key(self, key: str) -> str:
        """The stored key of a ``first`` group; rows written before the group had a key hold
        their values as known first (key 0)."""
        held = " OR ".join(f"{self.cur(c)} IS NOT NULL" for c in self.firsts[key])
        return f"COALESCE({self.cur(key)}, CASE WHEN {held} THEN 0 END)"

    def expr(self, column: str) -> str:
        rule = self.rules[column]
        cur, new = self.cur(column), self.new(column)
        if column in self.firsts:  # a first group's key
            return self.pick("<", self.cur_first_key(column), new)
        if rule.kind == "min":
            return self.pick("<", cur, new)
        if rule.kind == "max":
            return self.pick(">", cur, new)
        if rule.kind == "latest":
            assert rule.key is not None and rule.key in self.rules
            cur_key, new_key = self.cur(rule.key), self.new(rule.key)
            ties = ""
            if rule.tie_key is not None:  # the first received wins whole; null: older than any
                cur_tie = f"COALESCE({self.cur(rule.tie_key)}, {merge.NO_KEY})"
                new_tie = f"COALESCE({self.new(rule.tie_key)}, {merge.NO_KEY})"
                ties = (
                    f"WHEN {new_tie} < {cur_tie} THEN {new} WHEN {new_tie} > {cur_tie} THEN {cur} "
                )
            op = "<" if rule.tie == "min" else ">"
            return (
                f"CASE WHEN {new_key} > {cur_key} THEN {new} WHEN {new_key} < {cur_key} THEN {cur} "
                f"{ties}ELSE {self.pick(op, cur, new)} END"
            )
        if rule.kind == "first":
            assert rule.key is not None
            cur_key, new_key = self.cur_first_key(rule.key), self.new(rule.key)
            return (
                f"CASE WHEN {new_key} IS NULL THEN {cur} WHEN {cur_key} IS NULL THEN {new} "
                f"WHEN {new_key} < {cur_key} THEN {new} WHEN {new_key} > {cur_key} THEN {cur} "
                f"ELSE {self.pick('<', cur, new)} END"
            )
        if rule.kind == "retries":
            state = self.pick(">", self.cur("state_key"), self.new("state_key"))
            return (
                f"CASE WHEN {_is_success(state)} THEN {attempt_of(state)} "
                f"ELSE {self.pick('>', cur, new)} END"
            )
        raise ValueError(f"{column}: conflict columns are assigned together (conflict_assignment)")

    # -- conflicts (merge._join_conflict) ------------------------------------------------------

    def differs(self, column: str) -> str:
        cur, new = self.cur(column), self.new(column)
        return f"(({cur} IS NULL) <> ({new} IS NULL) OR {cur} <> {new})"

    def candidates(self) -> list[tuple[str, str, str]]:
        """(key, field, text) of each conflict, in ``merge.conflict_candidates``' order, then the
        stored one and the one sent."""
        found: list[tuple[str, str, str]] = []
        for key, (_, compared) in merge.IDENTITY_GROUPS.items():
            cur_key, new_key = self.cur_first_key(key), self.new(key)
            differs = " OR ".join(self.differs(c) for c in compared)
            when = f"{cur_key} IS NOT NULL AND {new_key} IS NOT NULL AND ({differs})"
            loser_key = f"CASE WHEN {new_key} > {cur_key} THEN {new_key} ELSE {cur_key} END"
            field = " ".join(f"WHEN {self.differs(c)} THEN '{c}'" for c in compared)

            def loser(c: str, cur_key: str = cur_key, new_key: str = new_key) -> str:
                cur, new = self.cur(c), self.new(c)
                return (
                    f"CASE WHEN {new_key} > {cur_key} THEN {new} "
                    f"WHEN {new_key} < {cur_key} THEN {cur} ELSE {self.pick('>', cur, new)} END"
                )

            text = " ".join(f"WHEN {self.differs(c)} THEN {loser(c)}" for c in compared)
            found.append(
                (
                    f"CASE WHEN {when} THEN {loser_key} END",
                    f"CASE {field} END",
                    f"COALESCE(SUBSTR(CASE {text} END, 1, {merge.CONFLICT_TEXT}), '')",
                )
            )
        cur_state, new_state = self.cur("state_key"), self.new("state_key")
        high = self.pick(">", cur_state, new_state)
        low = f"CASE WHEN {new_state} < {cur_state} THEN {new_state} ELSE {cur_state} END"
        names = " ".join(
            f"WHEN {rank} THEN '{state}'" for state, rank in merge.TERMINAL_ORDER.items()
        )
        low_attempt, high_attempt = attempt_of(low), attempt_of(high)
        name = (  # merge.state_from_key
            f"CASE WHEN {low} >= {merge.TERMINAL_BAND} THEN CASE {low} %% 256 {names} END "
            f"WHEN {low} %% 256 = {merge.STEP['received']} THEN '{merge.RECEIVED}' "
            f"WHEN {low} %% 256 = {merge.STEP['started']} THEN '{merge.STARTED}' "
            f"WHEN {low_attempt} > 0 THEN '{merge.RETRY}' ELSE '{merge.PENDING}' END"
        )
        described = f"{name} || ' (retries ' || CAST({low_attempt} AS TEXT) || ')'"
        outranked = (  # merge.outranked_by_success
            f"{low} >= 0 AND ({_is_failed(low)} "
            f"OR ({_is_success(low)} AND {low_attempt} <> {high_attempt}) "
            f"OR ({low} < {merge.TERMINAL_BAND} AND {low_attempt} > {high_attempt}))"
        )
        top = merge.STATE_CONFLICT_BASE + merge.STATE_CONFLICT_TOP
        found.append(
            (
                f"CASE WHEN {_is_success(high)} AND {outranked} THEN {top} - {low} END",
                "'state'",
                described,
            )
        )
        field, text = merge.CONFLICT_COLUMNS
        for side in (self.cur, self.new):
            found.append((side(merge.CONFLICT_KEY), side(field), side(text)))
        return found

    def conflict_assignment(self) -> str:
        """The three conflict columns in one assignment: the candidate with the lowest key (the
        first in ``candidates``' order of equal ones), or nulls when there is none. A sub-select
        names each candidate once; three CASE expressions would repeat them all for each column
        and each candidate (a statement ten times the size, parsed on every write)."""
        key, (field, text) = merge.CONFLICT_KEY, merge.CONFLICT_COLUMNS
        rows = " UNION ALL ".join(
            f"SELECT {k} AS k, {f} AS f, {t} AS t, {order} AS o"
            for order, (k, f, t) in enumerate(self.candidates())
        )
        columns = ", ".join(self.qn(c) for c in (key, field, text))
        return (
            f"({columns}) = (SELECT c.k, c.f, c.t FROM ({rows}) AS c "  # noqa: S608
            "WHERE c.k IS NOT NULL ORDER BY c.k, c.o LIMIT 1)"
        )


def attempt_of(key: str) -> str:
    """merge.attempt_of_key in SQL."""
    top = (1 << merge.SUCCESS_ATTEMPT_BITS) - 1
    return (
        f"(CASE WHEN {key} >= {merge.FIRST_SUCCESS_BAND} THEN {top} - ({key} / 256) %% "
        f"{top + 1} ELSE ({key} / 256) %% {1 << 31} END)"
    )


def _is_success(key: str) -> str:
    success = merge.TERMINAL_ORDER[merge.SUCCESS]
    return f"({key} >= {merge.SUCCESS_BAND} AND {key} %% 256 = {success})"


def _is_failed(key: str) -> str:
    return f"({key} >= {merge.TERMINAL_BAND} AND NOT {_is_success(key)})"


def upsert(
    model: type[models.Model],
    rules: Mapping[str, Rule],
    conflict: Sequence[str],
    rows: Sequence[Patch],
    *,
    flag: str | None = None,
    flagged: list[Any] | None = None,
) -> int:
    """Join ``rows`` into ``model``'s table, keyed by the ``conflict`` columns.

    ``flag``: a condition on the row as joined (its columns unqualified); the first conflict
    column of each row it holds for is added to ``flagged``. Returns the number of rows sent."""
    if not rows:
        return 0
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    columns = [*conflict, *rules]
    fields = {f.column: f for f in model._meta.concrete_fields}
    datetime_columns = {c for c in columns if isinstance(fields[c], models.DateTimeField)}
    # A column no event filled gets the model's default on insert (None for nullable ones).
    defaults = {c: fields[c].get_default() for c in columns}

    sql_rules = _Sql(rules, table)
    assignments = [
        f"{qn(c)} = {sql_rules.expr(c)}" for c, r in rules.items() if r.kind != "conflict"
    ]
    if any(r.kind == "conflict" for r in rules.values()):
        assignments.append(sql_rules.conflict_assignment())
    updates = ", ".join(assignments)
    conflict_sql = ", ".join(qn(c) for c in conflict)
    column_sql = ", ".join(qn(c) for c in columns)
    returning = f" RETURNING {qn(conflict[0])}, CASE WHEN {flag} THEN 1 ELSE 0 END" if flag else ""

    def collect(cursor: Any) -> None:
        if flag and flagged is not None:
            flagged.extend(key for key, hit in cursor.fetchall() if hit)

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
                f"ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}{returning}"
            )
            for start in range(0, len(table_rows), 5000):
                part = table_rows[start : start + 5000]
                cursor.execute(sql, [list(column) for column in zip(*part, strict=True)])
                collect(cursor)
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
                + f" ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}{returning}"
            )
            cursor.execute(sql, params)
            collect(cursor)
    return len(ordered)


def settle_flag() -> str:
    """merge.needs_settling on a TaskRun row, its columns unqualified (for RETURNING, WHERE)."""
    qn = connection.ops.quote_name
    state, start = qn("state_key"), qn("start_key")
    return f"{_is_success(state)} AND {start} > {attempt_of(state)}"


def settle_starts(task_run: type[models.Model], attempt: type[models.Model],
                  task_ids: Sequence[str]) -> None:  # fmt: skip
    """merge.settle_task for these task ids, in SQL: a succeeded task whose start is of a later
    attempt takes the start of the success's attempt (or the latest before it that started)."""
    qn = connection.ops.quote_name
    runs, attempts = qn(task_run._meta.db_table), qn(attempt._meta.db_table)
    success = attempt_of(f"{runs}.{qn('state_key')}")
    flag = settle_flag()

    def pick(column: str) -> str:
        return (
            f"(SELECT a.{qn(column)} FROM {attempts} a WHERE a.{qn('task_id')} = "  # noqa: S608
            f"{runs}.{qn('task_id')} AND a.{qn('attempt')} <= {success} AND "
            f"a.{qn('started_at')} IS NOT NULL ORDER BY a.{qn('attempt')} DESC LIMIT 1)"
        )

    with connection.cursor() as cursor:
        for start in range(0, len(task_ids), 500):
            part = list(task_ids[start : start + 500])
            cursor.execute(
                f"UPDATE {runs} SET {qn('started_at')} = {pick('started_at')}, "  # noqa: S608
                f"{qn('queue_wait')} = {pick('queue_wait')} "
                f"WHERE {qn('task_id')} IN ({', '.join(['%s'] * len(part))}) AND {flag}",
                part,
            )
