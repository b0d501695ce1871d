"""Production settings refuse to start without real secrets; with them, `check --deploy` passes.

Each case starts a fresh Python process with DJANGO_ENV=production, as a server would. Every variable a case
means to leave unset is given as empty, so a developer's `.env` cannot fill the gap.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

import config.settings as project_settings

BASE_DIR = Path(__file__).resolve().parents[2]
SECRETS = ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "BLIND_INDEX_KEY", "AUDIT_CHAIN_KEY")
DEV = project_settings._DEV_SECRETS
SETUP = [sys.executable, "-c", "import django; django.setup()"]


def generated_secrets(*args: str) -> dict[str, str]:
    """What `manage.py generate_keys` prints, as a dict."""
    out = io.StringIO()
    call_command("generate_keys", *args, stdout=out)
    return dict(
        line.split("=", 1) for line in out.getvalue().splitlines() if line and not line.startswith("#")
    )


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "production",
        "DEBUG": "false",
        "DATABASE_URL": "postgres://crm@db.internal:5432/crm",
        "CELERY_BROKER_URL": "redis://broker.internal:6379/0",
        "AUDIT_ANCHOR_PATH": "/var/lib/crm/audit-anchor.jsonl",
        "ANALYTICS_IMPORT_DIR": "/var/lib/crm/imports",
        "DISCLOSURE_PACKAGE_DIR": "/var/lib/crm/disclosure-packages",
        "ALLOWED_HOSTS": "crm.example.co.jp",
        "CSRF_TRUSTED_ORIGINS": "https://crm.example.co.jp",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECRET_KEY_FALLBACKS": "",
        **generated_secrets(),
    }
    env.update(overrides)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def refused(result: subprocess.CompletedProcess[str], message: str) -> bool:
    return result.returncode != 0 and "ImproperlyConfigured" in result.stderr and message in result.stderr


# --- generate_keys ----------------------------------------------------------------------------------------


def test_generate_keys_prints_fresh_valid_secrets():
    # when the command runs twice
    first, second = generated_secrets(), generated_secrets()
    # then it prints every secret production needs, usable as they are
    assert set(first) == set(SECRETS)
    Fernet(first["FIELD_ENCRYPTION_KEYS"].encode())  # a Fernet key
    assert len(first["SECRET_KEY"]) >= 50
    assert all(len(first[k]) >= 32 for k in ("BLIND_INDEX_KEY", "AUDIT_CHAIN_KEY"))
    # and no value needs quoting or would be read as a `$` reference by django-environ
    assert all(re.fullmatch(r"[A-Za-z0-9_=-]+", v) for v in first.values())
    # and every run gives new, independent values
    assert not set(first.values()) & set(second.values())
    assert len(set(first.values())) == len(SECRETS)


def test_generate_keys_field_key_prints_one_new_fernet_key():
    out = io.StringIO()
    call_command("generate_keys", "--field-key", stdout=out)
    key = out.getvalue().strip()
    Fernet(key.encode())
    assert "\n" not in key


# --- production starts with real secrets -------------------------------------------------------------------


def test_production_with_generated_secrets_starts_and_passes_the_deploy_check():
    # given every secret freshly generated and the production variables set
    env = production_env()
    # when Django starts, and the deploy check runs failing on warnings
    started = run(
        [
            *SETUP[:2],
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.PASSWORD_HASHERS[0])",
        ],
        env,
    )
    check = run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    # then both succeed, and Argon2 hashes passwords
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert check.returncode == 0, check.stderr + check.stdout
    assert "no issues" in check.stdout


def test_a_secret_starting_with_a_dollar_is_taken_literally():
    # given a secret that django-environ would read as a reference to another variable
    secret = "$" + generated_secrets()["SECRET_KEY"]
    env = production_env(SECRET_KEY=secret)
    # when the settings load
    result = run(
        [
            *SETUP[:2],
            "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)",
        ],
        env,
    )
    # then the value is the one given, not a silent default
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == secret


# --- production refuses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SECRETS)
def test_production_refuses_a_missing_secret(name):
    # when one secret is not set (empty, as an unset variable in an orchestrator often is)
    result = run(SETUP, production_env(**{name: ""}))
    # then start-up stops with a message naming it
    assert refused(result, f"{name} must be set in production")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("DATABASE_URL", "DATABASE_URL is not set"),
        ("CELERY_BROKER_URL", "CELERY_BROKER_URL must be set in production"),
        ("ALLOWED_HOSTS", "ALLOWED_HOSTS must list the real host names"),
        ("AUDIT_ANCHOR_PATH", "AUDIT_ANCHOR_PATH must be set in production"),
        ("ANALYTICS_IMPORT_DIR", "ANALYTICS_IMPORT_DIR must be set in production"),
        ("DISCLOSURE_PACKAGE_DIR", "DISCLOSURE_PACKAGE_DIR must be set in production"),
    ],
)
def test_production_refuses_missing_services_and_hosts(name, message):
    assert refused(run(SETUP, production_env(**{name: ""})), message)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", DEV["SECRET_KEY"]),
        ("FIELD_ENCRYPTION_KEYS", DEV["FIELD_ENCRYPTION_KEYS"]),
        # one development key hidden behind a real one
        (
            "FIELD_ENCRYPTION_KEYS",
            Fernet.generate_key().decode() + "," + DEV["FIELD_ENCRYPTION_KEYS"].split(",")[1],
        ),
        ("BLIND_INDEX_KEY", DEV["BLIND_INDEX_KEY"]),
        ("AUDIT_CHAIN_KEY", DEV["AUDIT_CHAIN_KEY"]),
        # a development value of another secret
        ("AUDIT_CHAIN_KEY", DEV["BLIND_INDEX_KEY"]),
        ("SECRET_KEY_FALLBACKS", DEV["SECRET_KEY"]),
    ],
    ids=["secret", "field-keys", "one-dev-field-key", "index", "audit", "audit-as-index", "fallback"],
)
def test_production_refuses_a_development_value(name, value):
    # when a development secret is reused in production
    result = run(SETUP, production_env(**{name: value}))
    # then start-up stops, naming the variable but not echoing the value
    assert refused(result, name)
    assert "development value" in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": "short-but-not-empty"}, "SECRET_KEY must be at least 50"),
        ({"SECRET_KEY": "django-insecure-" + "x1y2z3" * 10}, "SECRET_KEY must be at least 50"),
        (
            {"FIELD_ENCRYPTION_KEYS": "not-a-fernet-key-at-all"},
            "FIELD_ENCRYPTION_KEYS must be a comma-separated",
        ),
        ({"BLIND_INDEX_KEY": "too-short"}, "BLIND_INDEX_KEY must be at least 32"),
        (
            {
                "AUDIT_CHAIN_KEY": "same-key-for-both-0123456789abcdefghijklmnop",
                "BLIND_INDEX_KEY": "same-key-for-both-0123456789abcdefghijklmnop",
            },
            "must all differ",
        ),
        ({"DEBUG": "true"}, "DEBUG must be off in production"),
        ({"ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS must list the real host names"),
    ],
    ids=[
        "short-secret",
        "insecure-prefix",
        "malformed-fernet",
        "short-index-key",
        "shared-key",
        "debug",
        "any-host",
    ],
)
def test_production_refuses_unsafe_values(overrides, message):
    result = run(SETUP, production_env(**overrides))
    assert refused(result, message)
    # a refused key is never printed back
    for value in overrides.values():
        if value not in {"true", "*"}:
            assert value not in result.stderr


def test_development_runs_without_any_secret():
    # given a fresh checkout: development mode and no secret set
    env = production_env(DJANGO_ENV="development", DEBUG="", **dict.fromkeys(SECRETS, ""))
    # then Django starts with the marked development keys
    result = run(
        [
            *SETUP[:2],
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.SECRET_KEY.startswith('dev-insecure'))",
        ],
        env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


# --- .env.example ------------------------------------------------------------------------------------------


def variables_read_by(path: Path) -> set[str]:
    """Names passed to env.<cast>(…), _secret(…), os.environ.get(…) and os.environ[…] in a module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            is_env = (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "env"
            )
            is_secret = isinstance(func, ast.Name) and func.id == "_secret"
            is_environ_get = (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and ast.unparse(func.value) == "os.environ"
            )
            if is_env or is_secret or is_environ_get:
                target = node.args[0].value
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                target = node.slice.value
        if isinstance(target, str) and target.isupper():
            names.add(target)
    return names


