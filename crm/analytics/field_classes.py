"""Classification of the analytics area's fields (crm.classification). Scores are derived attributes of a
person (profiling for the analytics purpose); runs, fits and import batches hold parameters and counts."""

from crm.classification import REGISTRY, DataClass, FieldSpec, not_personal

A = DataClass.ATTRIBUTE
ANALYTICS = ("analytics",)

REGISTRY.declare(
    "crm.PurchaseImport",
    **{
        name: not_personal("取込の進捗と件数（行番号と誤りの種類のみ）")
        for name in (
            "id",
            "team",
            "created_by",
            "file_name",
            "all_or_nothing",
            "status",
            "bytes_total",
            "bytes_read",
            "rows_total",
            "rows_inserted",
            "rows_duplicate",
            "rows_invalid",
            "customers_created",
            "errors",
            "created_at",
            "started_at",
            "finished_at",
        )
    },
)
REGISTRY.declare(
    "crm.RfmRun",
    **{
        name: not_personal("RFM計算の設定と件数")
        for name in (
            "id",
            "as_of",
            "bins",
            "method",
            "purpose_code",
            "customers",
            "boundaries",
            "computed_at",
            "seconds",
            "slot",
        )
    },
)
REGISTRY.declare(
    "crm.RfmScore",
    id=not_personal(),
    run=not_personal(),
    slot=not_personal("格納スロット（計算ごとに交互）"),
    customer=not_personal("顧客への参照（消去で削除）"),
    **{
        name: FieldSpec(A, ANALYTICS, "analytics", "full", label)
        for name, label in (
            ("recency_days", "最終購買からの日数"),
            ("frequency", "購買日数"),
            ("monetary", "購買金額合計"),
            ("r_score", "Rスコア"),
            ("f_score", "Fスコア"),
            ("m_score", "Mスコア"),
            ("segment", "RFMセグメント"),
        )
    },
)
REGISTRY.declare(
    "crm.ClvFit",
    **{
        name: not_personal("CLVモデルのパラメータと件数")
        for name in (
            "id",
            "calibration_end",
            "time_unit",
            "purpose_code",
            "customers",
            "r",
            "alpha",
            "a",
            "b",
            "log_likelihood",
            "gg_customers",
            "p",
            "q",
            "v",
            "gg_log_likelihood",
            "horizon",
            "discount_rate",
            "holdout",
            "fitted_at",
            "seconds",
        )
    },
)
REGISTRY.declare(
    "crm.ClvScore",
    id=not_personal(),
    fit=not_personal(),
    customer=not_personal("顧客への参照（消去で削除）"),
    **{
        name: FieldSpec(A, ANALYTICS, "analytics", "full", label)
        for name, label in (
            ("frequency", "リピート購買回数"),
            ("recency", "初回から最終購買まで"),
            ("age", "初回購買から推定期間終了まで"),
            ("monetary", "リピート購買の平均金額"),
            ("expected_purchases", "予測購買回数"),
            ("p_alive", "継続確率"),
            ("expected_spend", "予測平均購買金額"),
            ("clv", "予測CLV"),
        )
    },
)
