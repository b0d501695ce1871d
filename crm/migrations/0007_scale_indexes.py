# Index for the customer changelist sorted by last activity (ORDER BY last_activity_at, id: the admin
# appends the primary key). Built CONCURRENTLY so that adding it to a table of millions of rows does not
# block writes; CREATE INDEX CONCURRENTLY cannot run inside a transaction, hence atomic = False.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("crm", "0003_purchases_events"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="customer",
            index=models.Index(fields=["last_activity_at", "id"], name="customer_activity_id_idx"),
        ),
    ]
