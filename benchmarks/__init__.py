"""The benchmark behind `make bench` (`python -m benchmarks [--quick] [--keep]`).

Not a Django app and imported by nothing: `__main__` sets Django up, then runs `command`.

`data` seeds a database of its own, `figures` measures it, `report` turns the figures into a
table and `bench-results.json`, `processes` starts and always stops the processes it needs
(Celery worker, gunicorn, helpers), and `wsgi` is the application gunicorn serves.
"""

# Pages link their static files through `{% static %}`; with DEBUG off that needs the manifest
# of a `collectstatic` run. Like the test suite, the benchmark serves them from the apps
# instead, so it writes nothing into the project folder.
STATIC_WITHOUT_MANIFEST = {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
}


def static_settings(storages: dict) -> dict:
    """The settings overrides that let a process render pages without a collectstatic run."""
    return {
        "STORAGES": {**storages, "staticfiles": STATIC_WITHOUT_MANIFEST},
        "WHITENOISE_USE_FINDERS": True,
    }
