"""The disclosure package of a request (開示, APPI Art. 33; GDPR Arts. 15 and 20), stored encrypted.

The ZIP itself (crm.disclosure.package) is a file sealed under the field keys (crm.crypto.encrypt_stream),
bound to this row, in DISCLOSURE_PACKAGE_DIR; this row says where it is and what it is.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _

from consent.requests.models import DataSubjectRequest, Language, RequestPartQuerySet
from crm.fields import staff_reference


class DisclosurePackage(models.Model):
    """One package built for a disclosure or portability request.

    `state` moves building → ready → expired, or building → failed, only by the conditional UPDATEs of
    consent.disclosure.services (never assigned by a form): a build publishes its file first and then
    flips building → ready in the same statement that records the file, so a worker killed at any moment
    leaves either no package or a whole one. `progress` (percent) is written while it builds. `size` and
    `sha256` are those of the clear ZIP the requester receives. Who sees it is who sees its request
    (RequestPartQuerySet: the request desk's rule of the gate, not a copy of it).
    """

    class State(models.TextChoices):
        BUILDING = "building", _("作成中")
        READY = "ready", _("ダウンロード可")
        FAILED = "failed", _("作成失敗")
        EXPIRED = "expired", _("期限切れ（削除済み）")

    request = models.ForeignKey(
        DataSubjectRequest,
        on_delete=models.PROTECT,
        related_name="disclosure_packages",
        verbose_name=_("開示等請求"),
    )
    state = models.CharField(_("状態"), max_length=10, choices=State.choices, default=State.BUILDING)
    language = models.CharField(_("言語"), max_length=2, choices=Language.choices)
    progress = models.PositiveSmallIntegerField(_("進捗（%）"), default=0)
    attempts = models.PositiveSmallIntegerField(_("作成の試行回数"), default=0)
    file_name = models.CharField(_("ファイル名"), max_length=100, blank=True, default="", editable=False)
    size = models.BigIntegerField(_("サイズ（バイト）"), null=True, blank=True)
    sha256 = models.CharField(_("SHA-256ハッシュ"), max_length=64, blank=True, default="")
    contents = models.JSONField(
        _("収録内容（表ごとの件数）"), default=dict, blank=True, help_text=_("件数のみ。値は含みません。")
    )
    error = models.CharField(_("エラー"), max_length=100, blank=True, default="")
    requested_by = staff_reference(_("作成を指示した者"))
    created_at = models.DateTimeField(_("作成指示日時"), db_default=Now())
    ready_at = models.DateTimeField(_("作成完了日時"), null=True, blank=True)
    expires_at = models.DateTimeField(_("ダウンロード期限"), null=True, blank=True)
    removed_at = models.DateTimeField(_("削除日時"), null=True, blank=True)

    objects = RequestPartQuerySet.as_manager()

    class Meta:
        verbose_name = _("開示データ")
        verbose_name_plural = _("開示データ")
        ordering = ["-id"]
        constraints = [
            # One package in the making per request: a second order while one builds gets that one.
            models.UniqueConstraint(
                fields=["request"], condition=models.Q(state="building"), name="consent_package_one_building"
            ),
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="consent_package_progress_percent"
            ),
        ]
        indexes = [models.Index(fields=["state", "expires_at"], name="consent_package_expiry_idx")]

    def __str__(self) -> str:
        return f"開示データ #{self.pk}" if self.pk else "開示データ（未保存）"

    @property
    def sealed_as(self) -> str:
        """What the file's encryption is bound to: this row (a file moved to another row does not open)."""
        return f"consent.DisclosurePackage:{self.pk}"
