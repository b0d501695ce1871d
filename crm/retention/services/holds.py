"""Legal holds (リーガルホールド): placing and releasing them, and carrying them across a backup restore.

A hold in force stops every erasure of its customer (GDPR Art. 17(3)(b)/(e)); the erasure path re-checks it in
the very statement that acts (crm.retention.services.erasure).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from crm.models import AuditEntry, Customer
from crm.retention import rules
from crm.retention.models import LegalHold
from crm.retention.services.errors import RetentionError
from crm.retention.services.tombstones import customer_id_batches, tombstone_key

if TYPE_CHECKING:
    import datetime as dt

    from django.contrib.auth.models import User


def legal_hold_place(
    *,
    customer_ids: Iterable[int],
    reason: str,
    placed_by: User,
    until: dt.datetime | None = None,
    reference: str = "",
    note: str = "",
) -> list[LegalHold]:
    """Place a hold on each customer, all or none.

    The customer rows are locked first (FOR UPDATE, in id order): a batch that already holds one makes us
    wait and then find the customer gone (refused, nothing written); a batch that comes later skips the
    locked row (SKIP LOCKED) and, once we commit, sees the hold in its predicate. A hold and an erasure
    never cross unseen (the foreign key alone would only be checked at commit: it is deferred)."""
    if reason not in LegalHold.Reason.values:
        raise RetentionError("保存義務の理由を選択してください。")
    if until is not None and until <= timezone.now():
        raise RetentionError("保存期限は未来の日時を指定してください。")
    ids = sorted({int(i) for i in customer_ids})
    if not ids:
        raise RetentionError("対象の顧客を指定してください。")
    with transaction.atomic():
        existing = set(
            Customer.objects.filter(pk__in=ids)
            .order_by("pk")
            .select_for_update(of=("self",))
            .values_list("pk", flat=True)
        )
        missing = [i for i in ids if i not in existing]
        if missing:
            raise RetentionError(
                f"存在しない顧客が含まれています（{len(missing)}件）。何も設定していません。"
            )
        holds = LegalHold.objects.bulk_create(
            [
                LegalHold(
                    customer_id=i,
                    reason=reason,
                    placed_by=placed_by,
                    until=until,
                    reference=reference,
                    note=note,
                )
                for i in ids
            ]
        )
        legal_hold_audit(holds, placed_by, "placed")
    return holds


def legal_hold_release(*, holds: Iterable[LegalHold], released_by: User) -> int:
    """End holds now. A released hold stops protecting the customer from the next run."""
    with transaction.atomic():
        pks = [h.pk for h in holds]
        locked = list(LegalHold.objects.filter(pk__in=pks, released_at__isnull=True).select_for_update())
        now = timezone.now()
        for hold in locked:
            hold.released_at = now
            hold.released_by = released_by
        LegalHold.objects.bulk_update(locked, ["released_at", "released_by"])
        legal_hold_audit(locked, released_by, "released")
    return len(locked)


def legal_hold_audit(holds: list[LegalHold], actor: User | None, what: str) -> None:
    """One audit entry for holds placed, released or restored together (ids and reason codes only)."""
    if not holds:
        return
    AuditEntry.objects.create(
        content_type=ContentType.objects.get_for_model(LegalHold),
        object_pk=str(holds[0].pk) if len(holds) == 1 else f"legal-hold-batch:{holds[0].pk}-{holds[-1].pk}",
        object_repr=f"リーガルホールド {len(holds)}件",
        action=AuditEntry.Action.CREATE if what in ("placed", "restored") else AuditEntry.Action.UPDATE,
        changes={},
        actor=actor,
        additional_data={
            "legal_hold": {
                "event": what,
                "reason": holds[0].reason,
                "holds": [h.pk for h in holds],
                "customer_ids": [h.customer_id for h in holds],
            }
        },
    )


# --- legal holds after a restore -----------------------------------------------------------------------

HOLD_KIND = "legal_hold"
RESTORED_HOLD_NOTE = "バックアップ復元後に証跡ファイルから再設定（元の備考は書き出していません）"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def legal_holds_export(*, stream: Any) -> int:
    """Write every legal hold that names a customer as one JSON line (`"kind": "legal_hold"`), beside the
    tombstones: a backup restored later must not forget a hold placed after it, or the next run would
    erase what the hold protects. The customer is named by the tombstone key's hash of their id, as in a
    tombstone; the free-text note is not written (it can hold anything). Staff are named by username."""
    key = tombstone_key()
    n = 0
    for h in (
        LegalHold.objects.filter(customer_id__isnull=False)
        .select_related("placed_by", "released_by")
        .order_by("pk")
        .iterator(chunk_size=2000)
    ):
        row = {
            "kind": HOLD_KIND,
            "subject_hash": rules.subject_hash(key, int(h.customer_id or 0)),  # never 0: filtered above
            "reason": h.reason,
            "reference": h.reference,
            "placed_by": h.placed_by.get_username(),
            "placed_at": _iso(h.placed_at),
            "until": _iso(h.until),
            "released_at": _iso(h.released_at),
            "released_by": h.released_by.get_username() if h.released_by else None,
        }
        stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    return n


def _staff_resolver(actor: User | None) -> Any:
    """username → user of the restored database; a user missing there (created after the backup) is
    replaced by `actor`, else by the earliest superuser, so that no hold is dropped for want of a user."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    cache: dict[str, Any] = {}

    def resolve(username: str | None) -> Any:
        if not username:
            return None
        if username not in cache:
            found = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
            if found is None:
                found = actor or user_model.objects.filter(is_superuser=True).order_by("pk").first()
            if found is None:
                raise RetentionError(
                    "保存義務を復元できません: 設定者が見つからず、代わりとなる管理者もいません。"
                )
            cache[username] = found
        return cache[username]

    return resolve


