"""Demo data of the disclosure package (seed_demo, crm.demo.register_demo_seeder): one verified disclosure
request of the demo support login, with its package ordered (a running worker builds it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from consent.disclosure import services
from consent.disclosure.models import DisclosurePackage
from consent.requests import services as desk
from crm.models import Customer


def seed_packages(*, actor: Any) -> None:
    """Does nothing when packages exist, or without the demo support login and an active customer."""
    if DisclosurePackage.objects.exists():
        return
    handler = get_user_model().objects.filter(username="support").first()
    # Not the newest few: seed_demo erases, holds and stops those; nor those the desk's demo requests name.
    customer = Customer.objects.filter(status=Customer.Status.ACTIVE).order_by("-pk")[11:12].first()
    if handler is None or customer is None:
        return
    request = desk.request_create(
        kind="disclosure",
        channel="letter",
        received_at=timezone.now() - dt.timedelta(days=2),
        requester_name=f"{customer.family_name} {customer.given_name}",
        requester_email=customer.email,
        actor=handler,
        handler=handler,
    )
    desk.request_link_customer(request=request, customer=customer, actor=handler)
    desk.request_verify_identity(
        request=request, actor=handler, method="id_document", evidence_reference="DOC-2"
    )
    services.disclosure_package_order(request=request, actor=handler)
