"""The retention policy that removes answered requests of the request desk and their records (verification,
messages, completion record, package rows) once REQUEST_RECORDS_KEEP_YEARS (default 3) have passed since they
were completed or rejected. Created disabled like every default policy: the privacy officer checks its dry run
on the policy's page, then enables it. The rows are removed by the retention engine's record scope
(crm.retention.participants.record_scope_register), not by code of the desk's own."""

from django.db import migrations

NAME = "完了した開示等請求とその記録の消去（完了から保存期間の経過後）"


def seed(apps, schema_editor):
    policy = apps.get_model("crm", "RetentionPolicy")
    policy.objects.get_or_create(
        name=NAME,
        defaults={
            "scope": "request_records",
            "trigger": "period_ended",
            "days": 0,
            "action": "erase",
            "legal_basis": (
                "個人情報保護法第22条（利用する必要がなくなったときは遅滞なく消去）。対応の記録は請求への対応に"
                "関する請求・紛争に備えて完了から保存期間（既定3年: 民法第724条の消滅時効）保存し、その後消去。"
            ),
            "enabled": False,
        },
    )


def unseed(apps, schema_editor):
    apps.get_model("crm", "RetentionPolicy").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0013_merge_provision_disclosure"),
        ("crm", "0021_retention_request_records_scope"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
