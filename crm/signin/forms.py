"""Forms of the second-factor pages: one code, strictly shaped."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class TokenForm(forms.Form):
    """A six-digit code from the authenticator app, or one recovery code (letters and digits)."""

    token = forms.RegexField(
        label=_("確認コード"),
        regex=r"^[A-Za-z0-9]{6,16}$",
        max_length=16,
        strip=True,
        error_messages={"invalid": _("確認コードは6桁の数字、または回復用コードを入力してください。")},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}
        ),
    )

    def clean_token(self) -> str:
        return "".join(self.cleaned_data["token"].split()).lower()
