"""The exact search's blind-index indexes take the team as their second column (crm.selectors.customer_search_counted).

Built CONCURRENTLY (a million rows: writes to the customer table go on meanwhile), so not in a transaction.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("crm", "0024_merge_purchase_indexes")]

    operations = [
        *(
            AddIndexConcurrently(
                model_name="customer",
                index=models.Index(fields=[f"{name}_bidx", "team"], name=f"customer_{name}_team_bidx"),
            )
            for name in ("email", "phone", "name", "kana")
        ),
        *(
            RemoveIndexConcurrently(model_name="customer", name=f"customer_{name}_bidx")
            for name in ("email", "phone", "name", "kana")
        ),
    ]