def documented_variables() -> dict[str, tuple[str, str]]:
    """.env.example: NAME → (its value, the comment block above it)."""
    documented: dict[str, tuple[str, str]] = {}
    comment: list[str] = []
    for line in (BASE_DIR / ".env.example").read_text().splitlines():
        m = re.fullmatch(r"#?([A-Z][A-Z0-9_]*)=(.*)", line)
        if m:
            documented[m.group(1)] = (m.group(2), "\n".join(comment))
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        else:
            comment = []
    return documented


def test_env_example_lists_every_variable_the_settings_read_with_its_meaning():
    # given every variable config/settings.py (and ./dev's launcher) reads
    read = variables_read_by(BASE_DIR / "config" / "settings.py")
    read |= variables_read_by(BASE_DIR / "config" / "launcher.py")
    assert {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL", "DEBUG"} <= read  # the parser works
    documented = documented_variables()
    # then each is in .env.example, explained, and nothing listed there is read by nobody
    assert read - set(documented) == set()
    assert set(documented) - read == set()
    for name, (_value, comment) in documented.items():
        assert name in comment and len(comment) > len(name) + 20, f"{name} has no explanation"
    # and the secrets carry no example value someone could deploy by copying the file
    assert all(documented[name][0] == "" for name in (*SECRETS, "SECRET_KEY_FALLBACKS"))
