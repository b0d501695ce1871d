"""Disclosure packages (consent.disclosure): ordered only once the requester's identity is verified, built
safely twice, stored sealed, downloaded by the handler alone through an expiring link, each download
audited."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import zipfile
from unittest import mock

import pytest
import time_machine
from cryptography.fernet import Fernet
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone, translation

from consent.disclosure import selectors, services
from consent.disclosure.models import DisclosurePackage
from consent.requests.models import DataSubjectRequest, RequestState
from crm.crypto import FILE_MAGIC, DecryptionError, key_fingerprint, stream_key_index
from crm.models import AuditEntry, CustomerEvent
from crm.permissions import ROLE_SUPPORT
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db

WHEN = dt.datetime(2026, 4, 1, 1, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _package_dir(settings, tmp_path):
    settings.DISCLOSURE_PACKAGE_DIR = str(tmp_path / "packages")


@pytest.fixture
def other_handler(db):
    return UserFactory(username="other-handler", roles=[ROLE_SUPPORT])


def _request(
    handler, customer=None, *, verified=True, kind="disclosure", language="ja"
) -> DataSubjectRequest:
    dsr = DataSubjectRequest.objects.create(
        kind=kind, channel="email", received_at=WHEN, customer=customer, handler=handler, language=language
    )
    if verified:
        # (the desk's verification step and start of work, as their services leave the row)
        DataSubjectRequest.objects.filter(pk=dsr.pk).update(
            identity_verified_at=WHEN, state=RequestState.IN_PROGRESS
        )
    return DataSubjectRequest.objects.get(pk=dsr.pk)


@contextlib.contextmanager
def _no_broker():
    """The build is enqueued after commit; these tests build in-process instead."""
    with mock.patch.object(services, "_enqueue"):
        yield


def _files():
    directory = services.package_dir()
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _open(package: DisclosurePackage) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(b"".join(selectors.package_chunks(package))))


def test_fulfilment_is_refused_before_the_identity_verification_is_done(team, handler):
    # given a disclosure request whose requester's identity is not verified yet
    dsr = _request(handler, CustomerFactory(team=team), verified=False)
    # when its handler orders the package, then it is refused and nothing is made
    with translation.override("ja"), pytest.raises(services.PackageRefused, match="本人確認が完了していない"):
        services.disclosure_package_order(request=dsr, actor=handler, enqueue=False)
    assert not DisclosurePackage.objects.exists()
    # and a request of another kind is refused too, verified or not
    other = _request(handler, kind="correction")
    with pytest.raises(services.PackageRefused):
        services.disclosure_package_order(request=other, actor=handler, enqueue=False)


def test_a_package_is_ordered_only_by_whom_the_request_is_open_to(team, handler, other_handler):
    # given a verified request assigned to one handler
    dsr = _request(handler, CustomerFactory(team=team))
    # when another handler orders its package, then the gate refuses
    with pytest.raises(PermissionDenied):
        services.disclosure_package_order(request=dsr, actor=other_handler, enqueue=False)
    # and its own handler gets one, twice the same while it builds
    first = services.disclosure_package_order(request=dsr, actor=handler, enqueue=False)
    again = services.disclosure_package_order(request=dsr, actor=handler, enqueue=False)
    assert first.pk == again.pk and first.state == DisclosurePackage.State.BUILDING


def test_a_built_package_is_sealed_at_rest_whole_and_safe_to_build_twice(team, handler):
    # given a verified request about a customer with events
    customer = CustomerFactory(team=team, email="sealed@example.com")
    CustomerEvent.objects.create(customer=customer, kind="page_view", occurred_at=WHEN, properties={})
    package = services.disclosure_package_order(
        request=_request(handler, customer), actor=handler, enqueue=False
    )
    # when it is built, and the build runs again
    assert services.disclosure_package_build(package_id=package.pk) == "ready"
    files = _files()
    assert services.disclosure_package_build(package_id=package.pk) == "ready"
    # then one file holds it, sealed (no clear ZIP, no e-mail address on disk), and it opens whole
    package.refresh_from_db()
    assert _files() == files == [package.file_name]
    raw = (services.package_dir() / package.file_name).read_bytes()
    assert raw.startswith(FILE_MAGIC) and b"PK\x03\x04" not in raw and b"sealed@example.com" not in raw
    selectors.package_verify(package)
    data = json.loads(_open(package).read("disclosure.json"))
    assert data["has_data"] is True and data["reference"] == f"REQ-{package.request_id}"
    assert package.contents["rows"]["crm.events"] == 1 and package.progress == 100
    assert package.expires_at == package.ready_at + dt.timedelta(days=30)
    # and the publication is in the audit trail, by ids and counts
    entry = AuditEntry.objects.filter(object_pk=str(package.pk), action=AuditEntry.Action.UPDATE).get()
    assert "sealed@example.com" not in json.dumps(entry.additional_data) + str(entry.changes)


def test_a_request_matched_to_nobody_gets_a_package_that_says_so(handler):
    # given a verified request linked to no customer (nobody matched), in English
    package = services.disclosure_package_order(
        request=_request(handler, None, language="en"), actor=handler, enqueue=False
    )
    # when it is built
    services.disclosure_package_build(package_id=package.pk)
    package.refresh_from_db()
    # then the package says that no data is held
    assert package.contents["has_data"] is False
    assert "We do not hold any personal data about you" in _open(package).read("disclosure.html").decode()


def test_a_build_leaves_nothing_of_an_earlier_killed_build_and_waits_for_none(team, handler):
    # given a package whose earlier build was killed, leaving a partial and an unpublished file
    package = services.disclosure_package_order(
        request=_request(handler, CustomerFactory(team=team)), actor=handler, enqueue=False
    )
    directory = services.package_dir()
    directory.mkdir(parents=True)
    (directory / f".disclosure-{package.pk}-dead.zip.sealed.partial").write_bytes(b"half")
    (directory / f"disclosure-{package.pk}-dead.zip.sealed").write_bytes(b"unpublished")
    (directory / "disclosure-999999-other.zip.sealed").write_bytes(b"another package")
    # when it is built again
    assert services.disclosure_package_build(package_id=package.pk) == "ready"
    # then only the published file of this package remains beside the other package's
    package.refresh_from_db()
    assert _files() == sorted([package.file_name, "disclosure-999999-other.zip.sealed"])


def test_a_build_already_running_elsewhere_is_not_started_twice(team, handler):
    # given a package whose build holds its lock in another session
    import psycopg

    from tests.services import database_conninfo

    package = services.disclosure_package_order(
        request=_request(handler, CustomerFactory(team=team)), actor=handler, enqueue=False
    )
    with psycopg.connect(database_conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", [services.PACKAGE_LOCK_NS, package.pk])
        # when a second build starts, then it leaves the package to that build
        assert services.disclosure_package_build(package_id=package.pk) == "busy"
        assert services.disclosure_packages_resume() == 0
    package.refresh_from_db()
    assert package.state == DisclosurePackage.State.BUILDING and _files() == []


def _ready_package(team, handler) -> DisclosurePackage:
    customer = CustomerFactory(team=team)
    package = services.disclosure_package_order(
        request=_request(handler, customer), actor=handler, enqueue=False
    )
    services.disclosure_package_build(package_id=package.pk)
    package.refresh_from_db()
    return package


def _link(package, user) -> str:
    return reverse(
        "admin:consent_disclosurepackage_download",
        args=[package.pk, selectors.download_token(package=package, user=user)],
    )


def test_the_handler_downloads_the_package_and_the_download_is_audited(client, team, handler):
    # given a ready package and its handler on the package's page
    package = _ready_package(team, handler)
    client.force_login(handler)
    page = client.get(reverse("admin:consent_disclosurepackage_change", args=[package.pk]))
    assert page.status_code == 200
    link = next(
        part.split('"')[0]
        for part in page.content.decode().split('href="')
        if part.startswith(f"/admin/consent/disclosurepackage/{package.pk}/download/")
    )
    # when they follow the link on the page
    answer = client.get(link)
    # then they get the ZIP, and the download is an access entry naming the package only
    assert answer.status_code == 200 and answer["Content-Type"] == "application/zip"
    assert "no-store" in answer["Cache-Control"]
    body = b"".join(answer.streaming_content)
    assert zipfile.ZipFile(io.BytesIO(body)).namelist()[0] == "disclosure.json"
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.ACCESS, object_pk=str(package.pk)).get()
    assert entry.actor_id == handler.pk and entry.object_repr == f"開示データ #{package.pk}"


def test_a_link_opens_for_nobody_but_its_handler_and_not_after_it_expires(
    client, team, handler, other_handler
):
    # given a ready package, and a link made for its handler
    package = _ready_package(team, handler)
    link = _link(package, handler)
    # when another desk member uses the handler's link, or a link made for themselves
    client.force_login(other_handler)
    stolen = client.get(link)
    own = client.get(_link(package, other_handler))
    # then both look like no package at all
    assert stolen.status_code == own.status_code == 302 and stolen["Location"] == reverse("admin:index")
    # when the handler uses the link after DISCLOSURE_LINK_SECONDS, then it is refused
    client.force_login(handler)
    with time_machine.travel(timezone.now() + dt.timedelta(seconds=901)):
        late = client.get(link)
    assert late.status_code == 302 and late["Location"].endswith(f"/disclosurepackage/{package.pk}/change/")
    # and past the package's own deadline no link opens it
    DisclosurePackage.objects.filter(pk=package.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert client.get(_link(package, handler)).status_code == 302
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.ACCESS, object_pk=str(package.pk)).exists()


def test_a_tampered_file_is_never_sent(client, team, handler):
    # given a ready package whose file was altered on disk
    package = _ready_package(team, handler)
    path = services.package_dir() / package.file_name
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    # when its handler downloads it, then nothing is sent and they are told to rebuild it
    client.force_login(handler)
    answer = client.get(_link(package, handler))
    assert answer.status_code == 302


def test_the_request_page_orders_the_package_and_shows_its_progress(client, team, handler):
    # given a verified disclosure request, on its handler's page
    dsr = _request(handler, CustomerFactory(team=team))
    client.force_login(handler)
    page = client.get(reverse("admin:consent_datasubjectrequest_change", args=[dsr.pk]))
    order = reverse("admin:consent_datasubjectrequest_act", args=[dsr.pk, "package"])
    assert order in page.content.decode()
    # when they order the package there
    with _no_broker():
        answer = client.post(order, {})
    # then it is building, and the request's page shows it with its progress
    assert answer.status_code == 302
    package = DisclosurePackage.objects.get(request=dsr)
    assert package.state == DisclosurePackage.State.BUILDING
    page = client.get(reverse("admin:consent_datasubjectrequest_change", args=[dsr.pk])).content.decode()
    assert f"開示データ #{package.pk}" in page and '<progress value="0" max="100">' in page
    # and once built and downloaded, the request's work log says what was handed over (names only)
    services.disclosure_package_build(package_id=package.pk)
    package.refresh_from_db()
    assert client.get(_link(package, handler)).status_code == 200
    dsr.refresh_from_db()
    step = next(s for s in dsr.work_log if s["action"] == "disclosed")
    assert "crm.customer" in step["what"] and step["reference"].startswith(f"package:{package.pk} ")


def test_the_request_page_offers_no_package_before_verification(client, team, handler):
    # given a request whose identity verification is not done
    dsr = _request(handler, CustomerFactory(team=team), verified=False)
    client.force_login(handler)
    # when its page is opened, and the order is posted anyway
    page = client.get(reverse("admin:consent_datasubjectrequest_change", args=[dsr.pk])).content.decode()
    answer = client.post(reverse("admin:consent_datasubjectrequest_act", args=[dsr.pk, "package"]), {})
    # then no order is offered, the posted one is refused, and no package exists
    assert "/act/package/" not in page
    assert answer.status_code == 200 and not DisclosurePackage.objects.exists()


def test_a_failed_package_is_built_again_from_its_page(client, team, handler):
    # given a package whose build failed
    package = services.disclosure_package_order(
        request=_request(handler, CustomerFactory(team=team)), actor=handler, enqueue=False
    )
    with mock.patch.object(services, "disclosure_package_write", side_effect=RuntimeError("boom")):
        assert services.disclosure_package_build(package_id=package.pk) == "failed"
    package.refresh_from_db()
    assert (package.state, package.error) == (DisclosurePackage.State.FAILED, "RuntimeError")
    assert _files() == []
    # when its handler asks for it again on its page
    client.force_login(handler)
    with _no_broker():
        answer = client.post(reverse("admin:consent_disclosurepackage_rebuild", args=[package.pk]))
    assert answer.status_code == 302
    # then it builds again, and the build succeeds
    package.refresh_from_db()
    assert package.state == DisclosurePackage.State.BUILDING and package.error == ""
    assert services.disclosure_package_build(package_id=package.pk) == "ready"


def test_a_failed_package_is_not_rebuilt_while_another_of_its_request_builds(team, handler):
    # given a failed package, and a newer one of the same request being built
    dsr = _request(handler, CustomerFactory(team=team))
    failed = services.disclosure_package_order(request=dsr, actor=handler, enqueue=False)
    DisclosurePackage.objects.filter(pk=failed.pk).update(state=DisclosurePackage.State.FAILED)
    services.disclosure_package_order(request=dsr, actor=handler, enqueue=False)
    # when the failed one is asked for again, then it is refused with the reason, not an error
    with translation.override("ja"), pytest.raises(services.PackageRefused, match="作成中"):
        services.disclosure_package_rebuild(package=failed, actor=handler, enqueue=False)


def test_rotate_keys_reseals_the_ready_packages_so_the_old_key_can_go(team, handler, settings):
    # given two ready packages sealed under the key in use, and a new key put first
    old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
    packages = [_ready_package(team, handler), _ready_package(team, handler)]
    new = Fernet.generate_key().decode("ascii")
    settings.FIELD_ENCRYPTION_KEYS = [new, *old_keys]
    # when the dry run counts, then both files are under the older key
    counted = io.StringIO()
    call_command("rotate_keys", dry_run=True, stdout=counted)
    assert f"封印ファイル consent.DisclosurePackage: 鍵 #0 [{key_fingerprint(0)}]: 0、" in counted.getvalue()
    assert f"鍵 #1 [{key_fingerprint(1)}]: 2" in counted.getvalue()
    # (without the run, taking the old key away would leave files nobody can open)
    settings.FIELD_ENCRYPTION_KEYS = [new]
    with pytest.raises(DecryptionError):
        selectors.package_verify(packages[0])
    # when rotate_keys runs with both keys
    settings.FIELD_ENCRYPTION_KEYS = [new, *old_keys]
    out = io.StringIO()
    call_command("rotate_keys", stdout=out)
    assert "（再封印 2 件）" in out.getvalue()
    # then each file is sealed under the new key, in its place, and with the new key alone opens whole as the
    # same ZIP (its recorded SHA-256), nothing left beside it
    settings.FIELD_ENCRYPTION_KEYS = [new]
    for package in packages:
        with (services.package_dir() / package.file_name).open("rb") as sealed:
            assert stream_key_index(sealed) == 0
        selectors.package_verify(package)
    assert _files() == sorted(p.file_name for p in packages)
    entry = AuditEntry.objects.filter(object_pk="rotate_keys").latest("pk")
    assert entry.additional_data["sealed_files"]["consent.DisclosurePackage"]["resealed"] == 2


def test_rotate_keys_leaves_a_tampered_package_as_it_is_and_says_so(team, handler, settings):
    # given a ready package whose file was changed after sealing, and a new key put first
    package = _ready_package(team, handler)
    path = services.package_dir() / package.file_name
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode("ascii"), *settings.FIELD_ENCRYPTION_KEYS]
    # when rotate_keys runs, then it fails naming the package; the file is left as it was, nothing beside it
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("rotate_keys", stdout=out)
    assert f"どの鍵でも開けない封印ファイル: consent.DisclosurePackage:{package.pk}" in out.getvalue()
    assert path.read_bytes() == bytes(raw) and _files() == [package.file_name]
