"""Writes of the disclosure package: ordering one, building it (the task's body), publishing and expiring it.

Where the clear ZIP never goes: to disk under a name. It is written to a spooled temporary file (memory,
then an anonymous file that vanishes with the process) and sealed from there into `.<name>.partial` in
DISCLOSURE_PACKAGE_DIR; the partial file is renamed to its final name inside the transaction whose
conditional UPDATE (building → ready, with the file's name) publishes it. A worker killed before that commit
leaves the row "building" and at most a partial or unpublished file, which the next build of the package
removes; killed after it, the package is whole. Two builds of one package never run at once: each holds a
PostgreSQL advisory lock on it for the whole build (a killed worker's session ends and frees it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from consent.disclosure.models import DisclosurePackage
from consent.requests import services as request_services
from consent.requests.models import DataSubjectRequest, RequestKind, RequestState
from crm.crypto import encrypt_stream
from crm.disclosure.package import disclosure_package_write
from crm.models import AuditEntry
from crm.queue import task_enqueue

if TYPE_CHECKING:
    from django.contrib.auth.models import User

log = logging.getLogger(__name__)

State = DisclosurePackage.State

# Advisory-lock namespace of package builds (first int of the two-int form); second: the package id.
PACKAGE_LOCK_NS = 0x4453_5250  # "DSRP"
PACKAGE_KINDS = frozenset({RequestKind.DISCLOSURE, RequestKind.PORTABILITY})
CLEAR_IN_MEMORY_BYTES = 64 * 1024 * 1024


class PackageRefused(ValidationError):
    """A package may not be made for this request now (kind, state, identity not verified)."""


def package_dir() -> Path:
    return Path(settings.DISCLOSURE_PACKAGE_DIR)


def fulfilment_refusal(request: DataSubjectRequest) -> str:
    """Why a package may not be made for `request` now, or "" when it may: a disclosure or portability
    request, in progress, its requester's identity verified (the desk's recorded step)."""
    if request.kind not in PACKAGE_KINDS:
        return str(_("開示データは、開示またはデータポータビリティの請求に限り作成できます。"))
    if request.identity_verified_at is None:
        return str(_("本人確認が完了していないため、開示データを作成できません。"))
    if request.state != RequestState.IN_PROGRESS:
        return str(_("対応中の請求に限り、開示データを作成できます。"))
    return ""


def disclosure_package_order(
    *, request: DataSubjectRequest, actor: User, enqueue: bool = True
) -> DisclosurePackage:
    """Order the package of `request` for `actor`, who must be able to work the request (the gate's
    "change"). Refused (PackageRefused) before the identity verification is done. A package already being
    built for the request is returned as it is; the build is enqueued after commit."""
    with transaction.atomic():
        locked = (
            DataSubjectRequest.objects.restrict(actor, "change")
            .select_for_update()
            .filter(pk=request.pk)
            .first()
        )
        if locked is None:
            raise PermissionDenied(_("この開示等請求を操作する権限がありません。"))
        refusal = fulfilment_refusal(locked)
        if refusal:
            raise PackageRefused(refusal)
        package = DisclosurePackage.objects.filter(request=locked, state=State.BUILDING).first()
        if package is None:
            package = DisclosurePackage.objects.create(
                request=locked, language=locked.language, requested_by=actor, state=State.BUILDING
            )
        if enqueue:
            package_id = package.pk
            transaction.on_commit(lambda: _enqueue(package_id))
    return package


def disclosure_package_rebuild(*, package: DisclosurePackage, actor: User, enqueue: bool = True) -> bool:
    """Build a failed package again (or re-send the build of one left "building" by a dead worker)."""
    if not DisclosurePackage.objects.restrict(actor, "view").filter(pk=package.pk).exists():
        raise PermissionDenied(_("この開示データを操作する権限がありません。"))
    request = DataSubjectRequest.objects.restrict(actor, "change").filter(pk=package.request_id).first()
    if request is None:
        raise PermissionDenied(_("この開示等請求を操作する権限がありません。"))
    refusal = fulfilment_refusal(request)
    if refusal:
        raise PackageRefused(refusal)
    try:
        with transaction.atomic():
            moved = DisclosurePackage.objects.filter(
                pk=package.pk, state__in=[State.FAILED, State.BUILDING]
            ).update(state=State.BUILDING, error="", progress=0)
            if moved and enqueue:
                transaction.on_commit(lambda: _enqueue(package.pk))
    except IntegrityError as exc:  # consent_package_one_building: another package of the request builds
        raise PackageRefused(_("この請求の別の開示データを作成中です。")) from exc
    return bool(moved)


def disclosure_package_handed_over(*, package: DisclosurePackage, actor: User) -> bool:
    """Record on the request, through the desk's own service, that the package was handed over (its
    handler downloaded it): the sections it holds rows of and its reference, never values, for the request's
    completion record. False when the request no longer takes the record (it is closed: a later copy) or the
    user may only read it."""
    rows = (package.contents or {}).get("rows", {})
    what = [key for key, count in rows.items() if count] or ["no_data"]
    try:
        request_services.request_record_disclosed(
            request=package.request,
            actor=actor,
            what=what,
            reference=f"package:{package.pk} sha256:{package.sha256[:16]}",
        )
    except (ValidationError, PermissionDenied):
        return False
    return True


# The build task (consent.disclosure.tasks) imports these services; they queue it by name (crm.queue).
BUILD_TASK = "consent.disclosure.build"


def _enqueue(package_id: int) -> None:
    task_enqueue(BUILD_TASK, package_id)


@contextlib.contextmanager
def _build_lock(package_id: int) -> Iterator[bool]:
    """A session advisory lock on the package for the whole build; False when another build holds it."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [PACKAGE_LOCK_NS, package_id])
        locked = bool(cur.fetchone()[0])
    try:
        yield locked
    finally:
        if locked:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", [PACKAGE_LOCK_NS, package_id])


