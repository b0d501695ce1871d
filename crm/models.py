"""The customer record and what protects it: teams, memberships, encrypted customers, the audit chain."""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import ipaddress
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from auditlog.models import AbstractLogEntry
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from crm.audit import identity, signing
from crm.choices import CollectionChannel
from crm.crypto import email_index, name_index, normalise_email, normalise_phone, phone_index
from crm.django_adapter import AfterPreSave
from crm.fields import EncryptedCharField, EncryptedDateField, EncryptedTextField
from crm.permissions import MODEL_PERMS, RestrictedQuerySet
from crm.rawsql import ConstantInsert
from crm.validators import (
    my_number_errors,
    normalise_postal_code,
    validate_email,
    validate_kana,
    validate_no_my_number,
    validate_phone,
    validate_postal_code,
)

if TYPE_CHECKING:
    pass


class Team(models.Model):
    """A business unit that owns customers. Object permissions are granted on teams, never per customer."""

    code = models.SlugField(_("コード"), max_length=40, unique=True)
    name = models.CharField(_("チーム名"), max_length=100)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("チーム")
        verbose_name_plural = _("チーム")
        ordering = ["code"]
        permissions = [
            ("view_team_customers", _("チームの顧客を閲覧できる")),
            ("change_team_customers", _("チームの顧客を変更できる")),
            ("delete_team_customers", _("チームの顧客を削除（消去）できる")),
        ]

    def __str__(self) -> str:
        return self.name


class TeamUserObjectPermission(UserObjectPermissionBase):
    """Direct-FK guardian table for per-user permissions on a team (generic rows do not scale)."""

    content_object = models.ForeignKey(Team, on_delete=models.CASCADE)


class TeamGroupObjectPermission(GroupObjectPermissionBase):
    """Direct-FK guardian table for per-group permissions on a team."""

    content_object = models.ForeignKey(Team, on_delete=models.CASCADE)


class TeamMembership(models.Model):
    """A user's place in a team. Its services grant and revoke the team object permissions."""

    class Role(models.TextChoices):
        MEMBER = "member", _("メンバー（閲覧・変更）")
        LEAD = "lead", _("リーダー（閲覧・変更・消去）")

    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("チーム")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="team_memberships",
        verbose_name=_("ユーザー"),
    )
    role = models.CharField(_("役割"), max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(_("作成日時"), auto_now_add=True)

    class Meta:
        verbose_name = _("チーム所属")
        verbose_name_plural = _("チーム所属")
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="uniq_team_membership")]

    def __str__(self) -> str:
        return f"{self.team_id}:{self.user_id}"


class CustomerQuerySet(RestrictedQuerySet["Customer"]):
    """Customers, behind the gate (crm.permissions): a team's customers through the team's object
    permissions, after the role's model permission of the action (erasing needs crm.erase_customer)."""

    gate_team = "team"
    gate_permissions = MODEL_PERMS

    def gate_scope_action(self, action: str) -> str:
        return action


