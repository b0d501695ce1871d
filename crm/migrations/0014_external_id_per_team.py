"""External ids unique per team instead of across teams (issue #12): an API client names its own team's
customers, so another team's use of an id can neither block the client's upsert nor tell the client that such
a customer exists. The (external_id, team) index also serves the admin's exact search by external id alone."""

import crm.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crm', '0013_erase_permissions'),
    ]

    operations = [
        migrations.AlterField(
            model_name='customer',
            name='external_id',
            field=models.CharField(blank=True, max_length=64, null=True, validators=[crm.validators.validate_no_my_number], verbose_name='外部ID'),
        ),
        migrations.AddConstraint(
            model_name='customer',
            constraint=models.UniqueConstraint(fields=('external_id', 'team'), name='uniq_customer_team_external_id'),
        ),
    ]
