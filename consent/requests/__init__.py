"""The request desk (開示等請求): intake, identity verification, legal clocks, fulfilment, proof.

A sub-package of consent (the person's legal side) with its models imported in consent/models.py, so the
app keeps one migration history."""