class Customer(models.Model):
    """A person whose personal information the company holds (個人情報, APPI Art. 2(1)).

    Direct identifiers are encrypted at rest (crm.fields) and searchable only through blind indexes
    (`*_bidx`). Every field is classified in crm/field_classes.py. `str()` carries no
    personal data because it ends up in the audit log and in error pages.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("有効")
        CLOSED = "closed", _("退会")
        STOP_USE = "stop_use", _("利用停止（法第35条）")
        ANONYMISED = "anonymised", _("匿名化済み")

    Channel = CollectionChannel

    class Gender(models.TextChoices):
        UNSPECIFIED = "", _("未回答")
        FEMALE = "female", _("女性")
        MALE = "male", _("男性")
        OTHER = "other", _("その他")

    # Identity of the record (not personal by itself).
    team = models.ForeignKey(
        Team, on_delete=models.PROTECT, related_name="customers", verbose_name=_("担当チーム")
    )
    status = models.CharField(_("状態"), max_length=12, choices=Status.choices, default=Status.ACTIVE)

    # Quasi-identifiers: kept in clear for exact lookup, masked in lists.
    # Unique per team like the external id (uniq_customer_team_member_no): a client writing one team's
    # customers must not learn from a refusal that another team has someone with this member number.
    member_no = models.CharField(
        _("会員番号"), max_length=20, null=True, blank=True, validators=[validate_no_my_number]
    )
    # Unique per team, not across teams (uniq_customer_team_external_id): an API client names its own team's
    # customers, so another team's use of the same id can neither block it nor tell it that such a customer
    # exists.
    external_id = models.CharField(
        _("外部ID"), max_length=64, null=True, blank=True, validators=[validate_no_my_number]
    )

    # Direct identifiers: encrypted at rest.
    family_name = EncryptedCharField(_("姓"), max_length=50, validators=[validate_no_my_number])
    given_name = EncryptedCharField(_("名"), max_length=50, blank=True, validators=[validate_no_my_number])
    family_name_kana = EncryptedCharField(
        _("セイ（フリガナ）"), max_length=50, blank=True, validators=[validate_kana]
    )
    given_name_kana = EncryptedCharField(
        _("メイ（フリガナ）"), max_length=50, blank=True, validators=[validate_kana]
    )
    email = EncryptedCharField(
        _("メールアドレス"), max_length=254, blank=True, validators=[validate_email, validate_no_my_number]
    )
    phone = EncryptedCharField(
        _("電話番号"),
        max_length=32,
        blank=True,
        validators=[validate_phone],
        help_text=_("国際形式（E.164）で保存します。"),
    )
    postal_code = EncryptedCharField(
        _("郵便番号"), max_length=8, blank=True, validators=[validate_postal_code]
    )
    address = EncryptedCharField(_("住所"), max_length=300, blank=True, validators=[validate_no_my_number])
    birth_date = EncryptedDateField(_("生年月日"), null=True, blank=True)

    # Quasi-identifiers that nobody searches: encrypted too.
    app_user_id = EncryptedCharField(
        _("アプリ利用者ID"), max_length=100, blank=True, validators=[validate_no_my_number]
    )
    device_id = EncryptedCharField(
        _("端末ID"), max_length=100, blank=True, validators=[validate_no_my_number]
    )
    pos_card_no = EncryptedCharField(
        _("ポイントカード番号"), max_length=30, blank=True, validators=[validate_no_my_number]
    )

    # Attributes.
    prefecture = models.CharField(_("都道府県"), max_length=4, blank=True, db_index=False)
    gender = models.CharField(_("性別"), max_length=10, choices=Gender.choices, blank=True, default="")
    preferences = models.JSONField(_("嗜好・設定"), default=dict, blank=True)
    notes = EncryptedTextField(_("メモ"), blank=True, validators=[validate_no_my_number])

    # Provenance (取得の経緯).
    collection_channel = models.CharField(_("取得チャネル"), max_length=20, choices=Channel.choices)
    collected_at = models.DateTimeField(_("取得日時"), default=timezone.now)
    acquisition_note = EncryptedTextField(_("取得の経緯"), blank=True, validators=[validate_no_my_number])

    # Anonymised / generalised values written by anonymisation.
    age_band = models.CharField(_("年代"), max_length=10, blank=True)

    # Blind indexes: keyed hashes of normalised values, for exact search.
    email_bidx = models.CharField(max_length=32, blank=True, editable=False)
    phone_bidx = models.CharField(max_length=32, blank=True, editable=False)
    name_bidx = models.CharField(max_length=32, blank=True, editable=False)
    kana_bidx = models.CharField(max_length=32, blank=True, editable=False)

    last_activity_at = models.DateTimeField(_("最終利用日時"), null=True, blank=True)
    closed_at = models.DateTimeField(_("退会日時"), null=True, blank=True)
    # 第三者提供の停止 (APPI Art. 35(3)): set only by crm.services.customer_stop_provision (the request desk's
    # fulfilment); consent.provision.services.provision_record refuses a provision naming the person after it.
    provision_stopped_at = models.DateTimeField(
        _("第三者提供の停止日時（法第35条第3項）"), null=True, blank=True
    )
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = _("顧客")
        verbose_name_plural = _("顧客")
        ordering = ["-id"]
        permissions = [
            ("view_customer_pii", _("個人データ（氏名・連絡先等）をマスクなしで閲覧できる")),
            ("view_all_customers", _("全チームの顧客を閲覧できる")),
            ("change_all_customers", _("全チームの顧客を変更できる")),
            # Erasure and anonymisation (crm.retention.services): on a team's customers with the team's
            # delete permission (team leads), on every customer with the second (the request desk).
            ("erase_customer", _("顧客を消去・匿名化できる（チームの消去権限の範囲）")),
            ("erase_all_customers", _("全チームの顧客を消去・匿名化できる（開示等請求対応）")),
        ]
        constraints = [
            # external_id first: the admin search looks it up alone, the API with its team.
            models.UniqueConstraint(fields=["external_id", "team"], name="uniq_customer_team_external_id"),
            # member_no first: the search looks it up alone.
            models.UniqueConstraint(fields=["member_no", "team"], name="uniq_customer_team_member_no"),
        ]
        indexes = [
            models.Index(fields=["team", "-id"], name="customer_team_id_idx"),
            # The exact search's blind indexes, each with the team and the id (crm/0025): each lookup of the
            # search (crm.selectors.customer_search_counted) is an index-only scan with a staff user's scope
            # inside the index. A lookup by the blind index alone still uses them.
            *(
                models.Index(
                    fields=[f"{name}_bidx", "team"], include=["id"], name=f"customer_{name}_team_bidx"
                )
                for name in ("email", "phone", "name", "kana")
            ),
            models.Index(fields=["status", "last_activity_at"], name="customer_status_activity_idx"),
            # The changelist sorted by last activity (the admin appends the pk): crm/0007.
            models.Index(fields=["last_activity_at", "id"], name="customer_activity_id_idx"),
        ]

    def __str__(self) -> str:
        return f"顧客 #{self.pk}" if self.pk else "顧客（未保存）"

    @property
    def full_name(self) -> str:
        return f"{self.family_name} {self.given_name}".strip()

    @property
    def full_name_kana(self) -> str:
        return f"{self.family_name_kana} {self.given_name_kana}".strip()

    def refresh_blind_indexes(self) -> None:
        """Recompute the keyed hashes from the clear values (services call this before saving)."""
        self.email_bidx = email_index(self.email) if self.email else ""
        self.phone_bidx = (phone_index(self.phone) or "") if self.phone else ""
        self.name_bidx = name_index(self.full_name) if self.family_name else ""
        self.kana_bidx = name_index(self.full_name_kana) if self.family_name_kana else ""

    def normalise(self) -> None:
        """The stored forms: NFKC case-folded e-mail, E.164 phone, NNN-NNNN postal code."""
        if self.email:
            self.email = normalise_email(self.email)
        if self.phone:
            self.phone = normalise_phone(self.phone) or self.phone
        if self.postal_code:
            self.postal_code = normalise_postal_code(self.postal_code) or self.postal_code

    def clean_fields(self, exclude: Any = None) -> None:
        # Normalise first, so that length and format rules judge the value that is stored: "〒100-0005" is
        # nine characters (max_length=8 refused it) and "ｔａｒｏ@example.com" fails the e-mail pattern.
        self.normalise()
        super().clean_fields(exclude=exclude)

    def clean(self) -> None:
        # The My Number rule on the fields without their own validator: preferences (JSON), phone, kana…
        errors = my_number_errors(self)
        if errors:
            raise ValidationError(errors)


class PurchaseQuerySet(RestrictedQuerySet["Purchase"]):
    """Purchases, reachable with their team's customers (the team stays when erasure unlinks the customer)."""

    gate_team = "team"


