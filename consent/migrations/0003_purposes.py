"""The company's purposes of use (利用目的), version 1 of each. The privacy officer edits them in the admin;
every change of wording becomes a new version (consent.services.purpose_revise)."""

from django.db import migrations

PURPOSES = [
    # code, category, legal basis, order, title ja, title en, description ja, description en
    (
        "customer_management",
        "customer_management",
        "contract",
        10,
        "顧客管理・契約の履行",
        "Customer management and performance of contracts",
        "会員登録、商品・サービスの提供、ご注文・配送・お支払いの管理、契約の履行及びアフターサービスのため。",
        "To register members, provide goods and services, manage orders, delivery and payment, and perform "
        "contracts and after-sales service.",
    ),
    (
        "customer_support",
        "support",
        "contract",
        20,
        "お問合せへの対応",
        "Responding to enquiries",
        "お問合せ・ご相談・苦情への対応及びその記録のため。",
        "To respond to and keep a record of enquiries, requests and complaints.",
    ),
    (
        "marketing_email",
        "marketing_email",
        "consent",
        30,
        "メールマガジン・販促メールの配信",
        "Newsletters and promotional e-mail",
        "新商品・キャンペーン等のご案内をメールでお送りするため。配信はいつでも停止できます。",
        "To send you news about products and campaigns by e-mail. You can unsubscribe at any time.",
    ),
    (
        "personalisation",
        "personalisation",
        "consent",
        40,
        "おすすめ表示（パーソナライズ）",
        "Personalised recommendations",
        "購買履歴・閲覧履歴を分析し、お客様の興味に合わせた商品や情報を表示するため。",
        "To analyse your purchase and browsing history and show products and information matching your "
        "interests.",
    ),
    (
        "analytics",
        "analytics",
        "legitimate_interest",
        50,
        "統計・分析によるサービス改善",
        "Statistics and analysis to improve our services",
        "個人を特定しない統計データを作成し、商品・サービスの開発及び改善に利用するため。",
        "To produce statistics that do not identify you and use them to develop and improve our products "
        "and services.",
    ),
    (
        "third_party_provision",
        "third_party_provision",
        "consent",
        60,
        "提携先への提供（第三者提供）",
        "Provision to partner companies (third parties)",
        "ご本人の同意を得て、氏名・連絡先・購買履歴を提携先に提供し、提携先が商品・サービスのご案内に利用するため"
        "（法第27条第1項）。",
        "With your consent, to provide your name, contact details and purchase history to our partners, who "
        "use them to inform you about their products and services (APPI Art. 27(1)).",
    ),
    (
        "cross_border_transfer",
        "cross_border_transfer",
        "consent",
        70,
        "外国にある第三者への提供",
        "Transfer to third parties in foreign countries",
        "ご本人の同意を得て、外国にある委託先・提携先に個人データを提供するため。提供先の国名、当該国の個人情報保護"
        "制度及び提供先が講ずる措置は同意の前にお知らせします（法第28条第2項、規則17条）。",
        "With your consent, to transfer personal data to processors and partners abroad. The country, its "
        "data-protection regime and the recipient's measures are shown before you consent (APPI Art. 28(2)).",
    ),
    (
        "cookies_analytics",
        "cookies",
        "consent",
        80,
        "Cookie等によるアクセス解析",
        "Cookies for web analytics",
        "Cookie等の識別子を用いて当社ウェブサイトの利用状況を解析するため。",
        "To analyse how our website is used with cookies and similar identifiers.",
    ),
    (
        "cookies_advertising",
        "cookies",
        "consent",
        90,
        "Cookie等による広告配信",
        "Cookies for advertising",
        "Cookie等の識別子を広告配信事業者に提供し、お客様の興味に合わせた広告を表示するため（法第31条）。",
        "To provide cookie identifiers to advertising partners so that they can show you ads matching your "
        "interests (APPI Art. 31).",
    ),
    (
        "special_care_health",
        "special_care",
        "consent",
        100,
        "健康に関する情報の取得（要配慮個人情報）",
        "Collection of health information (special-care data)",
        "アレルギー・既往歴等の健康に関する情報を、ご本人の同意を得て取得し、商品のご提案及び安全な提供のために"
        "利用するため（法第20条第2項）。",
        "With your prior consent, to collect health information such as allergies and medical history and use "
        "it to recommend and safely provide products (APPI Art. 20(2)).",
    ),
]


def seed(apps, schema_editor):
    from consent.rules import purpose_text_hash

    purpose_model = apps.get_model("consent", "Purpose")
    version_model = apps.get_model("consent", "PurposeVersion")
    for code, category, basis, order, title_ja, title_en, desc_ja, desc_en in PURPOSES:
        if purpose_model.objects.filter(code=code).exists():
            continue
        purpose = purpose_model.objects.create(
            code=code, category=category, legal_basis=basis, is_published=True, display_order=order
        )
        version = version_model.objects.create(
            purpose=purpose,
            version=1,
            title_ja=title_ja,
            title_en=title_en,
            description_ja=desc_ja,
            description_en=desc_en,
            legal_basis=basis,
            text_hash=purpose_text_hash(
                title_ja=title_ja,
                title_en=title_en,
                description_ja=desc_ja,
                description_en=desc_en,
                legal_basis=basis,
            ),
        )
        purpose.current_version = version
        purpose.save(update_fields=["current_version"])


class Migration(migrations.Migration):
    dependencies = [("consent", "0002_ledger_guard")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
