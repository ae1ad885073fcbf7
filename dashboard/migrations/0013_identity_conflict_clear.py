"""A task's identity conflict can be cleared by an admin (the new permission and audit kind);
attempts and tasks keep which error event the monitor received first (error_rx, outcome_rx)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0012_api_token_expiry"),
    ]

    operations = [
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
