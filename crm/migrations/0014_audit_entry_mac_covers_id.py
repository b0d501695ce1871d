"""An audit entry's MAC covers its own id (issue #13).

The MAC signed the entry's content only, so a copy of a genuine row made with INSERT … SELECT (entry_mac
copied along, a new id from the sequence) was chained by the next seal and verified. Entries are now given
their id before they are written (crm/audit/identity.py) and signed with it; such MACs start with "v2:"
(three characters more than the bare hex), and the chain hash of those entries covers the id as well.
Entries already sealed keep their hashes and still verify. Entries written by the previous release and not
sealed yet are never sealed now (their MAC does not cover the id) and `audit_verify` names them: let the
previous release's sealer run (or run its `manage.py audit_verify`, which sealed first) before migrating.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("crm", "0013_erase_permissions")]

    operations = [
        migrations.AlterField(
            model_name="auditentry",
            name="entry_mac",
            field=models.CharField(
                blank=True, db_default="", editable=False, max_length=67, verbose_name="記録時署名"
            ),
        ),
    ]
