"""Classification of every field of the crm app's models (see crm.classification).

Purposes are the codes of the published purposes of use (consent app); retention categories are the keys
the retention engine uses.
"""

from crm.classification import (
    REGISTRY,
    DataClass,
    FieldSpec,
    Generalisation,
    declare_object_permissions,
    not_personal,
)

D, Q, A, X, DER = (
    DataClass.DIRECT,
    DataClass.QUASI,
    DataClass.ATTRIBUTE,
    DataClass.ANONYMISED,
    DataClass.DERIVED,
)
PROFILE = ("customer_management", "customer_support")
MARKETING = ("marketing_email", "personalisation")

REGISTRY.declare(
    "crm.Customer",
    id=not_personal("内部ID"),
    team=not_personal("担当チーム"),
    status=not_personal("状態"),
    member_no=FieldSpec(Q, PROFILE, "customer_profile", "full", "会員番号"),
    external_id=FieldSpec(Q, PROFILE, "customer_profile", "full", "連携元システムのID"),
    family_name=FieldSpec(D, PROFILE, "customer_profile", "name", "氏名（姓）"),
    given_name=FieldSpec(D, PROFILE, "customer_profile", "name", "氏名（名）"),
    family_name_kana=FieldSpec(D, PROFILE, "customer_profile", "name", "フリガナ（セイ）"),
    given_name_kana=FieldSpec(D, PROFILE, "customer_profile", "name", "フリガナ（メイ）"),
    email=FieldSpec(D, PROFILE + MARKETING, "customer_profile", "email", "メールアドレス"),
    phone=FieldSpec(D, PROFILE, "customer_profile", "phone", "電話番号"),
    postal_code=FieldSpec(D, PROFILE, "customer_profile", "postal", "郵便番号"),
    address=FieldSpec(
        D, PROFILE, "customer_profile", "full", "住所", generalise=Generalisation("prefecture", "prefecture")
    ),
    birth_date=FieldSpec(
        D, PROFILE, "customer_profile", "date", "生年月日", generalise=Generalisation("age_band", "age_band")
    ),
    app_user_id=FieldSpec(Q, PROFILE, "customer_profile", "full", "アプリ利用者ID"),
    device_id=FieldSpec(Q, ("analytics",), "behavioural", "full", "端末ID"),
    pos_card_no=FieldSpec(Q, PROFILE, "customer_profile", "full", "ポイントカード番号"),
    prefecture=FieldSpec(A, (*PROFILE, "analytics"), "customer_profile", "full", "都道府県"),
    gender=FieldSpec(A, ("analytics",), "customer_profile", "full", "性別（任意）"),
    preferences=FieldSpec(A, MARKETING, "marketing_preferences", "full", "嗜好・配信設定", free_text=True),
    notes=FieldSpec(
        D, ("customer_support",), "customer_profile", "full", "対応メモ（自由記述）", free_text=True
    ),
    collection_channel=not_personal("取得チャネル"),
    collected_at=not_personal("取得日時"),
    acquisition_note=FieldSpec(A, PROFILE, "customer_profile", "full", "取得の経緯", free_text=True),
    age_band=FieldSpec(X, ("analytics",), "", "full", "年代（匿名化後）"),
    email_bidx=FieldSpec(DER, PROFILE, "customer_profile", "full", "メール検索用ハッシュ"),
    phone_bidx=FieldSpec(DER, PROFILE, "customer_profile", "full", "電話番号検索用ハッシュ"),
    name_bidx=FieldSpec(DER, PROFILE, "customer_profile", "full", "氏名検索用ハッシュ"),
    kana_bidx=FieldSpec(DER, PROFILE, "customer_profile", "full", "フリガナ検索用ハッシュ"),
    last_activity_at=not_personal("最終利用日時"),
    closed_at=not_personal("退会日時"),
    provision_stopped_at=not_personal("第三者提供の停止日時（法第35条第3項）"),
    created_at=not_personal("登録日時"),
    updated_at=not_personal("更新日時"),
)

REGISTRY.declare(
    "crm.Team", id=not_personal(), code=not_personal(), name=not_personal(), created_at=not_personal()
)
REGISTRY.declare(
    "crm.TeamMembership",
    id=not_personal(),
    team=not_personal(),
    user=not_personal("従業者（顧客ではない）"),
    role=not_personal(),
    created_at=not_personal(),
)
declare_object_permissions("crm.TeamUserObjectPermission", "crm.TeamGroupObjectPermission")
REGISTRY.declare("crm.EncryptionCanary", id=not_personal(), token=not_personal("既知の検証値"))
REGISTRY.declare(
    "crm.AuditEntry",
    **{
        name: not_personal("監査ログ（個人の値は記録前に伏字化）")
        for name in (
            "id",
            "content_type",
            "object_pk",
            "object_id",
            "object_repr",
            "serialized_data",
            "action",
            "changes_text",
            "changes",
            "actor",
            "cid",
            "remote_addr",
            "remote_port",
            "timestamp",
            "additional_data",
            "actor_email",
            "chain_seq",
            "chain_hash",
            "entry_mac",
        )
    },
)
REGISTRY.declare(
    "crm.AuditChainHead",
    id=not_personal(),
    seq=not_personal("監査ログの最終連番"),
    hash=not_personal("監査ログの最終チェーンハッシュ"),
    mac=not_personal("末尾の署名"),
    updated_at=not_personal(),
)

REGISTRY.declare(
    "crm.Purchase",
    id=not_personal(),
    customer=not_personal("顧客への参照（消去時に切り離す）"),
    team=not_personal(),
    order_no=FieldSpec(Q, ("customer_management",), "tax_records", "full", "注文番号"),
    amount=FieldSpec(A, ("customer_management", "analytics"), "tax_records", "full", "金額"),
    currency=not_personal(),
    channel=not_personal(),
    purchased_at=FieldSpec(A, ("customer_management", "analytics"), "tax_records", "full", "購入日時"),
    quantity=FieldSpec(A, ("customer_management", "analytics"), "tax_records", "full", "数量"),
    category=FieldSpec(A, ("customer_management", "analytics"), "tax_records", "full", "商品カテゴリ"),
    # md5 of (team, external id, row, occurrence): re-importing a file finds its rows. Derived from the
    # external id, so cleared when erasure unlinks the purchase.
    import_key=FieldSpec(DER, ("customer_management",), "tax_records", "full", "取込行のキー"),
    created_at=not_personal(),
)
REGISTRY.declare(
    "crm.CustomerEvent",
    id=not_personal(),
    customer=not_personal("顧客への参照"),
    visitor_id=FieldSpec(Q, ("analytics",), "behavioural", "full", "Cookie等の訪問者ID（個人関連情報）"),
    kind=FieldSpec(A, ("analytics",), "behavioural", "full", "イベント種別"),
    occurred_at=FieldSpec(A, ("analytics",), "behavioural", "full", "発生日時"),
    properties=FieldSpec(A, ("analytics",), "behavioural", "full", "イベント属性", free_text=True),
    source=not_personal("送信元システム"),
    created_at=not_personal(),
)
