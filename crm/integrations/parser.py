"""The integration API's body parser: JSON as RFC 8259 defines it, labelled as such, and nothing else.

django-ninja's default parser runs json.loads on whatever arrives: a body sent as text/plain, a form, XML or
with no Content-Type at all was taken as JSON, and json.loads(bytes) also accepts a byte order mark and
UTF-16/32. This one refuses a body not labelled `application/json` (415; only `charset=utf-8` may be added),
reads the body as strict UTF-8 (a BOM or another encoding is not JSON: 400), and answers a body nested past
the parser's recursion limit with a 422 instead of a 500. (NaN/Infinity, which json.loads also takes, are
refused field by field by the schemas: crm.integrations.schemas.)

django-ninja turns any exception of `parse_body` into `HttpError(400, "Cannot parse request body")` raised
*from* it; crm.integrations.errors answers a `BodyRefused` found as that error's cause with its own status.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja.parser import Parser

JSON_MEDIA_TYPE = "application/json"


class BodyRefused(Exception):
    """A request body refused before validation, with the status and message to answer."""

    def __init__(self, status: int, message: str, *, error_type: str | None = None) -> None:
        self.status = status
        self.message = message
        # With a type, answered as a field error on ["body"] (the shape of every other 422).
        self.error_type = error_type
        super().__init__(message)


class StrictJsonParser(Parser):
    """`application/json` bodies only, decoded as strict UTF-8 JSON."""

    def parse_body(self, request: HttpRequest) -> Any:
        charset = (request.content_params or {}).get("charset", "utf-8").lower()  # typed Optional, always set
        if request.content_type != JSON_MEDIA_TYPE or charset != "utf-8":
            raise BodyRefused(415, _("Content-Type は application/json（UTF-8）で送ってください。"))
        # Strict UTF-8: a BOM stays a character that json.loads(str) refuses (RFC 8259 section 8.1).
        text = request.body.decode("utf-8")
        try:
            return json.loads(text)
        except RecursionError as exc:
            raise BodyRefused(422, _("JSONの入れ子が深すぎます。"), error_type="json_too_deep") from exc