def _unless_locked(package_id: int, **values: object) -> None:
    """Write advisory values (progress, attempts) of a building package, skipping a row someone holds: a
    build never waits for its progress bar."""
    with transaction.atomic():
        free = (
            DisclosurePackage.objects.filter(pk=package_id, state=State.BUILDING)
            .select_for_update(skip_locked=True)
            .values("pk")
        )
        DisclosurePackage.objects.filter(pk__in=free).update(**values)


def _leftovers(package_id: int, keep: str = "") -> list[Path]:
    """Files of the package other than `keep`: partial files and unpublished ones of killed builds."""
    directory = package_dir()
    if not directory.is_dir():
        return []
    names = (f"disclosure-{package_id}-", f".disclosure-{package_id}-")
    return [p for p in directory.iterdir() if p.name.startswith(names) and p.name != keep]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disclosure_package_build(*, package_id: int, now: dt.datetime | None = None) -> str:
    """Build the package `package_id` (the task's body). Returns its state afterwards ("busy" when another
    build of it runs). Safe to run twice, and after a killed run: a package that is no longer "building"
    is left as it is, and whatever a killed build left on disk is removed first.

    The sections are read for the request's customer as the company holds them (crm.disclosure.registry),
    not through a staff member's view: who may download the package is its own gate's business."""
    with _build_lock(package_id) as locked:
        if not locked:
            return "busy"
        package = DisclosurePackage.objects.select_related("request").filter(pk=package_id).first()
        if package is None:
            return "missing"
        if package.state != State.BUILDING:
            return str(package.state)
        refusal = fulfilment_refusal(package.request)
        if refusal:
            _finish_failed(package_id, "refused")
            return State.FAILED
        _unless_locked(package_id, attempts=package.attempts + 1, progress=0)
        for stale in _leftovers(package_id):
            stale.unlink(missing_ok=True)
        try:
            return _build(package, now or timezone.now())
        except DatabaseError:
            raise  # the task retries; the package stays "building"
        except Exception as exc:
            _finish_failed(package_id, type(exc).__name__)
            # The exception's name only: its message may quote a value read for the package.
            log.error("disclosure package %s failed: %s", package_id, type(exc).__name__)
            return State.FAILED


