"""Search terms of the customer list, kept out of URLs.

A search of the customer list is an e-mail address, a phone number or a name. Django's admin searches with
GET (`?q=taro@example.com`), which puts the term into the browser's history, into the `_changelist_filters`
of every link on the page, and into the access log of every proxy in front of the application. The customer
list's search form posts instead (CustomerAdmin.changelist_view), and the list is shown at `?qt=<token>`:
the term encrypted with the field keys (crm.crypto, AES-256-GCM, a new nonce each time, so two tokens of the
same term differ) together with the time it was made, bound to its own label (SEARCH_TOKEN_LABEL): a field's
token is no search token, and a search token written into a column does not read as its value. A token is
accepted for TOKEN_MAX_AGE; an older, a foreign or a damaged one searches for nothing and says so.
"""

from __future__ import annotations

import json
import time

from crm.crypto import DecryptionError, decrypt_str, encrypt_str

SEARCH_TOKEN_VAR = "qt"  # noqa: S105  (a query parameter's name, not a secret)
TOKEN_MAX_AGE = 8 * 3600  # seconds: a working day; a bookmarked search is typed again after that
MAX_TERM_LENGTH = 200
SEARCH_TOKEN_LABEL = "crm.search_token"  # noqa: S105  (what the tokens are bound to, not a secret)


def seal_search(term: str, *, now: float | None = None) -> str:
    """The URL token of a search term."""
    issued = int(time.time() if now is None else now)
    payload = json.dumps({"q": term, "t": issued}, ensure_ascii=False, separators=(",", ":"))
    return encrypt_str(payload, bound_to=SEARCH_TOKEN_LABEL)


def open_search(token: str, *, now: float | None = None) -> str | None:
    """The term of a token made by seal_search, or None when it is damaged, foreign or too old."""
    try:
        # Bound tokens only, whatever FIELD_TOKENS_REQUIRE_BOUND says: a search token lives 8 hours, so none
        # issued before binding is worth accepting, and an unbound token could be any column's value.
        payload = json.loads(decrypt_str(token, bound_to=SEARCH_TOKEN_LABEL, require_bound=True))
        term, issued = payload["q"], payload["t"]
    except (DecryptionError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(term, str) or not isinstance(issued, int):
        return None
    age = (time.time() if now is None else now) - issued
    if not -300 <= age <= TOKEN_MAX_AGE:  # a few minutes of clock skew between web servers
        return None
    return term