def legal_holds_import(*, lines: Iterable[str], actor: User | None = None) -> Counter[str]:
    """After a restore: put back every exported hold the restored database lacks (and the release of one
    released since), before tombstones are re-applied, so that a restore never erases what a hold protects.

    Holds are matched to restored customers by the keyed hash of their id (walking the customers, as
    tombstones_reapply does) and to existing holds by (customer, reason, placed_at): running it twice adds
    nothing. A hold whose customer is not in the restored database is counted as `unmatched` (the person is
    not there to protect). Tombstone lines are ignored here. Returns counts only.
    """
    from django.utils.dateparse import parse_datetime

    wanted: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        if not line.strip():
            continue
        d = json.loads(line)
        if d.get("kind") == HOLD_KIND:
            wanted.setdefault(d["subject_hash"], []).append(d)
    counts: Counter[str] = Counter()
    if not wanted:
        return counts
    key = tombstone_key()
    staff = _staff_resolver(actor)
    matched: set[str] = set()
    for ids in customer_id_batches(5000):
        hits = {rules.subject_hash(key, i): i for i in ids}
        hits = {h: i for h, i in hits.items() if h in wanted}
        if not hits:
            continue
        matched.update(hits)
        with transaction.atomic():
            # As legal_hold_place: the customers are locked so no batch erases one while its hold returns.
            present = set(
                Customer.objects.filter(pk__in=hits.values())
                .order_by("pk")
                .select_for_update(of=("self",))
                .values_list("pk", flat=True)
            )
            created: list[LegalHold] = []
            released: list[LegalHold] = []
            for h, cid in hits.items():
                if cid not in present:
                    continue
                for d in wanted[h]:
                    placed_at = parse_datetime(d["placed_at"])
                    if placed_at is None:
                        raise RetentionError("リーガルホールドの行に有効な placed_at がありません。")
                    released_at = parse_datetime(d["released_at"]) if d.get("released_at") else None
                    existing = LegalHold.objects.filter(
                        customer_id=cid, reason=d["reason"], placed_at=placed_at
                    ).first()
                    if existing is None:
                        created.append(
                            LegalHold(
                                customer_id=cid,
                                reason=d["reason"],
                                reference=(d.get("reference") or "")[:64],
                                note=RESTORED_HOLD_NOTE,
                                placed_by=staff(d["placed_by"]),
                                placed_at=placed_at,
                                until=parse_datetime(d["until"]) if d.get("until") else None,
                                released_at=released_at,
                                released_by=staff(d.get("released_by")) if released_at else None,
                            )
                        )
                    elif released_at and existing.released_at is None:
                        existing.released_at = released_at
                        existing.released_by = staff(d.get("released_by"))
                        released.append(existing)
                    else:
                        counts["present"] += 1
            LegalHold.objects.bulk_create(created)
            LegalHold.objects.bulk_update(released, ["released_at", "released_by"])
            legal_hold_audit(created, actor, "restored")
            legal_hold_audit(released, actor, "release_restored")
            counts["restored"] += len(created)
            counts["release_restored"] += len(released)
    counts["unmatched"] = sum(len(v) for h, v in wanted.items() if h not in matched)
    return +counts
