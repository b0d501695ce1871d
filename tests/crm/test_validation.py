"""Customer input rules, with their Japanese messages: e-mail, phone (E.164), postal code, kana, and the My
Number refusal (番号法 9, 15, 19, 20; legal-rules.md §6) in every text field. Bad input is refused through the
service and nothing is written.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from crm import services
from crm.models import AuditEntry, Customer
from crm.validators import contains_my_number, is_my_number, normalise_postal_code
from tests.factories import CustomerFactory

MY_NUMBER = "個人番号（マイナンバー）と思われる12桁の番号は登録できません（番号法第20条）。"
BAD_EMAIL = "メールアドレスの形式が正しくありません（例: taro@example.com）。"
BAD_PHONE = "電話番号として正しくありません（例: 090-1234-5678、03-1234-5678、+44 20 7946 0958）。"
BAD_POSTAL = "郵便番号は 〒NNN-NNNN の形式で入力してください（例: 100-0005）。"
BAD_KANA = "フリガナはカタカナまたはひらがなで入力してください。"


# --- the My Number check digit, written out here from the rule itself -------------------------------------


def check_digit(body: str) -> int:
    """総務省令第85号（平成26年）第5条: 11 − (Σ Pn×Qn mod 11), or 0 when the remainder is 0 or 1. Pn is the
    n-th digit of the 11-digit body counted from its last digit; Qn = n+1 for n ≤ 6, n−5 for 7 ≤ n ≤ 11."""
    assert len(body) == 11 and body.isdigit()
    total = 0
    for n in range(1, 12):
        p = int(body[-n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number(body: str) -> str:
    """A twelve-digit number that passes the check digit: the body followed by its check digit."""
    return body + str(check_digit(body))


def not_my_number(body: str) -> str:
    """Twelve digits whose last digit is wrong for the body: not a My Number."""
    return body + str((check_digit(body) + 1) % 10)


# Bodies chosen to cover remainders ≤ 1 (check digit 0) and the others.
BODIES = ["12345678901", "98765432109", "31415926535", "00000000001", "55555555555"]
VALID = [my_number(b) for b in BODIES]
INVALID = [not_my_number(b) for b in BODIES]


def test_the_check_digit_worked_by_hand():
    # given the body 12345678901: P1..P11 = 1,0,9,8,7,6,5,4,3,2,1 and Q1..Q11 = 2,3,4,5,6,7,2,3,4,5,6
    # when Σ Pn×Qn = 2+0+36+40+42+42+10+12+12+10+6 = 212, and 212 mod 11 = 3
    # then the check digit is 11 − 3 = 8
    assert check_digit("12345678901") == 8
    assert my_number("12345678901") == "123456789018"
    # and the remainders 1 and 0 give 0: 6×Q1 = 12 ≡ 1 (mod 11); all zeros ≡ 0
    assert check_digit("00000000006") == 0
    assert check_digit("00000000000") == 0
    # and a remainder of 2 gives 9: 1×Q1 = 2
    assert check_digit("00000000001") == 9
    # and the validator agrees on each of them
    assert all(is_my_number(n) for n in ("123456789018", "000000000060", "000000000000", "000000000019"))
    assert not any(is_my_number(n) for n in ("123456789017", "000000000061", "000000000010"))


def test_validator_check_digit_agrees_with_the_rule_on_many_numbers():
    # given ten thousand random bodies, each with its right and a wrong check digit
    rng = random.Random(20260401)
    bodies = [f"{rng.randrange(10**11):011d}" for _ in range(10_000)]
    # then the validator accepts exactly the right ones
    assert all(is_my_number(my_number(b)) for b in bodies)
    assert not any(is_my_number(not_my_number(b)) for b in bodies)
    assert is_my_number("12345678901") is False  # eleven digits
    assert is_my_number("1234567890188") is False  # thirteen digits


FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")


def written_forms(number: str) -> dict[str, str]:
    """The ways a person writes twelve digits in a form or a note."""
    a, b, c = number[:4], number[4:8], number[8:]
    return {
        "plain": number,
        "hyphens": f"{a}-{b}-{c}",
        "spaces": f"{a} {b} {c}",
        "full-width digits": number.translate(FULL_WIDTH),
        "full-width grouped": f"{a}-{b}-{c}".translate(FULL_WIDTH),
        "full-width spaces": f"{a}\u3000{b}\u3000{c}",
        "prolonged sound mark": f"{a}ー{b}ー{c}",
        "unicode hyphen": f"{a}\u2010{b}\u2010{c}",
        "in a sentence": f"本人確認のためマイナンバー（{a}-{b}-{c}）を控えた",
        "after letters": f"ID{number}",
    }


@pytest.mark.parametrize("number", VALID)
@pytest.mark.parametrize("form", list(written_forms("0" * 12)))
def test_my_number_is_found_in_every_written_form(number, form):
    # given a number that passes the check digit, written in one of the usual ways
    text = written_forms(number)[form]
    # then it is recognised
    assert contains_my_number(text)


@pytest.mark.parametrize("number", INVALID)
@pytest.mark.parametrize("form", list(written_forms("0" * 12)))
def test_twelve_digits_failing_the_check_digit_are_not_my_numbers(number, form):
    # given twelve digits whose check digit is wrong, in the same forms
    # then they are not taken for a My Number (an order number, a JAN code …)
    assert not contains_my_number(written_forms(number)[form])


@pytest.mark.parametrize(
    "text",
    [
        f"{VALID[0]}5",  # thirteen digits: part of a longer number
        f"7{VALID[0]}",
        VALID[0][:11],  # eleven digits
        f"+{VALID[0]}",  # E.164 phone number
    ],
)
def test_longer_shorter_and_phone_numbers_are_not_my_numbers(text):
    assert not contains_my_number(text)


# --- refusal through the service, field by field ----------------------------------------------------------

BASE: dict[str, Any] = {
    "family_name": "山田",
    "given_name": "太郎",
    "collection_channel": Customer.Channel.WEB_FORM,
}
N = VALID[0]
GROUPED = f"{N[:4]}-{N[4:8]}-{N[8:]}"
WIDE = GROUPED.translate(FULL_WIDTH)

# field → a value hiding a valid My Number
MY_NUMBER_INPUTS = {
    "notes": f"マイナンバー: {GROUPED}",
    "acquisition_note": f"店頭で本人確認書類（個人番号 {WIDE}）を提示された",
    "address": f"千代田区丸の内1-1-1 {N}",
    "member_no": f"M{N}",
    "external_id": N,
    "family_name": f"山田{N}",
    "given_name": WIDE,
    "email": f"{N}@example.com",
    "app_user_id": f"user-{GROUPED}",
    "device_id": N,
    "pos_card_no": GROUPED,
    "phone": GROUPED,
    "postal_code": N,
    "family_name_kana": f"ヤマダ{WIDE}",
    "preferences": {"memo": f"番号 {GROUPED}"},
}
PREFERENCES_SHAPES = {
    "nested list": {"contacts": [{"note": "ok"}, {"note": WIDE}]},
    "as a key": {N: "x"},
    "as a JSON number": {"card": int(N)},
    "top-level list": [GROUPED],
}


@pytest.mark.django_db
@pytest.mark.parametrize("field", list(MY_NUMBER_INPUTS))
def test_my_number_is_refused_in_every_text_field(team, field):
    # given a new customer whose `field` holds a valid My Number
    # when the service is asked to create it
    with pytest.raises(ValidationError) as exc_info:
        services.customer_create(team=team, **{**BASE, field: MY_NUMBER_INPUTS[field]})
    # then the field is refused with the Japanese message citing the law, and nothing is written
    assert MY_NUMBER in exc_info.value.message_dict[field]
    assert Customer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("shape", list(PREFERENCES_SHAPES))
def test_my_number_is_refused_anywhere_inside_preferences(team, shape):
    with pytest.raises(ValidationError) as exc_info:
        services.customer_create(team=team, **BASE, preferences=PREFERENCES_SHAPES[shape])
    assert exc_info.value.message_dict["preferences"] == [MY_NUMBER]
    assert Customer.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("number", INVALID)
def test_twelve_digits_failing_the_check_digit_are_accepted(team, number):
    # given twelve-digit numbers that are not My Numbers, in free text, an id and the preferences
    grouped = f"{number[:4]}-{number[4:8]}-{number[8:]}"
    # when the customer is created
    customer = services.customer_create(
        team=team,
        **BASE,
        notes=f"注文番号 {grouped}",
        member_no=f"M{number}",
        external_id=number,
        preferences={"order": number, "n": int(number)},
    )
    # then it is stored
    fresh = Customer.objects.get(pk=customer.pk)
    assert fresh.notes == f"注文番号 {grouped}"
    assert fresh.member_no == f"M{number}"


@pytest.mark.django_db
def test_blind_index_digests_are_not_scanned_for_my_numbers(team):
    # given a customer whose (derived, hex) blind index happens to hold a valid twelve-digit run
    customer = Customer(team=team, **BASE)
    customer.email_bidx = f"ab{N}cdef0123456789ab"
    # when the record is validated, then it is not refused for its digest
    customer.full_clean()  # raises ValidationError on a refusal
    # while the same digits in a field the person gave are refused: the check runs on this very record
    customer.notes = f"番号 {N}"
    with pytest.raises(ValidationError) as exc_info:
        customer.full_clean()
    assert set(exc_info.value.message_dict) == {"notes"}


# --- bad input changes nothing ----------------------------------------------------------------------------


def _row(customer: Customer) -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT * FROM crm_customer WHERE id = %s", [customer.pk])
        names = [c.name for c in cur.description]
        return dict(zip(names, cur.fetchone(), strict=True))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"notes": f"マイナンバー {GROUPED}"}, "notes", MY_NUMBER),
        ({"preferences": {"memo": WIDE}}, "preferences", MY_NUMBER),
        ({"email": "taro@", "notes": "メモを更新"}, "email", BAD_EMAIL),
        ({"phone": "090-1234-567", "address": "大阪市北区1-1"}, "phone", BAD_PHONE),
        ({"postal_code": "100-000", "given_name": "次郎"}, "postal_code", BAD_POSTAL),
        ({"family_name_kana": "Yamada"}, "family_name_kana", BAD_KANA),
    ],
)
def test_refused_update_leaves_the_row_and_the_audit_log_unchanged(customer, changes, field, message):
    # given a stored customer, its raw row and the audit log
    before = _row(customer)
    audit_before = AuditEntry.objects.count()
    # when an update with one bad value (and possibly good ones beside it) is asked for
    with pytest.raises(ValidationError) as exc_info:
        services.customer_update(customer=customer, **changes)
    # then it is refused with the Japanese message, and the row is byte for byte what it was (no token was
    # rewritten, no good value slipped through), and no audit entry was written
    assert message in exc_info.value.message_dict[field]
    assert _row(customer) == before
    assert AuditEntry.objects.count() == audit_before
    customer.refresh_from_db()
    assert customer.email == "taro.yamada@example.com"


@pytest.mark.django_db
def test_every_bad_field_is_reported_at_once(team):
    # when several fields are wrong
    with pytest.raises(ValidationError) as exc_info:
        services.customer_create(
            team=team,
            **BASE,
            email="taro@example",
            phone="12345",
            postal_code="abc-defg",
            given_name_kana="太郎",
        )
    # then each is named with its own message
    errors = exc_info.value.message_dict
    assert errors["email"] == [BAD_EMAIL]
    assert errors["phone"] == [BAD_PHONE]
    assert errors["postal_code"] == [BAD_POSTAL]
    assert errors["given_name_kana"] == [BAD_KANA]
    assert Customer.objects.count() == 0


# --- e-mail -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("Taro.Yamada@Example.com", "taro.yamada@example.com"),
        ("  taro@example.co.jp ", "taro@example.co.jp"),
        ("ｔａｒｏ@ｅｘａｍｐｌｅ.ｃｏｍ", "taro@example.com"),  # typed with the IME in full-width
        ("taro+news@example.com", "taro+news@example.com"),
    ],
)
def test_email_is_accepted_and_normalised(team, typed, stored):
    customer = services.customer_create(team=team, **BASE, email=typed)
    assert Customer.objects.get(pk=customer.pk).email == stored


# --- phone ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("090-1234-5678", "+819012345678"),
        ("09012345678", "+819012345678"),
        ("０９０－１２３４－５６７８", "+819012345678"),
        ("03-1234-5678", "+81312345678"),
        ("(03) 1234-5678", "+81312345678"),
        ("0120-123-456", "+81120123456"),
        ("+81 90 1234 5678", "+819012345678"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_phone_numbers_are_stored_in_e164(team, typed, e164):
    # when a Japanese or international number is entered in any usual form
    customer = services.customer_create(team=team, **BASE, phone=typed)
    # then it is stored in E.164, and its blind index is that of the E.164 form
    fresh = Customer.objects.get(pk=customer.pk)
    assert fresh.phone == e164
    assert fresh.phone_bidx


# --- postal code ------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed", ["100-0005", "〒100-0005", "1000005", "〒１００－０００５", "100ー0005", " 100-0005 "]
)
def test_postal_code_is_accepted_and_normalised(team, typed):
    # when a postal code is typed with or without 〒, the hyphen or full-width digits
    customer = services.customer_create(team=team, **BASE, postal_code=typed)
    # then it is stored as NNN-NNNN
    assert Customer.objects.get(pk=customer.pk).postal_code == "100-0005"


def test_postal_code_normalisation_takes_ascii_digits_only():
    # Arabic-Indic digits are digits to a regex's \d, but not a Japanese postal code
    assert normalise_postal_code("١٠٠٠٠٠٥") is None
    assert normalise_postal_code("〒１００－０００５") == "100-0005"


# --- kana -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed",
    ["ヤマダ", "やまだ", "ﾔﾏﾀﾞ", "ヤマダ タロウ", "ジョン・スミス", "ヴァイオレット", "いすゞ", "サトー"],
)
def test_kana_is_accepted(team, typed):
    customer = services.customer_create(team=team, **BASE, family_name_kana=typed)
    assert Customer.objects.get(pk=customer.pk).family_name_kana == typed


# --- refusals: each field's badly formed values, refused with the field's own message ----------------------

REFUSED = [
    *(
        ("email", typed, BAD_EMAIL)
        for typed in [
            "taro",
            "taro@",
            "@example.com",
            "taro@example",
            "taro yamada@example.com",
            "taro@@example.com",
        ]
    ),
    *(
        ("phone", typed, BAD_PHONE)
        for typed in ["090-1234-567", "12345", "電話番号", "+44 20 7946 095", "+1 555 0100", "090-1234-56789"]
    ),
    *(
        ("postal_code", typed, BAD_POSTAL)
        for typed in ["100-000", "1000-005", "10000056", "abc-defg", "١٠٠-٠٠٠٥", "100-0005-1", "〒"]
    ),
    *(
        ("given_name_kana", typed, BAD_KANA)
        for typed in ["山田", "Yamada", "yamada", "ヤマダ1", "ヤマダ-タロウ", "やまだ@"]
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "typed", "message"), REFUSED)
def test_a_badly_formed_value_is_refused(team, field, typed, message):
    with pytest.raises(ValidationError) as exc_info:
        services.customer_create(team=team, **BASE, **{field: typed})
    messages = exc_info.value.message_dict[field]
    # the field's own message, alone (a postal code too long is told its length as well)
    assert message in messages and (messages == [message] or field == "postal_code")
    assert Customer.objects.count() == 0


@pytest.mark.django_db
def test_customer_factory_values_pass_validation(team):
    # given the factory the other tests rely on
    # then what it makes is valid (it goes through the same service)
    assert CustomerFactory(team=team).pk


@pytest.mark.django_db
def test_admin_style_model_form_accepts_the_typed_forms_and_refuses_bad_ones(team):
    from django.forms import modelform_factory

    form_class = modelform_factory(
        Customer, fields=["team", "family_name", "postal_code", "phone", "email", "collection_channel"]
    )
    # given what a person types in the admin form: 〒, full-width digits, a national phone number
    good = form_class(
        data={
            "team": team.pk,
            "family_name": "山田",
            "postal_code": "〒１００－０００５",
            "phone": "03-1234-5678",
            "email": "Taro@Example.com",
            "collection_channel": Customer.Channel.WEB_FORM,
        }
    )
    # then the form is valid and the instance holds the stored forms
    assert good.is_valid(), good.errors
    assert (good.instance.postal_code, good.instance.phone, good.instance.email) == (
        "100-0005",
        "+81312345678",
        "taro@example.com",
    )
    # and a bad value is reported on its field with the Japanese message
    bad = form_class(data={**good.data, "postal_code": "100-00051", "family_name": f"山田{N}"})
    assert not bad.is_valid()
    assert BAD_POSTAL in bad.errors["postal_code"]
    assert MY_NUMBER in bad.errors["family_name"]
