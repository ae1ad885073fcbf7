from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "tasktrail"

    def ready(self) -> None:
        # Load the Celery app (and its recorder) in every Django process, so a task published from
        # a web request is recorded.
        import workers.celery_app  # noqa: F401