class Purchase(models.Model):
    """A purchase. Kept for the tax/accounting retention periods (法人税法: 7 years; 会社法 432(2): 10 years)
    even after the customer is erased: erasure unlinks it (customer → NULL) instead of deleting it."""

    # Indexed by uniq_purchase_customer_time_key in Meta, which leads with the customer: a single-column
    # index beside it would be one more index for every row to maintain.
    # Both keys are kept by triggers (crm migration 0028), not by PostgreSQL's per-row foreign keys: one
    # set-based check per statement (a 10,000,000-row import spent 77–122 s in the per-row checks), the
    # same rule, the same lock, a deferred check on the customer's or team's deletion.
    customer = models.ForeignKey(
        Customer,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="purchases",
        verbose_name=_("顧客"),
        db_index=False,
        db_constraint=False,
    )
    team = models.ForeignKey(
        Team, on_delete=models.PROTECT, related_name="+", verbose_name=_("担当チーム"), db_constraint=False
    )
    # Imported purchases have none (the CSV has no order number): NULLs do not collide, so the unique index
    # holds only the rows that have one (the constraint's condition; an imported row adds no entry). Unique
    # by the constraint in Meta, not `unique=True`, which would add a second, varchar_pattern_ops index for
    # prefix LIKE searches that nothing runs.
    order_no = models.CharField(_("注文番号"), max_length=40, null=True, blank=True)
    # Yen; imported files may carry decimals (tax-inclusive unit prices), kept exactly.
    amount = models.DecimalField(_("金額"), max_digits=14, decimal_places=2)
    quantity = models.PositiveIntegerField(_("数量"), default=1)
    category = models.CharField(_("商品カテゴリ"), max_length=64, blank=True, default="")
    currency = models.CharField(_("通貨"), max_length=3, default="JPY")
    channel = models.CharField(_("チャネル"), max_length=20, choices=Customer.Channel.choices)
    # Indexed after the customer (uniq_purchase_customer_time_key): a customer's purchases in time order.
    purchased_at = models.DateTimeField(_("購入日時"))
    # The natural key of an imported row (crm.analytics.imports), unique with the customer and purchased_at
    # (which the key's hash covers: team and external id, i.e. the customer, and the instant), so a
    # re-import inserts nothing.
    import_key = models.UUIDField(_("取込キー"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    objects = PurchaseQuerySet.as_manager()

    class Meta:
        verbose_name = _("購買")
        verbose_name_plural = _("購買")
        constraints = [
            models.UniqueConstraint(
                fields=["order_no"],
                condition=models.Q(order_no__isnull=False),
                name="uniq_purchase_order_no_present",
            ),
            # The table's one large index, three uses (bench/README.md, issue #18):
            # - the customer foreign key's index: erasure's unlink, a customer's history in time order, the
            #   "bought since" segments;
            # - the import's idempotence (the key is unique per customer and instant; NULL for purchases not
            #   imported, which never collide). The import inserts in this order, so a file's entries land
            #   in one sweep of the index, not on random pages;
            # - with the amount included, an index-only scan in customer order feeds the per-customer-day
            #   summaries of RFM and CLV through two streaming GROUP BYs, no sort or hash of ten million rows
            #   (52 s → 11 s at 10 M purchases).
            # Nothing ranges over purchased_at across all customers but the KPI's months, which read most of
            # the table anyway (a sequential scan).
            models.UniqueConstraint(
                fields=["customer", "purchased_at", "import_key"],
                include=["amount"],
                name="uniq_purchase_customer_time_key",
            ),
        ]

    def __str__(self) -> str:
        return f"購買 #{self.pk}"


class CustomerEventQuerySet(RestrictedQuerySet["CustomerEvent"]):
    """Behavioural events, reachable with their customer (visitor-only events: all-customers roles only)."""

    gate_customer = "customer"


class CustomerEvent(models.Model):
    """A behavioural event (page view, purchase, app open …) for analytics. Linked to a customer once the
    visitor is identified; until then only to an anonymous visitor id (a quasi-identifier)."""

    class Kind(models.TextChoices):
        PAGE_VIEW = "page_view", _("ページ閲覧")
        PURCHASE = "purchase", _("購入")
        APP_OPEN = "app_open", _("アプリ起動")
        EMAIL_OPEN = "email_open", _("メール開封")
        STORE_VISIT = "store_visit", _("来店")

    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("顧客"),
    )
    visitor_id = models.CharField(_("訪問者ID"), max_length=64, blank=True, db_index=True)
    kind = models.CharField(_("種類"), max_length=20, choices=Kind.choices)
    occurred_at = models.DateTimeField(_("発生日時"))
    properties = models.JSONField(_("属性"), default=dict, blank=True)
    source = models.CharField(_("送信元"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("登録日時"), auto_now_add=True)

    objects = CustomerEventQuerySet.as_manager()

    class Meta:
        verbose_name = _("行動イベント")
        verbose_name_plural = _("行動イベント")
        indexes = [models.Index(fields=["occurred_at"], name="event_occurred_idx")]

    def __str__(self) -> str:
        return f"イベント #{self.pk}"


class EncryptionCanary(models.Model):
    """One known value encrypted under the configured keys; start-up decrypts it to catch a wrong key."""

    token = EncryptedCharField(max_length=64)

    class Meta:
        verbose_name = _("暗号鍵カナリア")

    def __str__(self) -> str:
        return "canary"


AUDIT_CHAIN_LOCK = 0x4A55_4449  # arbitrary, stable advisory-lock id for the audit chain
GENESIS_HASH = "0" * 64


def _json_number_as_stored(text: str) -> int | float:
    """Parse a JSON float the way it comes back from a jsonb column.

    PostgreSQL stores JSON numbers as `numeric` and prints them without exponent: `1e+16` comes back as
    `10000000000000000`, an int once decoded. Hashing the value as it will be read back keeps the chain
    verifiable for such values.
    """
    exponent = Decimal(text).as_tuple().exponent
    return int(Decimal(text)) if isinstance(exponent, int) and exponent >= 0 else float(text)


def _as_stored_json(value: Any) -> Any:
    if not value:
        return value
    return json.loads(json.dumps(value, default=str), parse_float=_json_number_as_stored)


@functools.lru_cache(maxsize=4096)  # a few addresses write most entries; each is parsed on write and seal
def _canonical_ip(value: str | None) -> str | None:
    """One spelling per address (PostgreSQL's inet prints '2001:DB8:0::1' as '2001:db8::1')."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


_CHAIN_SCALARS = (
    "object_pk",
    "object_id",
    "object_repr",
    "action",
    "changes_text",
    "actor_email",
    "cid",
    "remote_port",
)


class AuditEntry(ConstantInsert, AfterPreSave, AbstractLogEntry):
    """django-auditlog's log entry, chained by keyed hash for tamper evidence.

    Two steps, so that no business transaction holds the chain lock:
    1. Insert (inside the writer's transaction, no lock): the entry carries `entry_mac` =
       HMAC(AUDIT_CHAIN_KEY, canonical payload with the entry's id), so a row inserted around the model
       without the key, or a copy of a genuine row under another id, shows (crm/audit/signing.py).
    2. Seal (crm.audit.sealing, by the sealer process `manage.py audit_sealer`, and every minute from beat):
       under an advisory lock held only for the seal, each pending entry whose entry_mac is valid gets
       `chain_seq` (gapless) and `chain_hash` = HMAC(AUDIT_CHAIN_KEY, previous hash ‖ payload with seq).
    The payload is the already redacted entry (personal values are `[redacted]` before they reach it), so
    erasure never needs to rewrite it.
    The newest link is also kept, signed, in AuditChainHead, so deleting the newest entries shows too.
    `manage.py audit_verify` (crm.audit.verification) recomputes the chain and names the first edited or
    missing entry.
    Migration 0006 makes the table append-only in the database as well (crm.audit.audit_maintenance).
    """

    chain_seq = models.BigIntegerField(_("連番"), unique=True, null=True, editable=False)
    chain_hash = models.CharField(_("チェーンハッシュ"), max_length=64, blank=True, editable=False)
    entry_mac = models.CharField(_("記録時署名"), max_length=67, blank=True, editable=False, db_default="")

    # AbstractLogEntry's fields without the indexes nothing here reads by: every audited write inserts into
    # each index, and the seal's UPDATE of chain_seq (never a HOT update) inserts into each again. Kept:
    # the primary key, chain_seq, the unsealed queue, (content type, object pk), object pk alone (the admin's
    # search), action (the admin's filter), timestamp and actor. Dropped (migration 0011): cid (never
    # filtered on), object_id (lookups go by object_pk), content type alone (the composite's leading
    # column), and the varchar_pattern_ops copies of object_pk and cid (no LIKE on either).
    content_type = models.ForeignKey(
        to="contenttypes.ContentType",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("content type"),
        db_index=False,
    )
    object_pk = models.CharField(max_length=255, verbose_name=_("object pk"))
    object_id = models.BigIntegerField(blank=True, null=True, verbose_name=_("object id"))
    cid = models.CharField(max_length=255, blank=True, null=True, verbose_name=_("Correlation ID"))

    if TYPE_CHECKING:
        # Declared by django-auditlog's AbstractLogEntry, which ships no type information: mypy's Django
        # plugin cannot see them through the untyped base.
        objects: ClassVar[models.Manager[AuditEntry]]
        changes: Any
        changes_text: str
        remote_addr: str | None
        remote_port: int | None
        timestamp: dt.datetime | None
        additional_data: Any
        serialized_data: Any
        action: int
        object_repr: str
        actor_id: int | None
        actor_email: str | None

    class Meta(AbstractLogEntry.Meta):
        verbose_name = _("監査ログ")
        verbose_name_plural = _("監査ログ")
        indexes = [
            models.Index(fields=["content_type", "object_pk"], name="auditentry_object_idx"),
            models.Index(fields=["object_pk"], name="auditentry_object_pk_idx"),
            # The sealer's queue: entries not yet chained (normally none, or a few for milliseconds).
            models.Index(fields=["id"], condition=models.Q(chain_seq=None), name="auditentry_unsealed_idx"),
        ]

    def chain_payload(self) -> dict[str, Any]:
        payload = {
            "seq": self.chain_seq,
            "content_type": self.content_type_id,
            "object_pk": self.object_pk,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "action": self.action,
            "changes": self.changes,
            "changes_text": self.changes_text,
            "actor": self.actor_id,
            "actor_email": self.actor_email,
            "remote_addr": _canonical_ip(self.remote_addr),
            # UTC whatever zone the writer used: the column hands back UTC.
            "timestamp": self.timestamp.astimezone(dt.UTC).isoformat() if self.timestamp else None,
            "cid": self.cid,
            "additional_data": self.additional_data,
        }
        # Covered only when set, so entries written before these were hashed still verify, while setting
        # them afterwards changes the hash.
        if self.serialized_data is not None:
            payload["serialized_data"] = self.serialized_data
        if self.remote_port is not None:
            payload["remote_port"] = self.remote_port
        # The row's own identity, for every entry signed since crm migration 0014 (its MAC says so).
        if signing.covers_id(self.entry_mac):
            payload["id"] = self.pk
        return payload

    def compute_entry_mac(self) -> str:
        payload = self.chain_payload()
        del payload["seq"]
        payload["id"] = self.pk
        return signing.entry_mac(payload)

    def entry_mac_valid(self) -> bool:
        """Whether the stored entry_mac is the key's MAC of this row, id included (what the sealer chains)."""
        return signing.covers_id(self.entry_mac) and hmac.compare_digest(
            self.entry_mac, self.compute_entry_mac()
        )

    def compute_chain_hash(self, previous: str) -> str:
        return signing.chain_hash(previous, self.chain_payload())

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise RuntimeError("Audit entries are append-only.")
        # The id is set before the insert (the MAC covers it): without force_insert Django would first try an
        # UPDATE of a row with that id.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)
        # Sealed after commit where AUDIT_SEAL_ON_COMMIT says so: crm.apps connects crm.audit.sealing to
        # post_save (that module reads these models; they do not import it back).

    def after_pre_save(self, using: str) -> None:
        # After pre_save, where auditlog's set_actor fills in the actor and address: sign what is stored
        # (crm.django_adapter.AfterPreSave says why this needs a private hook of Django).
        self.sign(using=using)

    def sign(self, using: str = "default") -> None:
        """Normalise the unsaved entry to what PostgreSQL will hand back, give it its id, and set entry_mac
        over both."""
        self.chain_seq, self.chain_hash = None, ""
        if self.pk is None:
            self.pk = identity.entry_id_reserve(using)
        if self.timestamp is None:
            self.timestamp = timezone.now()
        elif timezone.is_naive(self.timestamp):
            self.timestamp = timezone.make_aware(self.timestamp)
        # Sign the column types, not what the caller passed: auditlog hands an integer pk to the
        # CharField object_pk, which comes back as text. The sealer recomputes this from the stored row.
        columns = {f.name: f for f in self._meta.concrete_fields}
        for name in _CHAIN_SCALARS:
            setattr(self, name, columns[name].to_python(getattr(self, name)))
        # An unparsable forwarded address would make the insert fail; record no address instead.
        self.remote_addr = _canonical_ip(self.remote_addr)
        # Round-trip through JSON so the MAC sees what PostgreSQL will hand back.
        self.changes = _as_stored_json(self.changes)
        self.additional_data = _as_stored_json(self.additional_data) or None
        self.serialized_data = _as_stored_json(self.serialized_data) or None
        self.entry_mac = self.compute_entry_mac()

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Audit entries cannot be deleted.")


class AuditChainHead(models.Model):
    """The newest link of the audit chain (one row), signed with AUDIT_CHAIN_KEY.

    Advanced by the sealer in the same transaction as the entries it chains. The verifier expects the
    chain to reach exactly this head, so deleting the newest entries is detected; the signature stops
    someone without the key from pointing the head back at an older entry. Replaying an old copy of this
    row is not detectable here: the sealer anchors every head outside the database (crm.audit.anchor), and
    `audit_verify` checks the chain against the last one.
    """

    SINGLETON = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON, editable=False)
    seq = models.BigIntegerField(_("最終連番"))
    hash = models.CharField(_("最終チェーンハッシュ"), max_length=64)
    mac = models.CharField(_("署名"), max_length=64)
    updated_at = models.DateTimeField(_("更新日時"), auto_now=True)

    class Meta:
        verbose_name = _("監査ログの末尾")
        verbose_name_plural = _("監査ログの末尾")
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="auditchainhead_singleton")]

    def __str__(self) -> str:
        return f"#{self.seq}"

    @staticmethod
    def sign(seq: int, chain_hash: str) -> str:
        return signing.head_mac(seq, chain_hash)

    @classmethod
    def advance(cls, *, seq: int, chain_hash: str) -> None:
        """Move the head to the entry just written (caller holds the chain lock)."""
        values = {"seq": seq, "hash": chain_hash, "mac": cls.sign(seq, chain_hash)}
        # One UPDATE in the steady state; the row is created with the first entry (or by migration 0006).
        if not cls.objects.filter(pk=cls.SINGLETON).update(**values, updated_at=timezone.now()):
            cls.objects.create(pk=cls.SINGLETON, **values)

    def signature_valid(self) -> bool:
        return hmac.compare_digest(self.mac, self.sign(self.seq, self.hash))


# Areas of the crm app with models of their own live in sub-packages; importing them here registers them
# with the crm app (one app, one migration history).
from crm.analytics.models import *  # noqa: E402,F403
from crm.insights.models import *  # noqa: E402,F403
from crm.integrations.models import *  # noqa: E402,F403
from crm.retention.models import *  # noqa: E402,F403
