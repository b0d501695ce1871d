"""The retention policy that removes provision and receipt records after the period 規則21・24 sets (each
record's `keep_until`), created disabled like every default policy: the privacy officer checks its dry run
on the policy's page, then enables it. The records are removed by the retention engine, not by code of
consent's own (consent.provision, crm.retention.participants.record_scope_register)."""

from django.db import migrations

NAME = "第三者提供・受領の記録の消去（保存期間の満了後、規則21・24）"


def seed(apps, schema_editor):
    policy = apps.get_model("crm", "RetentionPolicy")
    policy.objects.get_or_create(
        name=NAME,
        defaults={
            "scope": "provision_records",
            "trigger": "period_ended",
            "days": 0,
            "action": "erase",
            "legal_basis": (
                "個人情報保護法施行規則第21条・第24条（記録の保存期間: 作成から3年、一括記録は最後の提供から"
                "3年、契約書等で代えた記録は最後の提供から1年）、法第22条"
            ),
            "enabled": False,
        },
    )


def unseed(apps, schema_editor):
    apps.get_model("crm", "RetentionPolicy").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0008_provision"),
        ("crm", "0018_retention_provision_records_scope"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
