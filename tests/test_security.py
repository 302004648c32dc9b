"""Headers, deploy checks, sign-in lockout, session lifetime and escaping of free text."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from approvals import services
from approvals.models import ActionRequest
from audit.models import AuditEvent

from .approvals_helpers import submit
from .conftest import client_for
from .factories import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
MARKUP = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
ESCAPED = (
    "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"
)


class TestHeaders:
    @pytest.mark.django_db
    def test_pages_carry_a_strict_policy_and_the_usual_headers(self, admin):
        response = client_for(admin).get(reverse("org_dashboard", args=["acme"]))
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert re.search(r"script-src 'self'(;|$)", policy)
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Content-Type-Options"] == "nosniff"

    def test_no_template_carries_inline_script(self):
        for template in (ROOT / "templates").rglob("*.html"):
            text = template.read_text()
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
            assert not re.search(r"\son[a-z]+\s*=", text), template

    def test_check_deploy_is_clean_under_production_settings(self):
        keep = {"PATH", "HOME", "LANG"}
        env = {name: value for name, value in os.environ.items() if name in keep}
        env.update(
            DJANGO_SETTINGS_MODULE="responseportal.settings",
            SECRET_KEY="a-production-like-secret-" + "x7Qz9" * 10,
            ALLOWED_HOSTS="portal.example.com",
            DATABASE_URL="postgres://portal@db.example.com:5432/portal",
            CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        )
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no issues" in result.stdout


@pytest.mark.django_db
class TestLockout:
    def fail(self, client, username="operator", address="203.0.113.7"):
        return client.post(
            reverse("login"),
            {"username": username, "password": "wrong-password"},
            REMOTE_ADDR=address,
        )

    def test_five_failures_lock_the_username_from_that_address(self, operator):
        client = Client()
        for _ in range(4):
            assert self.fail(client).status_code == 200
        locked = self.fail(client)
        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.content.decode()
        right = client.post(
            reverse("login"),
            {"username": "operator", "password": PASSWORD},
            REMOTE_ADDR="203.0.113.7",
        )
        assert right.status_code == 429
        assert "_auth_user_id" not in client.session
        events = AuditEvent.objects.filter(verb="auth.locked_out")
        assert events.exists()
        assert events.first().data == {"username": "operator", "ip_address": "203.0.113.7"}

    def test_another_address_or_username_is_not_locked(self, operator, admin):
        client = Client()
        for _ in range(5):
            self.fail(client)
        elsewhere = Client().post(
            reverse("login"),
            {"username": "operator", "password": PASSWORD},
            REMOTE_ADDR="198.51.100.9",
        )
        assert elsewhere.status_code == 302
        other_user = Client().post(
            reverse("login"),
            {"username": "acme-admin", "password": PASSWORD},
            REMOTE_ADDR="203.0.113.7",
        )
        assert other_user.status_code == 302

    def test_the_lock_ends_after_the_cool_off(self, operator, settings):
        client = Client()
        for _ in range(5):
            self.fail(client)
        AccessAttempt.objects.update(
            attempt_time=AccessAttempt.objects.get().attempt_time.replace(year=2000)
        )
        response = client.post(
            reverse("login"),
            {"username": "operator", "password": PASSWORD},
            REMOTE_ADDR="203.0.113.7",
        )
        assert response.status_code == 302

    def test_the_demo_users_are_locked_out_too(self, settings):
        from django.core.management import call_command

        call_command("seed_demo", force=True, verbosity=0)
        client = Client()
        for _ in range(5):
            self.fail(client, username="acme-admin")
        response = client.post(
            reverse("login"),
            {"username": "acme-admin", "password": "demo-password"},
            REMOTE_ADDR="203.0.113.7",
        )
        assert response.status_code == 429


@pytest.mark.django_db
def test_a_session_ends_after_the_idle_time(operator, settings):
    client = client_for(operator)
    client.get(reverse("catalog"))
    assert client.session.get_expiry_age() == settings.SESSION_COOKIE_AGE == 30 * 60


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cookie,shown", [("Europe%2FParis", "Europe/Paris"), ("Not/AZone", "UTC"), ("", "UTC")]
)
def test_times_are_shown_in_the_browsers_time_zone(operator, cookie, shown):
    client = client_for(operator)
    client.cookies["tz"] = cookie
    html = client.get(reverse("catalog")).content.decode()
    assert f"Times are shown in {shown}." in html


@pytest.mark.django_db
def test_free_text_is_escaped_on_every_page(acme, operator, admin, auditor):
    operator_client = client_for(operator)
    for key, data in {
        "isolate_endpoint": {"endpoints": "web-01", "description": MARKUP},
        "start_remote_shell": {"endpoints": "web-02", "reason": MARKUP},
        "deploy_tippingpoint_filter": {"cve_ids": "CVE-2026-1234", "sms_profile": MARKUP[:100]},
    }.items():
        response = operator_client.post(
            reverse("new_request", args=["acme", key]),
            {"submission_token": str(uuid.uuid4()), **data},
        )
        assert response.status_code == 302, (key, response.content.decode()[:3000])
    operator_client.post(
        reverse("script_library", args=["acme"]),
        {"name": MARKUP, "file": SimpleUploadedFile("collect.ps1", b"Get-Process\n")},
    )
    rejected = submit(acme, operator, endpoints=["web-03"])
    services.reject_request(rejected.pk, actor=admin, reason=MARKUP)
    pages = [
        reverse("org_dashboard", args=["acme"]),
        reverse("request_list", args=["acme"]),
        reverse("queue", args=["acme"]) + "?status=all",
        reverse("script_library", args=["acme"]),
        reverse("audit_log", args=["acme"]),
        *[reverse("request_detail", args=["acme", r.uuid]) for r in ActionRequest.objects.all()],
        *[
            reverse("audit_event", args=["acme", e.pk])
            for e in AuditEvent.objects.filter(verb__in=["request.submitted", "request.rejected"])
        ],
    ]
    shown = 0
    for page in pages:
        viewer = client_for(auditor) if "queue" not in page else client_for(admin)
        html = viewer.get(page).content.decode()
        assert MARKUP not in html, page
        assert "<img src=x" not in html, page
        shown += ESCAPED in html or "&lt;script&gt;" in html
    # The requests list shows no descriptions, and the request submitted through the service
    # layer carries none; the dashboard and the audit log name the uploaded script in their
    # sentences ("operator uploaded the script …"): every other page shows it.
    assert shown == len(pages) - 2


@pytest.mark.django_db
def test_passwords_need_twelve_characters():
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="at least 12 characters"):
        validate_password("Xq7#mv2!Lp9")
    validate_password("Xq7#mv2!Lp9z")
