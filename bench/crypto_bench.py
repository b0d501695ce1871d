"""Field encryption micro-benchmark: what binding a token to its column costs.

    python bench/crypto_bench.py [--number 20000] [--repeat 7]

No query (DATABASE_URL only for the settings). Times, in one run and under the same key, µs per call of:

  cipher    AESGCM alone, associated data of 5 bytes (0x02: version + key id) beside 5 + the label's bytes
            (0x03): the cost of binding itself;
  encrypt   unbound (format 0x02, the previous release's seal, written here as it was, inline) beside
            bound (`encrypt_str(value, bound_to=label)`, through the module's key lookup and label check);
  decrypt   `decrypt_str` of a 0x02 token beside a 0x03 token (the same function, both formats);
  field     the model field's own path for crm.Customer.email (get_prep_value / from_db_value), which now
            also builds the column label per call;
  Fernet    decryption of a token of the first release, for scale.

Each figure is the best of --repeat rounds of --number calls, the two sides' rounds interleaved (the least
disturbed by other processes on a shared machine). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--number", type=int, default=20_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=7, help="rounds (the best is shown)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.db import connection

    from crm import crypto
    from crm.models import Customer

    value = "taro.yamada@example.com"
    label = "crm.Customer.email"
    key = crypto._keys()[0]
    unbound_header = crypto.UNBOUND_VERSION + key.key_id

    def seal_unbound() -> str:  # the 0x02 seal as the previous release wrote it
        nonce = os.urandom(12)
        sealed = key.aead.encrypt(nonce, value.encode("utf-8"), unbound_header)
        return base64.urlsafe_b64encode(unbound_header + nonce + sealed).decode("ascii")

    field = Customer._meta.get_field("email")
    unbound = seal_unbound()
    bound = crypto.encrypt_str(value, bound_to=label)
    fernet = key.fernet.encrypt(value.encode("utf-8")).decode("ascii")
    assert crypto.decrypt_str(unbound, bound_to=label) == crypto.decrypt_str(bound, bound_to=label) == value

    def pair(before: object, after: object) -> tuple[float, float]:
        """Best µs per call of each, rounds interleaved so that a busy moment hits both alike."""
        a, b = [], []
        for _ in range(args.repeat):
            a.append(timeit.timeit(before, number=args.number))  # type: ignore[arg-type]
            b.append(timeit.timeit(after, number=args.number))  # type: ignore[arg-type]
        return min(a) / args.number * 1e6, min(b) / args.number * 1e6

    clear, nonce = value.encode("utf-8"), os.urandom(12)
    bound_aad = key.header + label.encode("utf-8")
    sealed_unbound = key.aead.encrypt(nonce, clear, unbound_header)
    sealed_bound = key.aead.encrypt(nonce, clear, bound_aad)
    rows = [
        (
            "AES-GCM seal (cipher only)",
            *pair(
                lambda: key.aead.encrypt(nonce, clear, unbound_header),
                lambda: key.aead.encrypt(nonce, clear, bound_aad),
            ),
        ),
        (
            "AES-GCM open (cipher only)",
            *pair(
                lambda: key.aead.decrypt(nonce, sealed_unbound, unbound_header),
                lambda: key.aead.decrypt(nonce, sealed_bound, bound_aad),
            ),
        ),
        ("encrypt", *pair(seal_unbound, lambda: crypto.encrypt_str(value, bound_to=label))),
        (
            "decrypt_str",
            *pair(
                lambda: crypto.decrypt_str(unbound, bound_to=label),
                lambda: crypto.decrypt_str(bound, bound_to=label),
            ),
        ),
        (
            "field read (from_db_value)",
            *pair(
                lambda: field.from_db_value(unbound, None, connection),
                lambda: field.from_db_value(bound, None, connection),
            ),
        ),
    ]
    field_write, fernet_read = pair(
        lambda: field.get_prep_value(value), lambda: crypto.decrypt_str(fernet, bound_to=label)
    )

    print(
        f"µs per call, best of {args.repeat} interleaved rounds of {args.number:,}"
        f" (value: {len(value)} characters)"
    )
    print(f"{'':28} {'unbound 0x02':>13} {'bound 0x03':>11} {'difference':>11}")
    for name, before, after in rows:
        print(f"{name:28} {before:13.2f} {after:11.2f} {after - before:+11.2f}")
    print(f"{'field write (get_prep_value)':28} {'':13} {field_write:11.2f}")
    print(f"{'Fernet decrypt (first release)':28} {fernet_read:13.2f}")
    print(f"token length: unbound {len(unbound)}, bound {len(bound)} characters (the label is not stored)")


if __name__ == "__main__":
    main()
