"""Classification of the insights' models (crm.classification): totals, definitions and export records,
none holding a customer's personal data (an export record keeps counts and column names, never rows)."""

from crm.classification import REGISTRY, not_personal

REGISTRY.declare(
    "crm.MarketingSpend",
    **{
        n: not_personal("チャネル別・月別の費用")
        for n in ("id", "channel", "month", "amount", "note", "updated_at")
    },
)
REGISTRY.declare(
    "crm.CampaignResult",
    **{
        n: not_personal("配信結果の集計値")
        for n in (
            "id",
            "campaign_code",
            "name",
            "sent_on",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "updated_at",
        )
    },
)
REGISTRY.declare(
    "crm.Segment",
    **{
        n: not_personal("セグメントの定義（対象者は都度計算）")
        for n in ("id", "name", "description", "filters", "created_by", "created_at", "updated_at")
    },
)
REGISTRY.declare(
    "crm.SegmentExport",
    **{
        n: not_personal("出力の記録（件数・項目・匿名加工の報告のみ）")
        for n in (
            "id",
            "segment",
            "kind",
            "purpose_code",
            "destination",
            "recipient_ref",
            "columns",
            "row_count",
            "report",
            "items_published_at",
            "items_published_url",
            "created_by",
            "created_at",
        )
    },
)
