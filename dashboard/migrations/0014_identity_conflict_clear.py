"""A task's identity conflict can be cleared by an admin (the new permission and audit kind);
attempts and tasks keep which error event the monitor received first (error_rx, outcome_rx).

A SUCCESS key now holds its receive time (dashboard.ingest.merge.FIRST_SUCCESS_BAND): the first
success received wins. Successes stored before are given the earliest receive time, so no success
arriving from now on (a forged one of another attempt) outranks them. One UPDATE of the succeeded
rows (the keys' columns that hold the success's key: state, worker, error)."""

from collections.abc import Callable

from django.db import migrations, models

# the values of dashboard.ingest.merge, as they are now
_OLD_BAND = 1 << 40
_NEW_BAND = 1 << 61
_MS_TOP = (1 << 41) - 1  # the receive time's bits, all set: received first
_ATTEMPT_TOP = (1 << 10) - 1
_SUCCESS_RANK = 3


def _new(column: str) -> str:
    attempt = f"(({column} / 256) % {1 << 31})"
    capped = f"(CASE WHEN {attempt} > {_ATTEMPT_TOP} THEN {_ATTEMPT_TOP} ELSE {attempt} END)"
    return (
        f"{_NEW_BAND} + {_MS_TOP} * {1 << 18} + ({_ATTEMPT_TOP} - {capped}) * 256 + {_SUCCESS_RANK}"
    )


def _old(column: str) -> str:
    attempt = f"({_ATTEMPT_TOP} - ({column} / 256) % {_ATTEMPT_TOP + 1})"
    return f"{_OLD_BAND} + {attempt} * 256 + {_SUCCESS_RANK}"


def _success_keys(convert: Callable[[str], str], lower: int, upper: int) -> tuple[str, ...]:
    found = f"state_key >= {lower} AND state_key < {upper} AND state_key % 256 = {_SUCCESS_RANK}"
    # worker_key and error_key first: they are compared with the state key as it was
    keys = tuple(
        f"UPDATE dashboard_taskrun SET {column} = {convert(column)} "  # noqa: S608 (constants)
        f"WHERE {found} AND {column} = state_key"
        for column in ("worker_key", "error_key")
    )
    state = f"UPDATE dashboard_taskrun SET state_key = {convert('state_key')} WHERE {found}"  # noqa: S608
    return (*keys, state)


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0013_api_token_expiry"),
    ]

    operations = [
        migrations.RunSQL(
            _success_keys(_new, _OLD_BAND, _NEW_BAND),
            reverse_sql=_success_keys(_old, _NEW_BAND, 1 << 62),
        ),
        migrations.AlterModelOptions(
            name="taskrun",
            options={
                "permissions": [
                    ("retry_taskrun", "Can retry failed tasks"),
                    ("cancel_taskrun", "Can cancel tasks that have not started"),
                    ("terminate_taskrun", "Can terminate running tasks"),
                    ("bulk_over_cap", "Can act on more tasks at once than the bulk cap"),
                    ("view_retention", "Can see what retention keeps and removes"),
                    (
                        "clear_identity_conflict",
                        "Can clear a task's identity conflict after checking it",
                    ),
                ],
                "verbose_name": "task run",
            },
        ),
        migrations.AddField(
            model_name="taskattempt",
            name="outcome_rx",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="error_rx",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="operatoraction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("retry", "Retry"),
                    ("cancel", "Cancel"),
                    ("terminate", "Terminate"),
                    ("acknowledge", "Acknowledge incident"),
                    ("pause_queue", "Pause queue"),
                    ("resume_queue", "Resume queue"),
                    ("purge_queue", "Purge queue"),
                    ("clear_conflict", "Clear identity conflict"),
                ],
                max_length=16,
            ),
        ),
    ]
