"""The application the benchmark's gunicorn serves: `responseportal.wsgi`, its static files
served from the apps as in the rest of the benchmark (see `STATIC_WITHOUT_MANIFEST`)."""

import os

from django.conf import settings

from benchmarks import static_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "responseportal.settings")
for name, value in static_settings(settings.STORAGES).items():
    setattr(settings, name, value)

from responseportal.wsgi import application  # noqa: E402

__all__ = ["application"]