def _build(package: DisclosurePackage, now: dt.datetime) -> str:
    directory = package_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = f"disclosure-{package.pk}-{uuid.uuid4().hex}.zip.sealed"
    partial = directory / f".{final}.partial"
    request = package.request
    with tempfile.SpooledTemporaryFile(max_size=CLEAR_IN_MEMORY_BYTES) as clear:
        contents = disclosure_package_write(
            out=clear,
            customer_id=request.customer_id,
            language=package.language,
            as_of=now,
            reference=f"REQ-{request.pk}",
            progress=lambda percent: _unless_locked(package.pk, progress=percent),
        )
        clear.seek(0)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as sealed:
            size, digest = encrypt_stream(clear, sealed, bound_to=package.sealed_as)
            sealed.flush()
            os.fsync(sealed.fileno())
    try:
        with transaction.atomic():
            published = DisclosurePackage.objects.filter(pk=package.pk, state=State.BUILDING).update(
                state=State.READY,
                file_name=final,
                size=size,
                sha256=digest,
                contents={"rows": contents.rows, "has_data": contents.has_data},
                progress=100,
                error="",
                ready_at=now,
                expires_at=now + dt.timedelta(days=int(settings.DISCLOSURE_PACKAGE_DAYS)),
            )
            if published:
                os.replace(partial, directory / final)
                _fsync_dir(directory)
                _audit(package, "ready", size=size, rows=sum(contents.rows.values()))
    finally:
        partial.unlink(missing_ok=True)
    return (
        State.READY
        if published
        else str(
            DisclosurePackage.objects.filter(pk=package.pk).values_list("state", flat=True).first()
            or "missing"
        )
    )


def _finish_failed(package_id: int, code: str) -> None:
    DisclosurePackage.objects.filter(pk=package_id, state=State.BUILDING).update(
        state=State.FAILED, error=code[:100]
    )


def _audit(package: DisclosurePackage, what: str, actor: User | None = None, **counts: int) -> None:
    """One entry per state change made by a conditional UPDATE (auditlog does not see those): ids and
    counts only."""
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(DisclosurePackage),
        object_pk=str(package.pk),
        object_id=package.pk,
        object_repr=str(package),
        action=AuditEntry.Action.UPDATE,
        changes={"state": [State.BUILDING if what == "ready" else State.READY, what]},
        actor=actor,
        additional_data={"disclosure_package": {"request": package.request_id, "state": what, **counts}},
    )


def disclosure_packages_resume() -> int:
    """Re-send the build of every package left "building" that no build holds (its worker was killed and
    its message is waiting for the broker's visibility timeout). Run when a worker starts."""
    resumed = 0
    for package_id in DisclosurePackage.objects.filter(state=State.BUILDING).values_list("pk", flat=True):
        with _build_lock(package_id) as free:
            if not free:
                continue
        _enqueue(package_id)
        resumed += 1
    return resumed


# --- removal by the retention engine (policy scope "dsar_packages", crm.retention.participants) -----------


def disclosure_packages_remove(*, rows: QuerySet[DisclosurePackage], actor: User | None) -> int:
    """Mark a batch of packages past the policy's period expired (rows the retention run selected with
    consent.disclosure.selectors.packages_due and locked in its transaction); their files are deleted after
    commit. Their rows stay, as the record of what was disclosed (counts, hash)."""
    ids = list(rows.order_by("pk").values_list("pk", flat=True))
    if not ids:
        return 0
    removed = DisclosurePackage.objects.filter(pk__in=ids).update(
        state=State.EXPIRED, file_name="", removed_at=timezone.now()
    )
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(DisclosurePackage),
        object_pk=f"disclosure-packages-expired:{ids[0]}-{ids[-1]}",
        object_repr=f"開示データ {removed}件を期限切れとして削除",
        action=AuditEntry.Action.UPDATE,
        changes={"state": ["ready", State.EXPIRED]},
        actor=actor if getattr(actor, "pk", None) else None,
        additional_data={"disclosure_packages_expired": {"ids": ids, "count": removed}},
    )
    transaction.on_commit(disclosure_package_files_sweep)
    return removed


def disclosure_package_files_sweep() -> int:
    """Delete every file in DISCLOSURE_PACKAGE_DIR whose package is no longer building or ready (expired,
    or gone): what removal left when its process stopped between the commit and the deletion too."""
    directory = package_dir()
    if not directory.is_dir():
        return 0
    by_id: dict[int, list[Path]] = {}
    for path in directory.iterdir():
        number = path.name.lstrip(".").removeprefix("disclosure-").split("-", 1)[0]
        if number.isdigit():
            by_id.setdefault(int(number), []).append(path)
    live = set(
        DisclosurePackage.objects.filter(pk__in=by_id, state__in=[State.BUILDING, State.READY]).values_list(
            "pk", flat=True
        )
    )
    deleted = 0
    for package_id, paths in by_id.items():
        if package_id in live:
            continue
        for path in paths:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted
