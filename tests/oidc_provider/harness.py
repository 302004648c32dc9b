"""Starts the test OpenID Connect provider (this folder's Django project) on a free loopback
port, with an RS256 key generated for the run, and drives its sign-in page over HTTP."""

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "provider-password"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rsa_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Provider:
    issuer: str
    environment: dict
    process: subprocess.Popen | None = None
    folder: tempfile.TemporaryDirectory | None = None
    log: Path | None = None
    users: dict = field(default_factory=dict)

    def manage(self, *args: str, stdin: str = "") -> None:
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=REPO,
            env=self.environment,
            timeout=120,
        )
        if result.returncode:
            raise RuntimeError(f"provider {args}: {result.stdout}\n{result.stderr}")

    def setup(self, *, users=(), clients=()) -> None:
        for user in users:
            self.users[user["username"]] = user
        document = {
            "users": [{"password": PASSWORD, **user} for user in users],
            "clients": list(clients),
        }
        self.manage("provider_setup", stdin=json.dumps(document))

    def set_groups(self, username: str, groups: list[str]) -> None:
        self.setup(users=[{**self.users[username], "groups": groups}])

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        if self.folder is not None:
            self.folder.cleanup()


def start_provider() -> Provider:
    """The provider, migrated and serving; stop() it when done."""
    port = _free_port()
    folder = tempfile.TemporaryDirectory(prefix="oidc-provider-")
    issuer = f"http://127.0.0.1:{port}/o"
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "DATABASE_", "PYTEST_"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="tests.oidc_provider.settings",
        OIDC_PROVIDER_SECRET_KEY=secrets.token_urlsafe(40),
        OIDC_PROVIDER_DB=str(Path(folder.name) / "provider.sqlite3"),
        OIDC_PROVIDER_RSA_KEY=_rsa_key(),
        OIDC_PROVIDER_ISSUER=issuer,
        PYTHONPATH=str(REPO),
    )
    provider = Provider(issuer=issuer, environment=environment, folder=folder)
    provider.manage("migrate", "--run-syncdb", "--noinput")
    provider.log = Path(folder.name) / "server.log"
    with provider.log.open("w") as log:
        provider.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "tests.oidc_provider.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            cwd=REPO,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
            if answer.ok:
                return provider
        except requests.RequestException:  # not listening yet, or still starting
            pass
        if provider.process.poll() is not None or time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"The test provider did not start:\n{provider.log.read_text()}")
        time.sleep(0.2)


def sign_in_at_provider(authorize_url: str, username: str) -> str:
    """Follow the portal's redirect to the provider as a browser would: its sign-in page,
    then the authorization endpoint. Returns the URL the provider sends the browser back to."""
    browser = requests.Session()
    answer = browser.get(authorize_url, allow_redirects=True, timeout=10)
    assert "/login/" in answer.url, answer.url
    token = browser.cookies["csrftoken"]
    answer = browser.post(
        answer.url,
        data={
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": PASSWORD,
            "next": parse_qs(urlsplit(answer.url).query).get("next", [""])[0],
        },
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text[:500]
    location = urljoin(answer.url, answer.headers["Location"])
    answer = browser.get(location, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]
