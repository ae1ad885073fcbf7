from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0011_registered_task_declared"),
    ]

    operations = [
        migrations.AddField(
            model_name="taskrun",
            name="name_key",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="call_key",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="identity_conflict_key",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="identity_conflict_field",
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="identity_conflict",
            field=models.TextField(
                blank=True,
                help_text="What the disagreeing event said (cut to 500 characters).",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="taskrun",
            name="times_clamped",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "An event's time was too far from when the monitor received it and was "
                    "replaced."
                ),
            ),
        ),
    ]
