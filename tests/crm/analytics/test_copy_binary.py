"""The binary COPY the CLV fit loads its predictions with: what PostgreSQL reads back is what numpy held."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from crm.analytics.services import copy_binary


@pytest.mark.django_db
def test_binary_copy_round_trips_ints_and_floats_through_postgresql():
    # given three columns of big-endian int8, int4 and float8, with extremes
    keys = np.array([0, 1, -5, 2**62 + 7], dtype=">i8")
    days = np.array([0, -1, 2**31 - 1, 42], dtype=">i4")
    values = np.array([0.0, -1.5, 1e-300, 38413.94], dtype=">f8")
    # when they are copied into a temporary table in PostgreSQL's binary format
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE copy_binary_probe (k bigint, d int, v float8)")
        with (
            cursor.connection.cursor() as raw,
            raw.copy("COPY copy_binary_probe FROM STDIN (FORMAT binary)") as copy,
        ):
            copy.write(copy_binary([keys, days, values]))
        cursor.execute("SELECT k, d, v FROM copy_binary_probe")
        rows = cursor.fetchall()
    # then every row reads back as it was, in order
    assert rows == list(zip(keys.tolist(), days.tolist(), values.tolist(), strict=True))


def test_binary_copy_refuses_columns_it_cannot_lay_out():
    # little-endian, another type, or unequal lengths would be read as other numbers: refused
    with pytest.raises(ValueError):
        copy_binary([np.array([1, 2], dtype="<i8")])
    with pytest.raises(ValueError):
        copy_binary([np.array([1.0], dtype=">f4")])
    with pytest.raises(ValueError):
        copy_binary([np.array([1], dtype=">i8"), np.array([1.0, 2.0], dtype=">f8")])
