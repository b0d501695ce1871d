"""Field encryption, key rotation, the start-up canary and blind-index search.

Keys are generated per test (Fernet.generate_key); the development keys from config/settings.py encrypt the
data that the standing fixtures create.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.checks import Error
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connection
from django.test import override_settings

from crm.checks import CANARY_VALUE, EncryptionKeyError, encryption_keys_check, verify_encryption_canary
from crm.crypto import (
    DecryptionError,
    KeyConfigurationError,
    UnboundTokenError,
    decrypt_str,
    email_index,
    encrypt_str,
    name_index,
    phone_index,
    rotate_token,
    token_key_index,
)
from crm.fields import _EncryptedMixin
from crm.management.commands.rotate_keys import encrypted_models
from crm.models import AuditEntry, Customer, EncryptionCanary
from crm.search_token import open_search, seal_search
from crm.selectors import customer_list
from tests.factories import CustomerFactory
from tests.services import service_env

BASE_DIR = Path(__file__).resolve().parents[2]

# One clear value per encrypted Customer field, in the form the service stores it.
CLEAR_VALUES: dict[str, Any] = {
    "family_name": "山田",
    "given_name": "太郎",
    "family_name_kana": "ヤマダ",
    "given_name_kana": "タロウ",
    "email": "taro@example.com",
    "phone": "+819012345678",
    "postal_code": "100-0005",
    "address": "東京都千代田区丸の内1-1-1",
    "birth_date": dt.date(1985, 4, 1),
    "app_user_id": "app-user-42",
    "device_id": "device-7f3a",
    "pos_card_no": "PC-0001-2345",
    "notes": "平日夕方に電話希望",
    "acquisition_note": "2026年春の展示会で名刺交換",
}


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def encrypted_columns(model: type) -> list[Any]:
    return [f for f in model._meta.concrete_fields if isinstance(f, _EncryptedMixin)]


def raw_tokens(model: type, pk: Any) -> dict[str, Any]:
    """What PostgreSQL holds in the encrypted columns of one row, read past the ORM."""
    qn = connection.ops.quote_name
    fields = encrypted_columns(model)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(qn(f.column) for f in fields)} FROM {qn(model._meta.db_table)} "
            f"WHERE {qn(model._meta.pk.column)} = %s",
            [pk],
        )
        row = cur.fetchone()
    return dict(zip([f.name for f in fields], row, strict=True))


def all_raw_tokens() -> dict[tuple[str, Any, str], str]:
    """(model label, pk, field) → token, for every non-empty encrypted value of every model."""
    out = {}
    for model, _fields in encrypted_models():
        for pk in model._default_manager.values_list("pk", flat=True):
            for name, token in raw_tokens(model, pk).items():
                if token:
                    out[(model._meta.label, pk, name)] = token
    return out


def full_customer(team: Any, **overrides: Any) -> Customer:
    return CustomerFactory(team=team, **{**CLEAR_VALUES, "member_no": None, **overrides})


def canary_under_current_keys() -> None:
    """Write the canary under the keys now configured (the test database holds it under the dev keys)."""
    EncryptionCanary.objects.filter(pk=1).update(token=CANARY_VALUE)


# --- round trip and storage ------------------------------------------------------------------------------


def test_every_encrypted_customer_field_is_covered_here():
    # given the encrypted fields the model declares
    declared = {f.name for f in encrypted_columns(Customer)}
    # then this test file exercises each of them (a new encrypted field must be added to CLEAR_VALUES)
    assert declared == set(CLEAR_VALUES)


@pytest.mark.django_db
@pytest.mark.parametrize("field", sorted(CLEAR_VALUES))
def test_encrypted_field_round_trip_and_ciphertext_at_rest(team, field):
    # given a customer saved through the service with every encrypted field filled in
    customer = full_customer(team)
    clear = CLEAR_VALUES[field]
    # when the row is read back through the ORM and, separately, straight from the column
    fresh = Customer.objects.get(pk=customer.pk)
    raw = raw_tokens(Customer, customer.pk)[field]
    # then the ORM gives the clear value back, while the column holds an AES-256-GCM token, not the value
    assert getattr(fresh, field) == clear
    serialised = clear.isoformat() if isinstance(clear, dt.date) else clear
    assert raw != serialised
    assert serialised not in raw
    assert base64.urlsafe_b64decode(raw)[:1] == b"\x03"  # format version 3: AES-256-GCM bound to the column
    assert decrypt_str(raw, bound_to=f"crm.Customer.{field}") == serialised


@pytest.mark.django_db
def test_same_value_encrypts_differently_each_time(team):
    # given two customers with the same e-mail address
    a = full_customer(team, email="same@example.com")
    b = full_customer(team, email="same@example.com")
    # then the tokens differ (no equality leak through the ciphertext) while the blind index matches
    assert raw_tokens(Customer, a.pk)["email"] != raw_tokens(Customer, b.pk)["email"]
    assert a.email_bidx == b.email_bidx


@pytest.mark.django_db
def test_empty_values_are_stored_empty_not_encrypted(team):
    # given a customer without birth date or notes
    customer = full_customer(team, birth_date=None, notes="")
    # when the raw columns are read
    raw = raw_tokens(Customer, customer.pk)
    # then NULL stays NULL and an empty text stays empty
    assert raw["birth_date"] is None
    assert raw["notes"] == ""
    fresh = Customer.objects.get(pk=customer.pk)
    assert fresh.birth_date is None
    assert fresh.notes == ""


@pytest.mark.django_db
def test_encrypted_fields_refuse_lookups_other_than_isnull(customer):
    # when a query compares ciphertext
    # then it is refused: exact search goes through the blind indexes
    with pytest.raises(TypeError, match="blind index"):
        Customer.objects.filter(email="taro.yamada@example.com").count()
    assert Customer.objects.filter(birth_date__isnull=True, pk=customer.pk).count() == 1


# --- wrong and malformed keys -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reading_with_a_wrong_key_raises_and_never_returns_ciphertext(customer):
    # given a customer encrypted under the development keys, and the raw tokens of its row
    tokens = [t for t in raw_tokens(Customer, customer.pk).values() if t]
    # when the keys are replaced by another valid Fernet key
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key()]):
        # then every read path raises instead of handing back the token as if it were data
        with pytest.raises(DecryptionError) as exc_info:
            Customer.objects.get(pk=customer.pk)
        with pytest.raises(DecryptionError):
            list(Customer.objects.filter(pk=customer.pk).values_list("email", flat=True))
        with pytest.raises(DecryptionError):
            decrypt_str(raw_tokens(Customer, customer.pk)["family_name"], bound_to="crm.Customer.family_name")
    # and the error names the column but carries neither the token nor the value
    message = f"{exc_info.value} {exc_info.value!r}"
    assert "crm.Customer." in message
    assert not any(token in message for token in tokens)
    assert "山田" not in message


@pytest.mark.django_db
def test_wrong_key_fails_the_canary_and_the_system_check(customer):
    # given the database written under the development keys
    assert encryption_keys_check(databases=["default"]) == []
    # when another valid key is configured
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key()]):
        # then the canary refuses, and `check --database default` reports crm.E001
        with pytest.raises(EncryptionKeyError):
            verify_encryption_canary()
        errors = encryption_keys_check(databases=["default"])
        assert [(type(e), e.id) for e in errors] == [(Error, "crm.E001")]
        with pytest.raises(SystemCheckError, match=r"crm\.E001"):
            call_command("check", databases=["default"], stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
def test_canary_check_runs_only_with_a_database():
    # given a wrong key
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key()]):
        # then a check without --database (e.g. `check --deploy` on a build machine) does not touch the DB
        assert encryption_keys_check(databases=None) == []


@pytest.mark.django_db
def test_old_key_listed_after_the_new_one_still_opens_the_data(customer):
    # given a rotation in progress: a new key first, the development keys after it
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key(), *settings.FIELD_ENCRYPTION_KEYS]):
        # then the canary passes and the data reads
        verify_encryption_canary()
        assert Customer.objects.get(pk=customer.pk).family_name == "山田"


@pytest.mark.django_db
@pytest.mark.parametrize("bad", [["not-a-fernet-key"], ["c2hvcnQ="], []])
def test_malformed_key_raises_key_configuration_error(customer, bad):
    # when FIELD_ENCRYPTION_KEYS holds something that is not a Fernet key (or nothing)
    with override_settings(FIELD_ENCRYPTION_KEYS=bad):
        # then encryption refuses with KeyConfigurationError, without echoing the value
        with pytest.raises(KeyConfigurationError) as exc_info:
            encrypt_str("山田", bound_to="crm.Customer.family_name")
        assert not any(b in str(exc_info.value) for b in bad)
        # and start-up refuses too
        with pytest.raises(EncryptionKeyError) as start:
            verify_encryption_canary()
        assert isinstance(start.value.__cause__, KeyConfigurationError)
        assert [e.id for e in encryption_keys_check(databases=["default"])] == ["crm.E001"]


@pytest.mark.django_db
def test_missing_canary_row_does_not_turn_the_check_into_a_pass(customer):
    # given a database whose canary row is gone (a flushed database) but which holds customers
    EncryptionCanary.objects.all().delete()
    # when the keys are wrong
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key()]):
        # then a stored customer stands in for the canary
        with pytest.raises(EncryptionKeyError):
            verify_encryption_canary()


# --- start-up refuses a wrong key: real processes ---------------------------------------------------------


def _process_env(**overrides: str) -> dict[str, str]:
    return service_env(**overrides)


def _run(args: list[str], **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=BASE_DIR, env=_process_env(**overrides), capture_output=True, text=True, timeout=120
    )


@pytest.mark.django_db
@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi"])
def test_server_entry_point_refuses_a_wrong_key_and_accepts_the_right_one(module):
    # given the test database, whose canary was written under the development keys
    # when the WSGI/ASGI module is imported (as gunicorn does) with another key, then with the configured keys
    wrong = _run([sys.executable, "-c", f"import {module}"], FIELD_ENCRYPTION_KEYS=new_key())
    right = _run([sys.executable, "-c", f"import {module}"])
    # then the first refuses to start, loudly, and the second starts
    assert wrong.returncode != 0
    assert "EncryptionKeyError" in wrong.stderr
    assert right.returncode == 0, right.stderr


@pytest.mark.django_db
def test_manage_check_database_refuses_a_wrong_key():
    # when `manage.py check --database default` runs with another key
    result = _run(
        [sys.executable, "manage.py", "check", "--database", "default"], FIELD_ENCRYPTION_KEYS=new_key()
    )
    # then it fails with crm.E001
    assert result.returncode != 0
    assert "crm.E001" in result.stderr


@pytest.mark.django_db
def test_celery_hooks_exit_with_a_wrong_key(monkeypatch):
    from django.db import connections

    from config.celery import EX_CONFIG, _check_keys, _check_keys_main

    # (the hooks close the connections a forked pool process would inherit; here that is the test's own)
    monkeypatch.setattr(connections, "close_all", lambda: None)

    # given a wrong key
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key()]):
        # when the worker's main process and a pool process start
        # then both exit (SystemExit: Celery's signal dispatch swallows ordinary exceptions)
        for hook in (_check_keys_main, _check_keys):
            with pytest.raises(SystemExit) as exc_info:
                hook()
            assert exc_info.value.code == EX_CONFIG


@pytest.mark.worker
@pytest.mark.django_db
def test_real_celery_worker_refuses_a_wrong_key_and_starts_with_the_right_one(tmp_path):
    # given the test database and the real broker
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-c",
        "1",
        "-l",
        "info",
        "--without-mingle",
    ]
    # when a worker starts with another key
    wrong = _run(cmd, FIELD_ENCRYPTION_KEYS=new_key())
    # then it exits before consuming anything, saying why
    assert wrong.returncode == 78
    assert "refuses to start" in wrong.stderr
    # when a worker (prefork, one pool process) starts with the configured keys
    log_path = Path(tmp_path) / "worker.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=BASE_DIR, env=_process_env(), stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and "ready." not in log_path.read_text():
            time.sleep(0.5)
        log = log_path.read_text()
        # then it comes up, and neither the main nor the pool process refused
        assert "ready." in log, log
        assert "refuses" not in log
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- rotation ---------------------------------------------------------------------------------------------


def test_rotate_keys_discovers_every_encrypted_column():
    # when the command looks for encrypted columns
    found = {model._meta.label: {f.name for f in fields} for model, fields in encrypted_models()}
    # then it finds the customer's and the canary's (and any model added later with such a field)
    assert found["crm.Customer"] == set(CLEAR_VALUES)
    assert found["crm.EncryptionCanary"] == {"token"}


@pytest.mark.django_db
def test_rotate_keys_reencrypts_everything_under_the_new_key(team):
    old, new = new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        # given five customers and the canary encrypted under the old key alone
        canary_under_current_keys()
        customers = [full_customer(team, email=f"c{i}@example.com") for i in range(5)]
    before = {
        c.pk: Customer.objects.filter(pk=c.pk).values("email_bidx", "name_bidx", "updated_at")[0]
        for c in customers
    }
    audit_before = AuditEntry.objects.count()
    # when the new key is put first and rotate_keys runs in batches of two
    out = io.StringIO()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        call_command("rotate_keys", batch_size=2, stdout=out)
    # then every token of every model opens with the new key alone
    tokens = all_raw_tokens()
    assert len(tokens) == 5 * len(CLEAR_VALUES) + 1
    for (label, _pk, name), token in tokens.items():
        with override_settings(FIELD_ENCRYPTION_KEYS=[new]):
            decrypt_str(token, bound_to=f"{label}.{name}")  # raises DecryptionError if not
        with override_settings(FIELD_ENCRYPTION_KEYS=[old]), pytest.raises(DecryptionError):
            decrypt_str(token, bound_to=f"{label}.{name}")
    # and with only the new key configured, the data and the canary read as before
    with override_settings(FIELD_ENCRYPTION_KEYS=[new]):
        verify_encryption_canary()
        for c in customers:
            fresh = Customer.objects.get(pk=c.pk)
            assert {f: getattr(fresh, f) for f in CLEAR_VALUES if f != "email"} == {
                f: v for f, v in CLEAR_VALUES.items() if f != "email"
            }
    # and nothing else changed: blind indexes and updated_at are those of before (no ORM save)
    after = {
        c.pk: Customer.objects.filter(pk=c.pk).values("email_bidx", "name_bidx", "updated_at")[0]
        for c in customers
    }
    assert after == before
    # and the table was walked in batches (3 batches of customers) with a per-key summary
    text = out.getvalue()
    assert text.count("crm.Customer: ") >= 3
    assert f"{5 * len(CLEAR_VALUES) + 1:,} 件を鍵 #0" in text
    # and exactly one audit entry was written, with counts and no personal value
    entries = list(AuditEntry.objects.order_by("pk")[audit_before:])
    assert len(entries) == 1
    entry = entries[0]
    assert entry.object_pk == "rotate_keys"
    assert entry.action == AuditEntry.Action.UPDATE
    assert entry.additional_data["models"]["crm.Customer"]["rotated"] == 5 * len(CLEAR_VALUES)
    assert entry.additional_data["models"]["crm.Customer"]["tokens_by_key"] == {"1": 5 * len(CLEAR_VALUES)}
    dumped = json.dumps(
        [entry.changes, entry.changes_text, entry.additional_data, entry.object_repr], ensure_ascii=False
    )
    assert not any(
        str(v) in dumped for v in ("山田", "taro@example.com", "+819012345678", "丸の内", "1985-04-01")
    )
    assert new not in dumped
    assert old not in dumped


@pytest.mark.django_db
def test_rotate_keys_is_idempotent_and_counts_tokens_already_current(team):
    old, new = new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        canary_under_current_keys()
        full_customer(team)
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        call_command("rotate_keys", stdout=io.StringIO())
        rotated_once = all_raw_tokens()
        # when it runs a second time
        out = io.StringIO()
        call_command("rotate_keys", stdout=out)
    # then nothing is rewritten, and every token is counted under the newest key
    assert all_raw_tokens() == rotated_once
    assert "完了: 0 件を鍵 #0" in out.getvalue()
    entry = AuditEntry.objects.filter(object_pk="rotate_keys").order_by("-pk").first()
    assert entry.additional_data["models"]["crm.Customer"]["rotated"] == 0
    assert entry.additional_data["models"]["crm.Customer"]["tokens_by_key"] == {"0": len(CLEAR_VALUES)}


@pytest.mark.django_db
def test_rotate_keys_resumes_after_a_crash(team, monkeypatch):
    from crm.management.commands import rotate_keys

    old, new = new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        canary_under_current_keys()
        customers = [full_customer(team, email=f"r{i}@example.com") for i in range(4)]
    real = rotate_keys.reencrypt_token
    calls = {"n": 0}

    def crash_in_second_batch(token: str, *, bound_to: str) -> tuple[int | None, str | None]:
        calls["n"] += 1
        if calls["n"] > 2 * len(CLEAR_VALUES):  # the first batch (two rows) goes through
            raise RuntimeError("worker killed")
        return real(token, bound_to=bound_to)

    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        # given a run that dies in its second batch
        monkeypatch.setattr(rotate_keys, "reencrypt_token", crash_in_second_batch)
        with pytest.raises(RuntimeError):
            call_command("rotate_keys", batch_size=2, stdout=io.StringIO())
        # then the first batch is done and the second was rolled back as a whole
        done = [token_key_index(t, bound_to=f"crm.Customer.{n}") for n, t in row_tokens(customers[0])]
        undone = [token_key_index(t, bound_to=f"crm.Customer.{n}") for n, t in row_tokens(customers[2])]
        assert set(done) == {0}
        assert set(undone) == {1}
        # when it runs again
        monkeypatch.setattr(rotate_keys, "reencrypt_token", real)
        out = io.StringIO()
        call_command("rotate_keys", batch_size=2, stdout=out)
    # then it finishes the rest, counting the rows done before as already current
    assert {token_key_index_under([new], t, f"{m}.{n}") for (m, _, n), t in all_raw_tokens().items()} == {0}
    entry = AuditEntry.objects.filter(object_pk="rotate_keys").order_by("-pk").first()
    counts = entry.additional_data["models"]["crm.Customer"]["tokens_by_key"]
    assert counts == {"0": 2 * len(CLEAR_VALUES), "1": 2 * len(CLEAR_VALUES)}


def token_key_index_under(keys: list[str], token: str, bound_to: str) -> int | None:
    with override_settings(FIELD_ENCRYPTION_KEYS=keys):
        return token_key_index(token, bound_to=bound_to)


def row_tokens(customer: Customer) -> list[tuple[str, str]]:
    """(field name, token) of a customer's non-empty encrypted columns."""
    return [(n, t) for n, t in raw_tokens(Customer, customer.pk).items() if t]


