"""The record of processing activities (GDPR Art. 30(1)): one entry per purpose of use, generated from the
purposes register, the classification registry, the recipients, their cross-border bases, the retention
policies and the systems of the data map."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from consent.models import Purpose, PurposeCategory
from consent.provision import selectors
from consent.provision.models import DataSystem, Recipient
from crm.classification import REGISTRY, DataClass
from crm.retention.models import RetentionPolicy

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

# The CRM's own technical and organisational measures (Art. 32), as built (README: "How personal data is
# protected"); each system of the data map adds its own.
CRM_SECURITY_MEASURES = (
    gettext_lazy("直接識別子の暗号化（AES-256-GCM、鍵はSECRET_KEYと別管理・ローテーション可）"),
    gettext_lazy("完全一致検索はブラインドインデックス（HMAC-SHA256）"),
    gettext_lazy("チーム単位のアクセス制御（一つのゲート）、個人データの表示はマスキング"),
    gettext_lazy("改ざん検知可能な監査ログ（ハッシュチェーン、外部アンカー）"),
    gettext_lazy("二要素認証、ログイン試行の制限、セッションの自動終了"),
    gettext_lazy("保存期間ポリシーによる消去・匿名化、リーガルホールド"),
)


@dataclass
class RopaEntry:
    purpose: str
    legal_basis: str
    subjects: str
    data_categories: list[str]
    recipients: list[str]
    transfers: list[str]
    erasure: list[str]
    security: list[str]


def _subjects(purpose: Purpose) -> str:
    if purpose.category == PurposeCategory.COOKIES:
        return _("Webサイト・アプリの訪問者（Cookie等）")
    return _("顧客（会員・購入者）")


def _categories(code: str) -> list[str]:
    classes = {
        spec.data_class
        for fields in REGISTRY.models.values()
        for spec in fields.values()
        if code in spec.purposes and spec.data_class != DataClass.NOT_PERSONAL
    }
    return [str(c.label) for c in DataClass if c in classes]


def _erasure_limits() -> list[str]:
    out = []
    for p in RetentionPolicy.objects.order_by("name"):
        state = _("有効") if p.enabled else _("無効")
        out.append(
            f"{p.name}: {p.get_scope_display()} / {p.get_trigger_display()}（N={p.days}）/ "
            f"{p.get_action_display()}（{state}）"
        )
    return out


def _transfer(r: Recipient) -> str:
    basis = selectors.transfer_basis(recipient=r, on=selectors.today())
    if basis is None:
        return _("%(name)s（%(country)s）: 根拠なし（法第28条）") % {"name": r.name, "country": r.country}
    safeguard = f"、{basis.safeguards}" if basis.safeguards else ""
    return f"{r.name}（{r.country}）: {basis.get_kind_display()}{safeguard}"


def ropa_entries(*, user: User | AnonymousUser) -> list[RopaEntry]:
    """Every purpose of use with its Art. 30(1)(b)–(g) items."""
    recipients = list(Recipient.objects.restrict(user, "view").prefetch_related("purposes"))
    erasure = _erasure_limits()
    security = [str(m) for m in CRM_SECURITY_MEASURES] + [
        f"{s.name}: {s.security_measures}"
        for s in DataSystem.objects.restrict(user, "view").exclude(security_measures="")
    ]
    entries = []
    for purpose in Purpose.objects.select_related("current_version").order_by("display_order", "code"):
        mine = [r for r in recipients if purpose in r.purposes.all()]
        entries.append(
            RopaEntry(
                purpose=str(purpose),
                legal_basis=purpose.get_legal_basis_display(),
                subjects=_subjects(purpose),
                data_categories=_categories(purpose.code),
                recipients=[f"{r.name}（{r.get_kind_display()}）" for r in mine],
                transfers=[_transfer(r) for r in mine if r.foreign],
                erasure=erasure,
                security=security,
            )
        )
    return entries


ROPA_HEADER = (
    "purpose",
    "legal_basis",
    "subjects",
    "data_categories",
    "recipients",
    "third_country_transfers",
    "erasure_time_limits",
    "security_measures",
)


def ropa_csv_rows(entries: list[RopaEntry]) -> list[list[str]]:
    return [
        [
            e.purpose,
            e.legal_basis,
            e.subjects,
            " / ".join(e.data_categories),
            " / ".join(e.recipients),
            " / ".join(e.transfers),
            " / ".join(e.erasure),
            " / ".join(e.security),
        ]
        for e in entries
    ]
