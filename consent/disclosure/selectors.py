"""Reads of disclosure packages: the packages a user may see, the expiring download link, and the file's
clear content for a download (verified whole before the first byte leaves)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from consent.disclosure.models import DisclosurePackage
from consent.disclosure.services import package_dir
from crm.crypto import DecryptionError, decrypt_stream
from crm.retention.models import RetentionPolicy
from crm.retention.rules import trigger_cutoff
from crm.sealed_files import SealedFile

if TYPE_CHECKING:
    from crm.permissions import User

LINK_SALT = "consent.disclosure.download"


class LinkInvalid(Exception):
    """The link is not one this server signed for this user and package."""


class LinkExpired(LinkInvalid):
    """The link was signed, but more than DISCLOSURE_LINK_SECONDS ago."""


def disclosure_packages_for(user: User) -> QuerySet[DisclosurePackage]:
    """The packages `user` may see: those of the requests they see (the request desk's gate)."""
    return DisclosurePackage.objects.restrict(user, "view")


def download_token(*, package: DisclosurePackage, user: User) -> str:
    """A signed, timestamped token naming the package and the user it is for (django.core.signing)."""
    return signing.dumps({"p": package.pk, "u": user.pk}, salt=LINK_SALT, compress=False)


def download_token_check(*, token: str, package_id: int, user: User) -> None:
    """Raise LinkExpired / LinkInvalid unless `token` was made for this package and this user within
    DISCLOSURE_LINK_SECONDS."""
    try:
        data: Any = signing.loads(token, salt=LINK_SALT, max_age=int(settings.DISCLOSURE_LINK_SECONDS))
    except signing.SignatureExpired as exc:
        raise LinkExpired from exc
    except signing.BadSignature as exc:
        raise LinkInvalid from exc
    if data != {"p": package_id, "u": user.pk}:
        raise LinkInvalid


def downloadable(*, user: User, package_id: int) -> DisclosurePackage | None:
    """The package if `user` may see it and it can be downloaded now (ready, not past its deadline)."""
    return (
        disclosure_packages_for(user)
        .filter(pk=package_id, state=DisclosurePackage.State.READY, expires_at__gt=timezone.now())
        .exclude(file_name="")
        .first()
    )


def package_chunks(package: DisclosurePackage) -> Iterator[bytes]:
    """The clear ZIP, chunk by chunk. Raises DecryptionError when the file does not open as this package's."""
    with open(package_dir() / package.file_name, "rb") as sealed:
        yield from decrypt_stream(sealed, bound_to=package.sealed_as)


def package_verify(package: DisclosurePackage) -> None:
    """Open the whole file once and compare it with the recorded SHA-256, so that a download never starts
    with a file that would break half-way (AES-GCM checks each chunk; this checks the whole)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in package_chunks(package):
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != package.sha256 or size != package.size:
        raise DecryptionError(f"consent.DisclosurePackage:{package.pk} does not match its recorded SHA-256.")


def packages_due(trigger: str, days: int, as_of: dt.datetime) -> list[QuerySet[DisclosurePackage]]:
    """The packages a retention policy of scope "dsar_packages" removes at `as_of` (crm.retention's record
    scope): ready ones `days` days past their download deadline, failed ones `days` days after they were
    ordered (the cutoff is the start of the JST day `days` days before `as_of`). Only the trigger "record
    age" applies to packages."""
    if trigger != RetentionPolicy.Trigger.RECORD_AGE:
        raise ValueError("開示データには「記録の作成からN日経過」の契機のみ使えます。")
    cutoff = trigger_cutoff(as_of, days)
    State = DisclosurePackage.State
    return [
        DisclosurePackage.objects.filter(
            Q(state=State.READY, expires_at__lt=cutoff) | Q(state=State.FAILED, created_at__lt=cutoff)
        )
    ]


def sealed_packages() -> Iterator[SealedFile]:
    """Every ready package's file (crm.sealed_files), for `rotate_keys` to re-seal under the newest key.

    Holding one locks its row while it is ready: the removal moves the row to expired before its files are
    deleted (after commit), so it either waits for the re-seal, which it then deletes, or the re-seal finds
    the package gone and leaves its file alone."""
    ready = (
        DisclosurePackage.objects.filter(state=DisclosurePackage.State.READY)
        .exclude(file_name="")
        .order_by("pk")
        .values_list("pk", "file_name")
    )
    # Read whole first (ready packages are few: one a request, for DISCLOSURE_PACKAGE_DAYS): each hold is a
    # transaction of its own, never inside a cursor still being read.
    for pk, name in list(ready):
        yield SealedFile(
            path=package_dir() / name,
            bound_to=DisclosurePackage(pk=pk).sealed_as,
            hold=functools.partial(_package_held, pk),
        )


@contextmanager
def _package_held(pk: int) -> Iterator[bool]:
    with transaction.atomic():
        yield (
            DisclosurePackage.objects.select_for_update()
            .filter(pk=pk, state=DisclosurePackage.State.READY)
            .exists()
        )