@pytest.mark.django_db
def test_rotate_keys_dry_run_counts_per_key_and_changes_nothing(team):
    old, new = new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        canary_under_current_keys()
        full_customer(team, birth_date=None)
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        full_customer(team, email="newer@example.com")  # written after the new key went live
        before = all_raw_tokens()
        # when the dry run counts
        out = io.StringIO()
        call_command("rotate_keys", dry_run=True, stdout=out)
        # and a sampled dry run looks at a few rows only
        sampled = io.StringIO()
        call_command("rotate_keys", dry_run=True, sample=1, stdout=sampled)
    # then nothing changed, and the tokens are counted under each key
    assert all_raw_tokens() == before
    n = len(CLEAR_VALUES)
    assert "鍵 #1 [" in out.getvalue()
    entry = AuditEntry.objects.filter(object_pk="rotate_keys").order_by("-pk")[1]
    assert entry.action == AuditEntry.Action.ACCESS
    assert entry.additional_data["dry_run"] is True
    assert entry.additional_data["models"]["crm.Customer"]["tokens_by_key"] == {"0": n, "1": n - 1}
    assert entry.additional_data["models"]["crm.EncryptionCanary"]["tokens_by_key"] == {"1": 1}
    assert "標本 1 行" in sampled.getvalue()


