"""The e-mails of the request desk: subject and body of each kind, in the requester's language.

Bodies are templates (templates/consent/requests/email/<kind>_<ja|en>.txt); subjects are Japanese msgids
rendered under the requester's language. Sending and recording are consent.requests.services' business.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext_lazy as _

from consent.requests.models import DataSubjectRequest, RequestMessage
from crm.models import LegalHold

SUBJECTS = {
    RequestMessage.Kind.CONFIRMATION: _("【確認のお願い】開示等のご請求の受付"),
    RequestMessage.Kind.EXTENSION: _("開示等のご請求への回答期限の延長のお知らせ"),
    RequestMessage.Kind.RESULT: _("開示等のご請求への対応結果のお知らせ"),
    RequestMessage.Kind.REJECTION: _("開示等のご請求への対応についてのお知らせ"),
}


def render(request: DataSubjectRequest, kind: str, context: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the message `kind` about `request`, in the request's language."""
    language = request.language if request.language in ("ja", "en") else "ja"
    with translation.override(language):
        subject = str(SUBJECTS[RequestMessage.Kind(kind)])
        body = render_to_string(
            f"consent/requests/email/{kind}_{language}.txt",
            {
                "request": request,
                "kind": request.get_kind_display(),
                "ground": request.get_rejection_ground_display(),
                "holds": [str(LegalHold.Reason(code).label) for code in context.get("hold_codes", [])],
                "company": settings.CRM_COMPANY,
                **context,
            },
        )
    return f"[{settings.CRM_COMPANY['name']}] {subject}", body
