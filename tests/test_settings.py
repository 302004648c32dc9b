"""The settings module, loaded in a fresh interpreter with a controlled environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRINT_SETTINGS = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.DATABASES['default']['ENGINE'], settings.DEBUG, settings.ALLOWED_HOSTS, "
    "settings.CELERY_TASK_ALWAYS_EAGER)"
)


def load_settings(**env: str) -> subprocess.CompletedProcess:
    keep = {"PATH", "HOME", "LANG", "SYSTEMROOT"}
    environment = {name: value for name, value in os.environ.items() if name in keep}
    environment.update(DJANGO_SETTINGS_MODULE="responseportal.settings", **env)
    return subprocess.run(
        [sys.executable, "-c", PRINT_SETTINGS],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_to_start_without_secret_key_when_debug_is_off():
    result = load_settings(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "DEBUG=true" in result.stderr


def test_debug_off_is_the_default():
    result = load_settings()
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_on_starts_with_the_embedded_default():
    result = load_settings(DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["django.db.backends.sqlite3", "True"]
    assert result.stdout.strip().endswith("True")  # tasks run in-process without a broker


def test_production_environment_is_read():
    result = load_settings(
        SECRET_KEY="x" * 60,
        ALLOWED_HOSTS="portal.example.com, other.example.com",
        DATABASE_URL="postgres://portal@db.example.com:5432/portal",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "django.db.backends.postgresql False ['portal.example.com', 'other.example.com'] False"
    )


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_malformed_boolean_is_named(value):
    result = load_settings(DEBUG=value)
    assert result.returncode != 0
    assert f"DEBUG={value!r} is not a boolean" in result.stderr


@pytest.mark.django_db
def test_bootstrap_is_served_from_the_installed_package(client):
    response = client.get("/static/bootstrap/css/bootstrap.min.css")
    assert response.status_code == 200
    assert b"Bootstrap" in b"".join(response.streaming_content)[:400]


@pytest.mark.parametrize("size", ["0", "-5", "1001", "ten"])
def test_a_batch_size_out_of_range_or_not_a_number_is_refused_at_start(size):
    result = load_settings(DEBUG="true", EXECUTION_BATCH_SIZE=size)
    assert result.returncode != 0
    expected = "is not a whole number" if size == "ten" else "expected 1 to 1000 requests"
    assert f"EXECUTION_BATCH_SIZE={size}" in result.stderr.replace("'", "")
    assert expected in result.stderr


def test_a_batch_size_in_range_is_taken():
    result = load_settings(DEBUG="true", EXECUTION_BATCH_SIZE="1000")
    assert result.returncode == 0, result.stderr
