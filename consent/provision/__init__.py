"""Recipients, processors and their contracts, cross-border bases, provision records (APPI 25–30), the data
map, the record of processing (GDPR Art. 30) and the data dictionary (issue #16).

A sub-package of consent (the person's legal side): its models are imported in consent/models.py, so they
share consent's one migration history.
"""
