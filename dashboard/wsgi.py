import os

from django.core.wsgi import get_wsgi_application

from tasktrail.tracing.setup import setup as setup_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
# Before the handler loads its middleware: Django's instrumentation adds one (OTEL_* variables;
# nothing happens when tracing is off). Also what `manage.py runserver` loads.
setup_tracing("web")
application = get_wsgi_application()