@pytest.mark.django_db
def test_rotate_keys_reports_tokens_no_key_opens_and_fails(team):
    old, new, lost = new_key(), new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        canary_under_current_keys()
        good = full_customer(team)
    with override_settings(FIELD_ENCRYPTION_KEYS=[lost]):
        orphan = full_customer(team, email="orphan@example.com")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        # when one customer was written under a key that is no longer configured
        out = io.StringIO()
        with pytest.raises(CommandError, match="開けないトークン"):
            call_command("rotate_keys", stdout=out)
    # then the readable rows were still rotated, and the unreadable one is named by id, not by value
    assert {token_key_index_under([new], t, f"crm.Customer.{n}") for n, t in row_tokens(good)} == {0}
    assert f"主キー {orphan.pk}" in out.getvalue()
    assert "orphan@example.com" not in out.getvalue()
    entry = AuditEntry.objects.filter(object_pk="rotate_keys").order_by("-pk").first()
    assert entry.additional_data["models"]["crm.Customer"]["unreadable"] == len(CLEAR_VALUES)


@pytest.mark.django_db
def test_rotate_keys_refuses_to_start_when_the_keys_cannot_open_the_canary(customer):
    # given keys that open nothing stored
    before = all_raw_tokens()
    with override_settings(FIELD_ENCRYPTION_KEYS=[new_key()]):
        # when rotation is asked for
        with pytest.raises(CommandError):
            call_command("rotate_keys", stdout=io.StringIO())
    # then nothing was touched and nothing was audited
    assert all_raw_tokens() == before
    assert not AuditEntry.objects.filter(object_pk="rotate_keys").exists()


