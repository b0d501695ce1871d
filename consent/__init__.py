"""The person's legal side: purposes of use (利用目的, published at /privacy/) and the consent ledger.

- Purpose / PurposeVersion: a change of wording is a new version; old versions stay readable forever.
- ConsentEvent: the append-only ledger (ORM guards + a PostgreSQL trigger refusing UPDATE/DELETE).
- ConsentState: current state per customer × purpose, upserted in the ledger write's transaction.
- Objection: the append-only ledger of objections (GDPR Art. 21) and compelling-grounds decisions.
- `selectors.usable_for(customers, code)`: the one way exports, segments and campaigns select people, by the
  purpose's lawful basis; `selectors.consented_to(customers, code)`: the consent-only question.
- SpecialCareRecord: 要配慮個人情報, written only with consent on record (APPI Art. 20(2)).
Writes: consent.services; reads: consent.selectors; benchmark: bench/consent_bench.py.
"""
