"""Model fields: encrypted fields (values are encrypted in Python before they reach the database) and the
declarations of a reference to the member of staff who acted (`staff_reference`) and of a proof's reference to
the customer it outlives (`outliving_customer_reference`).

Encrypted values are stored as text (an AES-256-GCM token, see crm.crypto). Lookups other than `isnull` are
meaningless on ciphertext and are refused; exact search goes through the blind-index columns instead.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal, overload

from django.conf import settings
from django.db import models

from crm.crypto import decrypt_str, encrypt_str

if TYPE_CHECKING:
    from django import forms
    from django.contrib.auth.models import User

    from crm.models import Customer

    # To mypy the mixin is the Field it is mixed into (its super() calls reach Field's methods).
    _FieldBase = models.Field[Any, Any]
else:
    _FieldBase = object


class _EncryptedMixin(_FieldBase):
    """Encrypt on the way in, decrypt on the way out; empty and NULL stay as they are.

    Every token is bound to this column (`encrypted_column_label`, e.g. "crm.Customer.email", authenticated
    by AES-GCM; see crm.crypto): a token copied here from another column or table does not decrypt. Renaming
    the model or the field changes the label; pass the old one as `bound_as` so the stored tokens still open.

    `manage.py rotate_keys` finds every field carrying this mixin, in any installed app, and re-encrypts
    its column under the newest key, bound to this label.
    """

    def __init__(self, *args: Any, bound_as: str | None = None, **kwargs: Any) -> None:
        self.bound_as = bound_as
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.bound_as:
            kwargs["bound_as"] = self.bound_as
        return name, path, args, kwargs

    def get_prep_value(self, value: Any) -> Any:
        value = self.to_python(value)
        if value is None or value == "":
            return value
        return encrypt_str(self._serialise(value), bound_to=self.encrypted_column_label)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return value
        # Raises DecryptionError (naming the column, never the token) when no key opens the value as a value
        # of this column: a wrong key, or a token moved here from another column.
        return self._deserialise(decrypt_str(value, bound_to=self.encrypted_column_label))

    @property
    def encrypted_column_label(self) -> str:
        """What this column's tokens are bound to: "app_label.Model.field" (the same for the historical
        models of migrations), or `bound_as`."""
        if self.bound_as:
            return self.bound_as
        model = getattr(self, "model", None)
        if model is None:
            # Not attached to a model yet: nothing to bind to.
            raise ValueError("An encrypted field encrypts only once it belongs to a model.")
        return f"{model._meta.label}.{self.name}"

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name != "isnull":
            raise TypeError(f"Encrypted fields do not support the '{lookup_name}' lookup; use a blind index.")
        return super().get_lookup(lookup_name)

    def _serialise(self, value: Any) -> str:
        return str(value)

    def _deserialise(self, text: str) -> Any:
        return text


class EncryptedCharField(_EncryptedMixin, models.TextField):
    """A short text value (name, e-mail, phone, address) encrypted at rest.

    `max_length` is validated on the clear value; the column is unbounded text because the token is longer.
    """

    def __init__(self, *args: Any, max_length: int | None = None, **kwargs: Any) -> None:
        self.clear_max_length = max_length
        super().__init__(*args, **kwargs)
        if max_length:
            from django.core.validators import MaxLengthValidator

            self.validators.append(MaxLengthValidator(max_length))

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.clear_max_length:
            kwargs["max_length"] = self.clear_max_length
        return name, path, args, kwargs

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        from django import forms

        # No form-level max_length: the model checks the length of the normalised value (clean_fields), and
        # the typed form may be longer ("〒100-0005" is stored as "100-0005", which fits max_length=8).
        defaults: dict[str, Any] = {}
        if self.clear_max_length and self.clear_max_length > 200:
            defaults["widget"] = forms.Textarea(attrs={"rows": 3})
        defaults.update(kwargs)
        return models.Field.formfield(
            self, form_class=form_class or forms.CharField, choices_form_class=choices_form_class, **defaults
        )


class EncryptedTextField(_EncryptedMixin, models.TextField):
    """Free text encrypted at rest (notes, 取得の経緯)."""


class EncryptedDateField(_EncryptedMixin, models.TextField):
    """A date (birth date) encrypted at rest, ISO format inside the token."""

    def to_python(self, value: Any) -> Any:
        if value is None or value == "" or isinstance(value, dt.date):
            return value or None
        return models.DateField().to_python(value)

    def _serialise(self, value: Any) -> str:
        return value.isoformat()

    def _deserialise(self, text: str) -> Any:
        return dt.date.fromisoformat(text)

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        from django import forms

        return models.Field.formfield(
            self, form_class=form_class or forms.DateField, choices_form_class=choices_form_class, **kwargs
        )

    def value_to_string(self, obj: Any) -> str:
        value = self.value_from_object(obj)
        return value.isoformat() if value else ""


@overload
def staff_reference(
    verbose_name: Any, *, optional: Literal[True] = ..., on_delete: Any = ..., **options: Any
) -> models.ForeignKey[User | None, User | None]: ...
@overload
def staff_reference(
    verbose_name: Any, *, optional: Literal[False], on_delete: Any = ..., **options: Any
) -> models.ForeignKey[User, User]: ...
def staff_reference(
    verbose_name: Any, *, optional: bool = True, on_delete: Any = models.PROTECT, **options: Any
) -> Any:
    """A member of staff who did something (created, recorded, approved, handled …), with no reverse
    accessor on the user, and empty where nobody acted (a scheduled run, the system) unless `optional` is
    False. Kept while the row is (PROTECT: a user who acted is deactivated, never deleted) unless a row
    that is no proof says otherwise (SET_NULL)."""
    if optional:
        options |= {"null": True, "blank": True}
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=on_delete,
        related_name="+",
        verbose_name=verbose_name,
        **options,
    )


@overload
def outliving_customer_reference(
    verbose_name: Any, *, null: Literal[True], **options: Any
) -> models.ForeignKey[Customer | None, Customer | None]: ...
@overload
def outliving_customer_reference(
    verbose_name: Any, *, null: Literal[False] = ..., **options: Any
) -> models.ForeignKey[Customer, Customer]: ...
def outliving_customer_reference(verbose_name: Any, *, null: bool = False, **options: Any) -> Any:
    """A proof's reference to the customer it is about (a consent, an objection, a request answered), kept
    when the customer is erased: no database constraint and nothing done on delete, so after erasure the
    row keeps a bare number that names nobody (and an append-only row is never updated to NULL)."""
    return models.ForeignKey(
        "crm.Customer",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=null,
        related_name="+",
        verbose_name=verbose_name,
        **options,
    )
