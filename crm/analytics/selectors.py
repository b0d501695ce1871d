"""Reads of the analytics area, always through the gate (`restrict(user, "view")`): score lists, the
explanation of a customer's scores, cross-sell rules and suggestions, the fairness report."""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Avg, Count, QuerySet, StdDev
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from crm.analytics import rules
from crm.analytics.models import ClvFit, ClvScore, RfmRun, RfmScore
from crm.models import Customer, Purchase
from crm.retention.rules import age_band

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.auth.models import User as AuthUser

    User = AuthUser | AnonymousUser


def latest_rfm_run() -> RfmRun | None:
    return RfmRun.objects.order_by("-pk").first()


def latest_clv_fit() -> ClvFit | None:
    return ClvFit.objects.order_by("-pk").first()


def rfm_scores_for(user: User) -> QuerySet[RfmScore]:
    """The newest run's scores of the customers `user` may see (its slot: one partition is read)."""
    run = latest_rfm_run()
    scores = RfmScore.objects.restrict(user, "view")
    return scores.filter(run=run, slot=run.slot) if run is not None else scores.none()


def clv_scores_for(user: User) -> QuerySet[ClvScore]:
    """The newest fit's scores of the customers `user` may see."""
    fit = latest_clv_fit()
    scores = ClvScore.objects.restrict(user, "view")
    return scores.filter(fit=fit) if fit is not None else scores.none()


def rfm_explanation(score: RfmScore) -> list[dict[str, Any]]:
    """Each score beside its input and the input range of each score in the run: how the value moved it."""
    run = score.run
    out = []
    for key, label, value, given in (
        ("r", _("R（最終購買からの日数）"), score.recency_days, score.r_score),
        ("f", _("F（購買日数）"), score.frequency, score.f_score),
        ("m", _("M（購買金額合計）"), score.monetary, score.m_score),
    ):
        ranges = run.boundaries.get(key, {})
        out.append(
            {
                "key": key,
                "label": label,
                "value": value,
                "score": given,
                "bins": run.bins,
                "ranges": [(int(s), ranges[s]) for s in sorted(ranges, key=int)],
            }
        )
    return out


def clv_explanation(score: ClvScore) -> dict[str, Any]:
    """The CLV's components: inputs (x, t_x, T, mean spend), the fit's parameters and what each model added
    (expected purchases, P(alive), expected spend per purchase), and how the spend shrinks toward the
    population mean (Gamma-Gamma weight p x / (p x + q − 1))."""
    fit = score.fit
    weight = None
    population_mean = None
    if fit.p is not None and fit.q is not None and fit.v is not None and fit.q > 1:
        weight = fit.p * score.frequency / (fit.p * score.frequency + fit.q - 1)
        population_mean = fit.p * fit.v / (fit.q - 1)
    return {
        "unit": fit.get_time_unit_display(),
        "inputs": {"x": score.frequency, "t_x": score.recency, "T": score.age, "m": score.monetary},
        "bgnbd": {"r": fit.r, "alpha": fit.alpha, "a": fit.a, "b": fit.b},
        "gamma_gamma": {"p": fit.p, "q": fit.q, "v": fit.v},
        "own_mean_weight": weight,
        "population_mean_spend": population_mean,
        "expected_purchases": score.expected_purchases,
        "p_alive": score.p_alive,
        "expected_spend": score.expected_spend,
        "clv": score.clv,
        "horizon": fit.horizon,
        "discount_rate": fit.discount_rate,
    }


# --- cross-sell ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CrossSellRule:
    """'Customers who bought `antecedent` also bought `consequent`': support = share of customers with
    both, confidence = share of the antecedent's customers with the consequent, lift = confidence / share
    of customers with the consequent (above 1: bought together more than by chance)."""

    antecedent: str
    consequent: str
    customers: int
    support: float
    confidence: float
    lift: float


