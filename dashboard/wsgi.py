import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from tasktrail.tracing.setup import setup as setup_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
# A server started without `tasktrail web` (gunicorn dashboard.wsgi) refuses too: pages without the
# stream's Redis would show nothing live.
if not settings.REDIS_URL:
    from dashboard.cli import NO_STREAM_MESSAGE

    raise ImproperlyConfigured(NO_STREAM_MESSAGE)
# Before the handler loads its middleware: Django's instrumentation adds one (OTEL_* variables;
# nothing happens when tracing is off). Also what `manage.py runserver` loads.
setup_tracing("web")
application = get_wsgi_application()
