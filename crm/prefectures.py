"""The 47 prefectures in JIS X 0401 order, and their codes ("01".."47", what Customer.prefecture holds)."""

from django.utils.translation import gettext, gettext_noop

# Marked for translation (the English UI shows "Tokyo"), kept as Japanese text here: addresses are matched
# against these names (crm.retention.rules.prefecture_of).
PREFECTURES = (
    gettext_noop("北海道"),
    gettext_noop("青森県"),
    gettext_noop("岩手県"),
    gettext_noop("宮城県"),
    gettext_noop("秋田県"),
    gettext_noop("山形県"),
    gettext_noop("福島県"),
    gettext_noop("茨城県"),
    gettext_noop("栃木県"),
    gettext_noop("群馬県"),
    gettext_noop("埼玉県"),
    gettext_noop("千葉県"),
    gettext_noop("東京都"),
    gettext_noop("神奈川県"),
    gettext_noop("新潟県"),
    gettext_noop("富山県"),
    gettext_noop("石川県"),
    gettext_noop("福井県"),
    gettext_noop("山梨県"),
    gettext_noop("長野県"),
    gettext_noop("岐阜県"),
    gettext_noop("静岡県"),
    gettext_noop("愛知県"),
    gettext_noop("三重県"),
    gettext_noop("滋賀県"),
    gettext_noop("京都府"),
    gettext_noop("大阪府"),
    gettext_noop("兵庫県"),
    gettext_noop("奈良県"),
    gettext_noop("和歌山県"),
    gettext_noop("鳥取県"),
    gettext_noop("島根県"),
    gettext_noop("岡山県"),
    gettext_noop("広島県"),
    gettext_noop("山口県"),
    gettext_noop("徳島県"),
    gettext_noop("香川県"),
    gettext_noop("愛媛県"),
    gettext_noop("高知県"),
    gettext_noop("福岡県"),
    gettext_noop("佐賀県"),
    gettext_noop("長崎県"),
    gettext_noop("熊本県"),
    gettext_noop("大分県"),
    gettext_noop("宮崎県"),
    gettext_noop("鹿児島県"),
    gettext_noop("沖縄県"),
)
# JIS X 0401 codes ("01".."47"), the form Customer.prefecture holds (max_length 4).
PREFECTURE_CODES = {name: f"{i + 1:02d}" for i, name in enumerate(PREFECTURES)}

_NAMES = {code: name for name, code in PREFECTURE_CODES.items()}


def prefecture_name(code: str | None) -> str:
    """The prefecture's name in the current language ('44' → '大分県' / 'Oita'); an unknown code as it is."""
    if not code:
        return ""
    name = _NAMES.get(code)
    return gettext(name) if name else code


def prefecture_choices() -> list[tuple[str, str]]:
    """(code, name) of the 47 prefectures in the current language, in JIS order: a form's choices."""
    return [(code, gettext(name)) for name, code in PREFECTURE_CODES.items()]
