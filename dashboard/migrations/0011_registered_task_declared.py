from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0010_queue_waiting_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="registeredtask",
            name="declared_retryable",
            field=models.BooleanField(
                default=False, help_text="True when the task sets tasktrail_retryable = True itself."
            ),
        ),
        migrations.AddField(
            model_name="registeredtask",
            name="arg_names",
            field=models.TextField(
                blank=True,
                help_text="Comma-separated names of the positional parameters, from the task's code.",
                null=True,
            ),
        ),
    ]
