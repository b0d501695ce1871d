"""Retention engine: scheduled, batched, resumable erasure and anonymisation with legal holds.

Operator notes
--------------
- Policies (保存期間ポリシー) are edited in the admin; each change page shows the dry run: how many
  customers a run started now would process, how many a legal hold keeps, and a masked sample. Defaults
  are created disabled by migration crm/0005_retention: nothing is erased until the privacy officer
  enables a policy.
- Celery beat (django-celery-beat's DatabaseScheduler, exactly one beat) runs `crm.retention.run_due_policies`
  daily at 03:00 JST and `crm.retention.resume_stalled` every 30 seconds; both schedules are rows of
  "Periodic tasks" in the admin and can be changed there.
- A run is split into id-range slices (`RETENTION_RUN_SLICES`, default 4), each walked by a chain of short
  batch tasks; several workers take several slices. A worker killed at any moment leaves its batch rolled
  back; a restarted worker, or the watchdog once the slice's heartbeat is older than
  `RETENTION_HEARTBEAT_SECONDS` (default 30), resumes from the committed cursor, exactly once.
- Tombstones (消去証跡) prove each erasure by a keyed hash of the customer id. Keep an export beside the
  backups: `manage.py retention_export_tombstones FILE` (it holds the legal holds too); after restoring a
  backup run `manage.py retention_reapply_tombstones --import FILE`: holds placed since the backup come back
  first, then the erasures made since are applied again (a restored hold still stops them). The key is
  `RETENTION_TOMBSTONE_KEY` when set, otherwise derived from `BLIND_INDEX_KEY`: keep the one that was in
  force when the tombstones were written.
- `crm.retention.services.customer_erase / customer_anonymise / customer_pseudonymise /
  customer_category_erase` are the one erasure path; the request desk calls them too. Apps above crm reach
  what they hold through erasure participants (crm.retention.participants), e.g. the consent ledger's
  evidence.
- After a large run, `VACUUM ANALYZE crm_customer, crm_customerevent, crm_purchase` returns the space.
"""
