"""Role groups (営業・CS, 開示等請求対応, 個人情報保護管理者, セキュリティ, 監査) and the encryption canary."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    from crm.roles import roles_sync

    # Permissions are normally created after migrate; create them now so the groups can hold them.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    roles_sync(apps)


def create_canary(apps, schema_editor):
    from crm.checks import CANARY_VALUE
    from crm.crypto import encrypt_str

    canary_model = apps.get_model("crm", "EncryptionCanary")
    # Historical models do not run the field's Python encryption reliably: write the token directly, bound to
    # its column as the field binds it (crm.fields._EncryptedMixin.encrypted_column_label). Databases migrated
    # before binding hold an unbound canary, which reads until `manage.py rotate_keys` rewrites it.
    schema_editor.execute(
        "INSERT INTO crm_encryptioncanary (id, token) VALUES (1, %s) ON CONFLICT (id) DO NOTHING",
        [encrypt_str(CANARY_VALUE, bound_to="crm.EncryptionCanary.token")],
    )
    assert canary_model.objects.filter(pk=1).exists()


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_roles, migrations.RunPython.noop),
        migrations.RunPython(create_canary, migrations.RunPython.noop),
    ]
