"""The public privacy page (no login): the items APPI Arts. 21 and 32 require the company to publish."""

from __future__ import annotations

from typing import cast

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from consent import rules, selectors
from consent.models import LegalBasis, Purpose, PurposeVersion

LANGS = ("ja", "en")

BASIS_EN: dict[str, str] = {
    LegalBasis.CONSENT: "Consent (GDPR Art. 6(1)(a))",
    LegalBasis.CONTRACT: "Performance of a contract (GDPR Art. 6(1)(b))",
    LegalBasis.LEGAL_OBLIGATION: "Legal obligation (GDPR Art. 6(1)(c))",
    LegalBasis.LEGITIMATE_INTEREST: "Legitimate interests (GDPR Art. 6(1)(f))",
}


# What the person can do about a purpose (consent.rules.person_rights), with the article.
RIGHT_LABELS = {
    rules.WITHDRAW_CONSENT: _("同意の撤回（GDPR第7条3項）"),
    rules.OBJECT: _("異議の申出（GDPR第21条1項）"),
    rules.OBJECT_DIRECT_MARKETING: _("ダイレクトマーケティングへの異議（GDPR第21条2項・3項）"),
    rules.STOP_USE: _("利用停止等の請求（法第35条）"),
}
NO_RIGHT_LABEL = _("法令に基づき保存するため、利用停止・消去の対象外です（GDPR第17条3項(b)）")


def _rights(purpose: Purpose, lang: str) -> list[str]:
    """The person's options for this purpose, in the page's language (an explicit switch on the page)."""
    codes = rules.person_rights(basis=purpose.legal_basis, category=purpose.category)
    with translation.override(lang):
        return [str(RIGHT_LABELS[c]) for c in codes] or [str(NO_RIGHT_LABEL)]


def _lang(request: HttpRequest) -> str:
    # An explicit switch on the page itself; the admin's language setting plays no part on a public page.
    lang = request.GET.get("lang", "ja")
    return lang if lang in LANGS else "ja"


def _entry(version: PurposeVersion, lang: str) -> dict[str, str]:
    if lang == "en":
        basis = BASIS_EN.get(version.legal_basis, version.legal_basis)
        return {"title": version.title_en, "description": version.description_en, "basis": basis}
    label = LegalBasis(version.legal_basis).label if version.legal_basis in LegalBasis.values else ""
    return {"title": version.title_ja, "description": version.description_ja, "basis": str(label)}


@require_GET
def privacy_notice(request: HttpRequest) -> HttpResponse:
    """公表事項: company, purposes of use (current versions), request procedure, security, contact."""
    lang = _lang(request)
    purposes = []
    for p in selectors.published_purposes():
        version = cast(PurposeVersion, p.current_version)  # published purposes are those with one
        purposes.append(
            {
                "code": p.code,
                "version": version.version,
                "updated": version.created_at,
                "rights": _rights(p, lang),
                **_entry(version, lang),
            }
        )
    return render(
        request,
        "consent/privacy.html",
        {"lang": lang, "company": settings.CRM_COMPANY, "purposes": purposes},
    )


@require_GET
def purpose_history(request: HttpRequest, code: str) -> HttpResponse:
    """Every published wording of one purpose, newest first: what a person saw on any past date."""
    lang = _lang(request)
    purpose = selectors.published_purposes().filter(code=code).first()
    if purpose is None:
        raise Http404
    versions = [
        {"version": v.version, "created": v.created_at, "text_hash": v.text_hash, **_entry(v, lang)}
        for v in selectors.purpose_versions(purpose=purpose)
    ]
    return render(
        request,
        "consent/purpose_history.html",
        {"lang": lang, "company": settings.CRM_COMPANY, "code": code, "versions": versions},
    )