def crosssell_rules(
    *, user: User, eligible: QuerySet[Customer], min_customers: int = 10, limit: int = 50
) -> list[CrossSellRule]:
    """Category-to-category rules from co-purchases (a basket is a customer's set of categories), over the
    customers `user` may see and the use rule allows: one SQL statement."""
    visible = Customer.objects.restrict(user, "view").filter(pk__in=eligible.values("pk")).values("pk")
    try:
        visible_sql, params = visible.query.sql_with_params()
    except EmptyResultSet:  # nobody to read
        return []
    purchase = Purchase._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH baskets AS (
                SELECT DISTINCT customer_id, category FROM {purchase}
                WHERE category <> '' AND customer_id IN ({visible_sql})
            ),
            total AS (SELECT count(DISTINCT customer_id)::float AS n FROM baskets),
            items AS (SELECT category, count(*) AS n FROM baskets GROUP BY category),
            pairs AS (
                SELECT a.category AS antecedent, b.category AS consequent, count(*) AS n
                FROM baskets a JOIN baskets b ON a.customer_id = b.customer_id AND a.category <> b.category
                GROUP BY 1, 2
            )
            SELECT p.antecedent, p.consequent, p.n, p.n / t.n, p.n::float / ia.n,
                   (p.n::float / ia.n) / (ib.n / t.n)
            FROM pairs p JOIN items ia ON ia.category = p.antecedent
                 JOIN items ib ON ib.category = p.consequent CROSS JOIN total t
            WHERE p.n >= %s
            ORDER BY 6 DESC, 3 DESC
            LIMIT %s
            """,
            [*params, min_customers, limit],
        )
        return [
            CrossSellRule(a, c, int(n), float(s), float(conf), float(lift))
            for a, c, n, s, conf, lift in cursor
        ]


def crosssell_for_customer(
    *, user: User, eligible: QuerySet[Customer], customer_id: int, limit: int = 5
) -> list[CrossSellRule]:
    """Suggestions for one customer: rules whose antecedent the customer bought and whose consequent they
    have not, best lift first (nothing for a customer outside the user's reach or the use rule)."""
    if not eligible.filter(pk=customer_id).exists() or not (
        Customer.objects.restrict(user, "view").filter(pk=customer_id).exists()
    ):
        return []
    bought = set(
        Purchase.objects.filter(customer_id=customer_id)
        .exclude(category="")
        .values_list("category", flat=True)
    )
    found = [
        rule
        for rule in crosssell_rules(user=user, eligible=eligible, limit=500)
        if rule.antecedent in bought and rule.consequent not in bought and rule.lift > 1
    ]
    best: dict[str, CrossSellRule] = {}
    for rule in found:
        if rule.consequent not in best or rule.lift > best[rule.consequent].lift:
            best[rule.consequent] = rule
    return sorted(best.values(), key=lambda r: -r.lift)[:limit]


# --- fairness --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroupGap:
    """One group's mean score beside the population's: the standardised difference and whether it is
    flagged (crm.analytics.rules.FAIRNESS_SMD_THRESHOLD)."""

    dimension: str
    group: str
    measure: str
    customers: int
    mean: float
    smd: float
    flagged: bool


FAIRNESS_MEASURES = {
    "rfm": ("r_score", "f_score", "m_score"),
    "clv": ("p_alive", "expected_purchases", "clv"),
}


def fairness_report(*, user: User, kind: str = "rfm", age_sample: int = 20_000) -> list[GroupGap]:
    """Score distributions across prefecture (every scored customer, one GROUP BY) and age band (birth
    dates are encrypted: a random sample of at most `age_sample` scored customers is decrypted), each group's
    mean against the population's in standard deviations."""
    scores: QuerySet[Any] = rfm_scores_for(user) if kind == "rfm" else clv_scores_for(user)
    measures = FAIRNESS_MEASURES[kind]
    rows: list[GroupGap] = []
    stats = _population(scores, measures)
    by_prefecture: dict[str, dict[str, list[float]]] = {}
    for values in _grouped(scores, measures):
        prefecture = values.pop("customer__prefecture") or "不明"
        by_prefecture[prefecture] = values
    rows += _gaps("prefecture", by_prefecture, stats, measures)
    ids = list(scores.values_list("pk", flat=True)[: age_sample * 5])
    sample = random.Random(0).sample(ids, min(age_sample, len(ids)))
    today = timezone.localdate()
    bands: dict[str, dict[str, list[float]]] = {}
    for score in scores.filter(pk__in=sample).select_related("customer"):
        band = age_band(score.customer.birth_date, today) or "不明"
        group = bands.setdefault(band, {m: [] for m in measures})
        for m in measures:
            group[m].append(float(getattr(score, m)))
    age_groups = {
        band: {m: [len(v[m]), sum(v[m]) / len(v[m])] for m in measures}
        for band, v in bands.items()
        if v[measures[0]]
    }
    rows += _gaps("age_band", age_groups, stats, measures)
    return rows


def _population(scores: QuerySet[Any], measures: tuple[str, ...]) -> dict[str, tuple[float, float]]:
    agg = scores.aggregate(
        **{f"{m}_avg": Avg(m) for m in measures}, **{f"{m}_sd": StdDev(m, sample=False) for m in measures}
    )
    return {m: (float(agg[f"{m}_avg"] or 0), float(agg[f"{m}_sd"] or 0)) for m in measures}


def _grouped(scores: QuerySet[Any], measures: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for row in scores.values("customer__prefecture").annotate(
        n=Count("pk"), **{f"{m}_avg": Avg(m) for m in measures}
    ):
        out.append(
            {
                "customer__prefecture": row["customer__prefecture"],
                **{m: [row["n"], row[f"{m}_avg"]] for m in measures},
            }
        )
    return out


def _gaps(
    dimension: str, groups: dict[str, Any], stats: dict[str, tuple[float, float]], measures: tuple[str, ...]
) -> list[GroupGap]:
    out = []
    for group in sorted(groups):
        for m in measures:
            n, mean = groups[group][m]
            smd = rules.standardised_difference(float(mean), *stats[m])
            out.append(
                GroupGap(dimension, group, m, int(n), float(mean), smd, rules.fairness_flag(smd, int(n)))
            )
    return out