def test_rotate_token_moves_a_token_to_the_newest_key():
    old, new = new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[old]):
        token = encrypt_str("山田", bound_to="crm.Customer.family_name")
    with override_settings(FIELD_ENCRYPTION_KEYS=[new, old]):
        assert token_key_index(token, bound_to="crm.Customer.family_name") == 1
        rotated = rotate_token(token, bound_to="crm.Customer.family_name")
        assert token_key_index(rotated, bound_to="crm.Customer.family_name") == 0
    with override_settings(FIELD_ENCRYPTION_KEYS=[new]):
        assert decrypt_str(rotated, bound_to="crm.Customer.family_name") == "山田"
        with pytest.raises(DecryptionError):
            rotate_token(token, bound_to="crm.Customer.family_name")


# --- the token format -----------------------------------------------------------------------------------


def _flip(token: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[at] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode("ascii")


@pytest.mark.parametrize(
    ("part", "at"),
    [("version", 0), ("key id", 2), ("nonce", 8), ("ciphertext", 20), ("tag", -1)],
)
def test_a_token_changed_in_any_part_is_refused(part, at):
    # given a token of the current format (version | key id | nonce | ciphertext | tag)
    token = encrypt_str("taro@example.com", bound_to="crm.Customer.email")
    # when one bit of that part is flipped, then no key opens it: never a wrong clear value
    with pytest.raises(DecryptionError):
        decrypt_str(_flip(token, at), bound_to="crm.Customer.email")
    assert token_key_index(_flip(token, at), bound_to="crm.Customer.email") is None


def test_tokens_are_not_base64_of_anything_else():
    # given values that are not tokens, then they are refused, not returned
    for junk in ("", "not a token", "AgAA", "山田"):
        with pytest.raises(DecryptionError):
            decrypt_str(junk, bound_to="crm.Customer.email")


def test_legacy_fernet_tokens_still_open_and_rotation_rewrites_them_in_the_current_format(team):
    # given a token written by an earlier release (Fernet) under today's newest key, and a customer row
    # whose email column holds such a token
    key = new_key()
    legacy = Fernet(key.encode()).encrypt(b"taro@example.com").decode("ascii")
    with override_settings(FIELD_ENCRYPTION_KEYS=[key]):
        canary_under_current_keys()
        customer = full_customer(team)
        with connection.cursor() as cur:
            cur.execute("UPDATE crm_customer SET email = %s WHERE id = %s", [legacy, customer.pk])
        # then it still reads as its clear value, and it counts as under the newest key
        assert decrypt_str(legacy, bound_to="crm.Customer.email") == "taro@example.com"
        assert Customer.objects.get(pk=customer.pk).email == "taro@example.com"
        assert token_key_index(legacy, bound_to="crm.Customer.email") == 0
        # when rotate_keys runs with the same single key
        call_command("rotate_keys", stdout=io.StringIO())
        # then the column holds a current-format token of the same value
        token = raw_tokens(Customer, customer.pk)["email"]
        assert token != legacy
        assert base64.urlsafe_b64decode(token)[:1] == b"\x03"
        assert decrypt_str(token, bound_to="crm.Customer.email") == "taro@example.com"
        # and a second run finds nothing left to do
        out = io.StringIO()
        call_command("rotate_keys", stdout=out)
        assert raw_tokens(Customer, customer.pk)["email"] == token


def test_a_token_names_its_key_so_a_listed_key_never_needs_trying():
    # given two keys and a token under each
    a, b = new_key(), new_key()
    with override_settings(FIELD_ENCRYPTION_KEYS=[a]):
        under_a = encrypt_str("x", bound_to="crm.Customer.notes")
    with override_settings(FIELD_ENCRYPTION_KEYS=[b]):
        under_b = encrypt_str("x", bound_to="crm.Customer.notes")
    # then their key ids differ, and each opens under its own key in either order of the list
    assert base64.urlsafe_b64decode(under_a)[1:5] != base64.urlsafe_b64decode(under_b)[1:5]
    for keys in ([a, b], [b, a]):
        with override_settings(FIELD_ENCRYPTION_KEYS=keys):
            assert decrypt_str(under_a, bound_to="crm.Customer.notes") == "x"
            assert decrypt_str(under_b, bound_to="crm.Customer.notes") == "x"
            assert token_key_index(under_a, bound_to="crm.Customer.notes") == keys.index(a)


# --- blind-index search through the selector ----------------------------------------------------------


@pytest.fixture
def neighbour(team):
    """Another customer of the same team, so that a search that matched everything would show."""
    return CustomerFactory(
        team=team,
        family_name="佐藤",
        given_name="花子",
        family_name_kana="サトウ",
        given_name_kana="ハナコ",
        email="hanako.sato@example.com",
        phone="03-1234-5678",
        member_no="M000000002",
    )


SEARCHES = {
    "e-mail as stored": "taro.yamada@example.com",
    "e-mail other case": "TARO.Yamada@EXAMPLE.com",
    "e-mail full-width (NFKC)": "ｔａｒｏ．ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    "phone national": "090-1234-5678",
    "phone digits only": "09012345678",
    "phone E.164": "+819012345678",
    "phone international spaced": "+81 90 1234 5678",
    "phone full-width": "０９０－１２３４－５６７８",
    "name with space": "山田 太郎",
    "name without space": "山田太郎",
    "name full-width space": "山田　太郎",
    "kana katakana": "ヤマダ タロウ",
    "kana katakana no space": "ヤマダタロウ",
    "kana hiragana": "やまだ たろう",
    "kana half-width": "ﾔﾏﾀﾞ ﾀﾛｳ",
    "member number": "M000000001",
}


@pytest.mark.django_db
@pytest.mark.parametrize("term", SEARCHES.values(), ids=SEARCHES.keys())
def test_blind_index_search_finds_the_customer_for_its_team_only(
    customer, neighbour, owner, teammate, outsider, term
):
    # when each user searches
    # then the team finds exactly the customer, in whatever form the term was typed
    assert list(customer_list(user=owner, search=term)) == [customer]
    assert list(customer_list(user=teammate, search=term)) == [customer]
    # and the outsider is refused: nothing, although the customer exists
    assert list(customer_list(user=outsider, search=term)) == []


@pytest.mark.django_db
@pytest.mark.parametrize("cap", [5_000, 1])
def test_a_name_shared_across_teams_finds_each_teams_own_namesakes(
    team, other_team, owner, outsider, cap, monkeypatch
):
    # given three customers of the same name, two in the owner's team and one in another team, and matches
    # handed over as an id list (cap 5,000) or, past the cap, as a subquery (cap 1)
    from crm import selectors

    monkeypatch.setattr(selectors, "SEARCH_IDS_CAP", cap)
    same = {
        "family_name": "山田",
        "given_name": "花子",
        "family_name_kana": "ヤマダ",
        "given_name_kana": "ハナコ",
    }
    mine = [CustomerFactory(team=team, **same) for _ in range(2)]
    theirs = CustomerFactory(team=other_team, **same)
    # when each searches the name, then each sees exactly their own team's namesakes, newest first
    assert list(customer_list(user=owner, search="山田 花子").order_by("-pk")) == sorted(
        mine, key=lambda c: -c.pk
    )
    assert list(customer_list(user=outsider, search="やまだ はなこ")) == [theirs]
    assert list(customer_list(user=owner, search="山田 次郎")) == []


@pytest.mark.django_db
def test_blind_index_search_does_not_cross_teams(customer, foreign_customer, owner, outsider):
    # when the owner searches for the other team's customer by e-mail and phone
    # then the restriction holds; its own team finds it
    for term in ("hanako@example.org", "03-1234-5678"):
        assert list(customer_list(user=owner, search=term)) == []
        assert list(customer_list(user=outsider, search=term)) == [foreign_customer]


@pytest.mark.django_db
def test_blind_index_search_misses_on_other_values(customer, owner):
    # when the term matches nothing exactly (no partial match either)
    for term in ("taro.yamada@example.co", "090-1234-5679", "山田", "ヤマダ", "M00000000"):
        # then nothing is found
        assert list(customer_list(user=owner, search=term)) == []


def test_blind_indexes_depend_on_their_own_key_and_domain():
    # given one value indexed as a name and as an e-mail
    base = (name_index("taro"), email_index("taro"))
    # then the index domains differ
    assert base[0] != base[1]
    # and another BLIND_INDEX_KEY gives other hashes (the index is keyed, not a plain hash)
    with override_settings(BLIND_INDEX_KEY="another-blind-index-key-for-this-test-only-0123"):
        assert (name_index("taro"), email_index("taro")) != base
    assert phone_index("090-1234-5678") == phone_index("+81 90 1234 5678")
    assert phone_index("not a phone") is None


# --- tokens bound to their column -----------------------------------------------------------------------


def unbound_token(key: str, clear: str) -> str:
    """A token of format 0x02 (before tokens were bound to their column), built here from the format's
    definition: AES-256-GCM under the HKDF-derived key, associated data = version + key id only."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"crm.field-encryption.aes-256-gcm.v2"
    ).derive(base64.urlsafe_b64decode(key))
    header = b"\x02" + hashlib.sha256(b"crm.field-key-id\x00" + derived).digest()[:4]
    nonce = os.urandom(12)
    return base64.urlsafe_b64encode(
        header + nonce + AESGCM(derived).encrypt(nonce, clear.encode(), header)
    ).decode()


def fernet_token(key: str, clear: str) -> str:
    """A token of the first release (Fernet, version byte 0x80)."""
    return Fernet(key.encode()).encrypt(clear.encode()).decode("ascii")


@pytest.mark.django_db
def test_tokens_swapped_between_two_columns_of_a_row_are_refused_naming_the_column(team):
    # given a customer whose e-mail and phone tokens are swapped in SQL (same row, same key)
    customer = full_customer(team)
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_customer SET email = phone, phone = email WHERE id = %s", [customer.pk])
    # when the row, or one of the two columns alone, is read
    with pytest.raises(DecryptionError) as whole:
        Customer.objects.get(pk=customer.pk)
    with pytest.raises(DecryptionError) as phone:
        list(Customer.objects.filter(pk=customer.pk).values_list("phone", flat=True))
    # then each read refuses, naming the column it read, and never shows the other column's value
    assert "crm.Customer.email" in str(whole.value)
    assert "crm.Customer.phone" in str(phone.value)
    for message in (f"{whole.value!r}", f"{phone.value!r}"):
        assert "taro@example.com" not in message
        assert "+819012345678" not in message
    # and the columns not touched still read
    assert Customer.objects.only("family_name").get(pk=customer.pk).family_name == "山田"


@pytest.mark.django_db
def test_a_token_copied_into_another_tables_column_is_refused(team):
    # given a customer's e-mail token copied into the encryption canary's column (another table)
    customer = full_customer(team)
    token = raw_tokens(Customer, customer.pk)["email"]
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_encryptioncanary SET token = %s WHERE id = 1", [token])
    # when the canary is read
    with pytest.raises(DecryptionError) as exc_info:
        EncryptionCanary.objects.get(pk=1)
    # then it is refused, naming the canary's column, without the e-mail address
    assert "crm.EncryptionCanary.token" in str(exc_info.value)
    assert "taro@example.com" not in repr(exc_info.value)
    # and start-up refuses too: the canary no longer opens as itself
    with pytest.raises(EncryptionKeyError):
        verify_encryption_canary()


def unbound_token_customer(team) -> Customer:
    """A customer whose e-mail holds a 0x02 token and whose phone a Fernet token, under today's key (tokens
    of the formats before column binding)."""
    key = settings.FIELD_ENCRYPTION_KEYS[0]
    customer = full_customer(team)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE crm_customer SET email = %s, phone = %s WHERE id = %s",
            [unbound_token(key, "taro@example.com"), fernet_token(key, "+819012345678"), customer.pk],
        )
    return customer


@pytest.mark.django_db
def test_unbound_tokens_still_read_before_rotation(team):
    # given a customer whose e-mail holds a 0x02 token and whose phone a Fernet token, under today's key
    customer = unbound_token_customer(team)
    # when the row is read, then both read as their values (FIELD_TOKENS_REQUIRE_BOUND is off by default)
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.email, fresh.phone) == ("taro@example.com", "+819012345678")


@pytest.mark.django_db
def test_rotate_keys_moves_unbound_tokens_to_the_bound_format(team):
    # given a customer whose e-mail holds a 0x02 token and whose phone a Fernet token, under today's key
    customer = unbound_token_customer(team)
    # when the dry run counts
    before = io.StringIO()
    call_command("rotate_keys", dry_run=True, stdout=before)
    counted = AuditEntry.objects.filter(object_pk="rotate_keys").order_by("-pk").first()
    # then the two unbound tokens are counted as to rotate, although the key is already the newest
    assert counted.additional_data["models"]["crm.Customer"]["unbound"] == 2
    assert "列に結び付いていないトークン: 2 件（rotate_keys で結び付けます）" in before.getvalue()
    # when rotate_keys runs
    call_command("rotate_keys", model=["crm.Customer"], stdout=io.StringIO())
    # then both columns hold bound tokens (format 0x03) and read the same as before
    raw = raw_tokens(Customer, customer.pk)
    assert {base64.urlsafe_b64decode(raw[f])[:1] for f in ("email", "phone")} == {b"\x03"}
    fresh = Customer.objects.get(pk=customer.pk)
    assert (fresh.email, fresh.phone) == ("taro@example.com", "+819012345678")
    # and a full count finds none left, and says the setting may now be turned on
    after = io.StringIO()
    call_command("rotate_keys", dry_run=True, stdout=after)
    assert (
        "列に結び付いていないトークン: 0 件（FIELD_TOKENS_REQUIRE_BOUND を有効にできます）"
        in after.getvalue()
    )
    # and a swap of the rotated tokens is now refused
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_customer SET email = phone, phone = email WHERE id = %s", [customer.pk])
    with pytest.raises(DecryptionError, match=r"crm\.Customer\.email"):
        Customer.objects.get(pk=customer.pk)


@pytest.mark.django_db
def test_the_canary_written_by_the_migration_is_bound_to_its_column():
    # given the test database, built by the migrations
    # then the canary's token is in the bound format and opens as the canary
    raw = raw_tokens(EncryptionCanary, 1)["token"]
    assert base64.urlsafe_b64decode(raw)[:1] == b"\x03"
    assert EncryptionCanary.objects.get(pk=1).token == CANARY_VALUE


@pytest.mark.django_db
def test_a_search_token_is_bound_to_its_purpose_not_to_a_column(team):
    # given a customer list search token (crm.search_token) and a customer's e-mail token
    customer = full_customer(team)
    email_token = raw_tokens(Customer, customer.pk)["email"]
    search = seal_search("hanako@example.org")
    # when the search token is written into the e-mail column
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_customer SET email = %s WHERE id = %s", [search, customer.pk])
    # then it does not read as an e-mail address, and the e-mail token does not open as a search
    with pytest.raises(DecryptionError, match=r"crm\.Customer\.email"):
        Customer.objects.get(pk=customer.pk)
    assert open_search(email_token) is None
    assert open_search(search) == "hanako@example.org"


@pytest.mark.django_db
def test_require_bound_refuses_unbound_tokens_and_rotation_still_moves_them(team):
    # given a customer whose e-mail holds a 0x02 token and whose phone a Fernet token
    customer = unbound_token_customer(team)
    with override_settings(FIELD_TOKENS_REQUIRE_BOUND=True):
        # when the row is read with FIELD_TOKENS_REQUIRE_BOUND on
        # then each unbound column is refused by name, with the way out, and without its value
        with pytest.raises(UnboundTokenError, match=r"crm\.Customer\.email.*rotate_keys") as email:
            Customer.objects.get(pk=customer.pk)
        with pytest.raises(UnboundTokenError, match=r"crm\.Customer\.phone"):
            list(Customer.objects.filter(pk=customer.pk).values_list("phone", flat=True))
        assert "taro@example.com" not in repr(email.value)
        # when rotate_keys runs (it opens unbound tokens whatever the setting: that is how they get bound)
        call_command("rotate_keys", model=["crm.Customer"], stdout=io.StringIO())
        # then the row reads again, as before
        fresh = Customer.objects.get(pk=customer.pk)
        assert (fresh.email, fresh.phone) == ("taro@example.com", "+819012345678")


@pytest.mark.django_db
def test_require_bound_with_an_unbound_canary_refuses_to_start_and_says_why():
    # given a database migrated before binding: its canary is an unbound token
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE crm_encryptioncanary SET token = %s WHERE id = 1",
            [unbound_token(settings.FIELD_ENCRYPTION_KEYS[0], CANARY_VALUE)],
        )
    # then it starts while unbound tokens are accepted
    verify_encryption_canary()
    # when FIELD_TOKENS_REQUIRE_BOUND is turned on before rotation
    with override_settings(FIELD_TOKENS_REQUIRE_BOUND=True):
        # then start-up refuses, naming the setting and the command, not a wrong key
        with pytest.raises(EncryptionKeyError, match=r"FIELD_TOKENS_REQUIRE_BOUND.*rotate_keys"):
            verify_encryption_canary()


def test_a_search_token_must_be_bound_even_while_unbound_field_tokens_are_accepted():
    # given a token of the search payload's shape in the unbound format, under today's key
    payload = json.dumps({"q": "taro@example.com", "t": int(time.time())})
    unbound = unbound_token(settings.FIELD_ENCRYPTION_KEYS[0], payload)
    # then it searches for nothing, while a bound search token opens
    assert open_search(unbound) is None
    assert open_search(seal_search("taro@example.com")) == "taro@example.com"


@pytest.mark.django_db
def test_bound_as_keeps_a_renamed_column_readable(customer):
    from crm.fields import EncryptedCharField

    # given the stored e-mail token of a customer
    token = raw_tokens(Customer, customer.pk)["email"]
    # when a field (a renamed model's or field's) declares the old label it was bound to
    renamed = EncryptedCharField(max_length=254, bound_as="crm.Customer.email")
    # then it opens the stored token, and says so in its migration state
    assert renamed.from_db_value(token, None, connection) == Customer.objects.get(pk=customer.pk).email
    assert renamed.deconstruct()[3]["bound_as"] == "crm.Customer.email"
    # and a field belonging to no model binds nothing: it refuses to encrypt
    with pytest.raises(ValueError, match="belongs to a model"):
        EncryptedCharField(max_length=10).get_prep_value("x")


@pytest.mark.django_db
def test_rotate_keys_reports_a_swapped_token_as_unreadable_and_leaves_it(team):
    # given a customer whose e-mail and phone tokens were swapped in SQL, and another customer left alone
    swapped, intact = full_customer(team), full_customer(team, email="intact@example.com")
    with connection.cursor() as cur:
        cur.execute("UPDATE crm_customer SET email = phone, phone = email WHERE id = %s", [swapped.pk])
    before = raw_tokens(Customer, swapped.pk)
    # when rotate_keys counts, then runs
    counted = io.StringIO()
    with pytest.raises(CommandError, match="別の列から移された"):
        call_command("rotate_keys", dry_run=True, model=["crm.Customer"], stdout=counted)
    out = io.StringIO()
    with pytest.raises(CommandError, match="開けないトークン"):
        call_command("rotate_keys", model=["crm.Customer"], stdout=out)
    # then both moved tokens are named by column and primary key, never re-sealed under the wrong column,
    # and the rest counts as bound
    for column in ("email", "phone"):
        assert f"開けないトークン crm.Customer.{column}: 1 件（主キー {swapped.pk}）" in out.getvalue()
    assert raw_tokens(Customer, swapped.pk) == before
    assert "列に結び付いていないトークン: 0 件" in counted.getvalue()
    assert Customer.objects.get(pk=intact.pk).email == "intact@example.com"


def test_junk_is_refused_as_undecryptable_not_as_unbound():
    # given values that are no token of any format, with FIELD_TOKENS_REQUIRE_BOUND on
    with override_settings(FIELD_TOKENS_REQUIRE_BOUND=True):
        for junk in ("not a token", "AQAAAAAA", base64.urlsafe_b64encode(b"\x04" + bytes(40)).decode()):
            # then they are refused as undecryptable, not sent to rotate_keys as if they were old tokens
            with pytest.raises(DecryptionError) as exc_info:
                decrypt_str(junk, bound_to="crm.Customer.email")
            assert not isinstance(exc_info.value, UnboundTokenError)
