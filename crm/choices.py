"""Choices shared by crm's models and the parts of crm that must not import crm.models (a leaf module)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CollectionChannel(models.TextChoices):
    """How a customer's data was collected (Customer.Channel), also the channel of purchases and spend."""

    WEB_FORM = "web_form", _("Webフォーム")
    APP = "app", _("アプリ")
    STORE_POS = "store_pos", _("店舗・POS")
    EVENT = "event", _("イベント")
    BUSINESS_CARD = "business_card", _("名刺")
    PARTNER = "partner", _("提携先・第三者提供")
    IMPORT = "import", _("インポート")
