"""Demo teams, one login per role, and customers (small sets through the services).

`manage.py seed_demo --customers 300` is what `./dev up` runs; `--print-logins` prints the logins.
Refuses to run in production.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from crm import services
from crm.demo import DEMO_SEEDERS, demo_customers
from crm.integrations.models import ApiClient, ApiScope
from crm.integrations.services import api_client_create
from crm.models import Customer, Team, TeamMembership
from crm.permissions import (
    ROLE_AUDITOR,
    ROLE_LABELS,
    ROLE_PERMISSIONS,
    ROLE_PRIVACY,
    ROLE_SECURITY,
    ROLE_STAFF,
    ROLE_SUPPORT,
    ROLE_SUPPORT_LEAD,
)
from crm.retention import services as retention
from crm.retention.models import LegalHold, RetentionPolicy, RetentionRun, Tombstone

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 — development only; the command refuses to run in production
TEAMS = [
    ("tokyo-sales", "東京営業部"),
    ("osaka-sales", "大阪営業部"),
    ("cs-center", "カスタマーサポートセンター"),
    ("ec-marketing", "EC・マーケティング部"),
]
# username → (role, team code or None, team role, has 'view personal data')
LOGINS = {
    "staff": (ROLE_STAFF, "tokyo-sales", TeamMembership.Role.MEMBER, False),
    "staff_lead": (ROLE_STAFF, "tokyo-sales", TeamMembership.Role.LEAD, True),
    "staff_osaka": (ROLE_STAFF, "osaka-sales", TeamMembership.Role.MEMBER, False),
    "support": (ROLE_SUPPORT, None, None, True),
    "support_lead": (ROLE_SUPPORT_LEAD, None, None, True),
    "privacy": (ROLE_PRIVACY, None, None, True),
    "security": (ROLE_SECURITY, None, None, False),
    "auditor": (ROLE_AUDITOR, None, None, False),
}


class Command(BaseCommand):
    help = "デモ用のチーム・ログイン・顧客を作成します（本番環境では実行できません）。"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--customers", type=int, default=300)
        parser.add_argument("--print-logins", action="store_true")

    def handle(self, *args: Any, customers: int, print_logins: bool, **opts: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo は本番環境では実行できません。")
        if print_logins:
            self._print_logins()
            return
        teams = self._teams_and_logins()
        from django.contrib.auth.models import User

        actor = User.objects.get(username="privacy")
        have = Customer.objects.count()
        if have >= customers:
            self.stdout.write(f"demo customers already present: {have}")
        else:
            # Numbered after the highest member number: erasures (a retention run, the request desk) leave
            # gaps, and a number is never given twice.
            start = _highest_member_no() + 1
            for i, fields in enumerate(demo_customers(customers - have, start=start)):
                closed = fields.pop("status", None) == Customer.Status.CLOSED
                closed_at = fields.pop("closed_at", None)
                customer = services.customer_create(team=teams[i % len(teams)], actor=actor, **fields)
                if closed:
                    # 退会 through its service (a status is a fact), backdated to when the person left;
                    # recorded by the request desk, who may change any customer's status.
                    services.customer_close(customer=customer, actor=User.objects.get(username="support"))
                    Customer.objects.filter(pk=customer.pk).update(closed_at=closed_at)
            self.stdout.write(f"demo customers: {customers}")
        self._records(teams, actor)
        for seeder in DEMO_SEEDERS:
            seeder(actor=actor)

    def _records(self, teams: list[Team], actor: Any) -> None:
        """One of each record the admin lists, so that every page a role can open shows something: an API
        client, a legal hold, an erasure and a stop of use answered by the request desk (a tombstone, a
        利用停止 customer) and a retention run.
        Each only once (seed_demo runs on every `./dev up`)."""
        from django.contrib.auth.models import User

        people = Customer.objects.filter(status=Customer.Status.ACTIVE).order_by("-pk")
        if not ApiClient.objects.exists():
            api_client_create(
                name="demo-website",
                team=teams[0],
                scopes=[ApiScope.CUSTOMERS_WRITE, ApiScope.CONSENTS_WRITE, ApiScope.EVENTS_WRITE],
                description="デモ: 自社ECサイトからの会員登録・同意・行動イベント",
                actor=actor,
            )
        if not LegalHold.objects.exists() and people.exists():
            retention.legal_hold_place(
                customer_ids=[people[1].pk if people.count() > 1 else people[0].pk],
                reason=LegalHold.Reason.LITIGATION,
                placed_by=actor,
                reference="DEMO-2026-001",
                note="デモ: 係争中の案件",
            )
        desk = User.objects.get(username="support")
        if not Tombstone.objects.exists() and people.exists():
            retention.customer_erase(customer_ids=[people[0].pk], reason="admin:request", actor=desk)
        if not Customer.objects.filter(status=Customer.Status.STOP_USE).exists() and people.count() > 2:
            services.customer_stop_use(customer=people[2], actor=desk)  # a 利用停止 request answered
        if not RetentionRun.objects.exists():
            policy = RetentionPolicy.objects.filter(trigger=RetentionPolicy.Trigger.ACCOUNT_CLOSED).first()
            if policy is not None:
                run = retention.retention_run_start(policy=policy, actor=actor, enqueue=False)
                retention.retention_run_to_completion(run=run)

    @transaction.atomic
    def _teams_and_logins(self) -> list[Team]:
        teams = [Team.objects.get_or_create(code=c, defaults={"name": n})[0] for c, n in TEAMS]
        by_code = {t.code: t for t in teams}
        user_model = get_user_model()
        pii_perm = "view_customer_pii"
        from django.contrib.auth.models import Permission

        for username, (role, team_code, team_role, pii) in LOGINS.items():
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"is_staff": True, "email": f"{username}@demo.example.jp"}
            )
            if created:
                user.set_password(DEMO_PASSWORD)
                user.save()
            user.groups.add(Group.objects.get(name=role))
            if team_code and team_role:
                services.team_member_add(team=by_code[team_code], user=user, role=team_role)
            if pii and role == ROLE_STAFF:
                user.user_permissions.add(Permission.objects.get(codename=pii_perm))
        admin, created = user_model.objects.get_or_create(
            username="admin",
            defaults={"is_staff": True, "is_superuser": True, "email": "admin@demo.example.jp"},
        )
        if created:
            admin.set_password(DEMO_PASSWORD)
            admin.save()
        return teams

    def _print_logins(self) -> None:
        self.stdout.write(f"Demo logins, one per role (password for all: {DEMO_PASSWORD}):")
        for username, (role, team_code, team_role, pii) in LOGINS.items():
            sees_customers = "crm.view_customer" in ROLE_PERMISSIONS.get(role, [])
            if not sees_customers:
                scope, data = "no customers", "audit and access logs"
            else:
                scope = f"team {team_code} ({team_role})" if team_code else "all teams"
                data = "clear personal data" if pii else "masked personal data"
            self.stdout.write(f"  {username:<12} {_pad(ROLE_LABELS[role], 20)} {scope:<28} {data}")
        self.stdout.write(f"  {'admin':<12} {_pad('superuser', 20)} break-glass account")


def _highest_member_no() -> int:
    """The number of the highest demo member number (M000000123 → 123), 0 when there is none."""
    last = (
        Customer.objects.filter(member_no__startswith="M")
        .order_by("-member_no")
        .values_list("member_no", flat=True)
        .first()
    )
    return int(last[1:]) if last and last[1:].isdigit() else 0


def _pad(text: str, width: int) -> str:
    """Left-align in a terminal, counting full-width (Japanese) characters as two columns."""
    used = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - used)
