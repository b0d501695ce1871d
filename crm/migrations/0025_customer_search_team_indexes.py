"""The exact search's blind-index indexes take the team as their second column and include the id, so that each
lookup of the search is an index-only scan within the user's scope (crm.selectors.customer_search_counted).

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
                index=models.Index(
                    fields=[f"{name}_bidx", "team"], include=["id"], name=f"customer_{name}_team_bidx"
                ),
            )
            for name in ("email", "phone", "name", "kana")
        ),
        *(
            RemoveIndexConcurrently(model_name="customer", name=f"customer_{name}_bidx")
            for name in ("email", "phone", "name", "kana")
        ),
    ]
