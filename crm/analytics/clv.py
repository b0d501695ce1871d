"""The CLV models, written from the papers with vectorised numpy and scipy.special (no ORM here).

- BG/NBD: P. S. Fader, B. G. S. Hardie and K. L. Lee (2005), "'Counting Your Customers' the Easy Way: An
  Alternative to the Pareto/NBD Model", Marketing Science 24(2). Likelihood: eq. (6); P(alive): eq. (11)
  (the note "Computing P(alive) using the BG/NBD model", 2008); conditional expectation: eq. (10).
- Gamma-Gamma: P. S. Fader, B. G. S. Hardie and K. L. Lee (2005), "RFM and CLV: Using Iso-Value Curves for
  Customer Base Analysis", JMR 42(4), and the note "The Gamma-Gamma Model of Monetary Value" (2013):
  marginal density of the mean spend, eq. (4) of the note; conditional expected spend, eq. (5).

Data: per customer x (repeat purchase days: distinct days − 1), t_x (last − first purchase day) and T
(calibration end − first purchase day), in the fit's time unit; the mean spend m of the repeat purchases.
The fits take *distinct* rows with a count (`weights`): customers sharing (x, t_x, T) share a likelihood
term, so a million customers are a few hundred thousand terms (computed by one GROUP BY in SQL).

Why not a library: `lifetimes` (the reference Python implementation) is archived and unmaintained since
2020; `pymc-marketing` fits these models too but brings PyMC and PyTensor (a compiler toolchain, hundreds of
megabytes) for a Bayesian fit the issue does not ask for. The two likelihoods are a dozen lines each.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

Array = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class BgNbd:
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")


@dataclasses.dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    v: float
    log_likelihood: float = float("nan")


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x: Array, t_x: Array, T: Array) -> Array:
    """Per-row log-likelihood of BG/NBD, eq. (6) of Fader, Hardie & Lee (2005a):

    L = B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + δ(x>0) · B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))
    """
    x, t_x, T = np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)
    common = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
    alive = special.betaln(a, b + x) - (r + x) * np.log(alpha + T)
    repeat = x > 0
    dropped = np.full_like(x, -np.inf)
    xr = x[repeat]
    dropped[repeat] = special.betaln(a + 1, b + xr - 1) - (r + xr) * np.log(alpha + t_x[repeat])
    return np.asarray(common + np.logaddexp(alive, dropped), float)


def _distinct(values: Array) -> tuple[Array, NDArray[np.intp]]:
    """The distinct values and, per row, the index of its value: a transcendental function of a column is
    computed once per distinct value (x takes a few dozen values, t_x and T in days a few thousand) and
    gathered back to the rows."""
    distinct, index = np.unique(np.asarray(values, float), return_inverse=True)
    return distinct, index.reshape(-1)


def _bgnbd_objective(x: Array, t_x: Array, T: Array, w: Array) -> Any:
    """The mean negative log-likelihood of eq. (6) over log-parameters and its exact gradient, for L-BFGS-B.

    With C = ln Γ(r+x) − ln Γ(r) + r ln α − ln B(a, b), A = ln B(a, b+x) − (r+x) ln(α+T) and
    D = ln B(a+1, b+x−1) − (r+x) ln(α+t_x) (x > 0), each row's term is C + ln(e^A + e^D); its derivative is
    C' + π A' + (1 − π) D' with π = e^A / (e^A + e^D), the digamma ψ standing for the derivatives of ln Γ.
    Terms depending on x alone are computed per distinct x and weighted by that x's total weight.
    """
    xs, xi = _distinct(x)
    txs, ti = _distinct(t_x)
    Ts, Ti = _distinct(T)
    total = w.sum()
    w_x = np.bincount(xi, w, minlength=xs.size)
    repeat_x = xs > 0
    x_row = xs[xi]

    def objective(log_params: Array) -> tuple[float, Array]:
        r, alpha, a, b = np.exp(log_params)
        log_T, log_tx = np.log(alpha + Ts), np.log(alpha + txs)
        rx = r + xs
        common = special.gammaln(rx) - special.gammaln(r) + r * np.log(alpha) - special.betaln(a, b)
        alive_x = special.betaln(a, b + xs)
        dropped_x = np.full_like(xs, -np.inf)
        dropped_x[repeat_x] = special.betaln(a + 1, b + xs[repeat_x] - 1)
        rx_row = rx[xi]
        alive = alive_x[xi] - rx_row * log_T[Ti]
        dropped = dropped_x[xi] - rx_row * log_tx[ti]
        both = np.logaddexp(alive, dropped)
        ll = float(w_x @ common + w @ both)
        pi = np.exp(alive - both)  # the share of the "still alive" term
        w_alive, w_dropped = w * pi, w * (1.0 - pi)
        s_alive = np.bincount(xi, w_alive, minlength=xs.size)
        s_dropped = np.bincount(xi, w_dropped, minlength=xs.size)
        d_r = w_x @ (special.digamma(rx) - special.digamma(r) + np.log(alpha)) - (
            w_alive @ log_T[Ti] + w_dropped @ log_tx[ti]
        )
        d_alpha = total * r / alpha - (
            (w_alive * (r + x_row)) @ (1.0 / (alpha + Ts))[Ti]
            + (w_dropped * (r + x_row)) @ (1.0 / (alpha + txs))[ti]
        )
        psi_abx = special.digamma(a + b + xs)
        psi_b_x1 = np.zeros_like(xs)
        psi_b_x1[repeat_x] = special.digamma(b + xs[repeat_x] - 1)
        d_a = -total * (special.digamma(a) - special.digamma(a + b)) + (
            s_alive @ (special.digamma(a) - psi_abx) + s_dropped @ (special.digamma(a + 1) - psi_abx)
        )
        d_b = -total * (special.digamma(b) - special.digamma(a + b)) + (
            s_alive @ (special.digamma(b + xs) - psi_abx) + s_dropped @ (psi_b_x1 - psi_abx)
        )
        # d/d(ln θ) = θ · d/dθ; minimise the mean negative log-likelihood.
        grad = -np.array([r * d_r, alpha * d_alpha, a * d_a, b * d_b]) / total
        return -ll / total, grad

    return objective


def bgnbd_fit(x: Array, t_x: Array, T: Array, weights: Array | None = None) -> BgNbd:
    """Maximum likelihood (L-BFGS-B over the logs of the four parameters, which keeps them positive, with
    the exact gradient: one likelihood evaluation per step instead of five for finite differences)."""
    x, t_x, T = np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    total = w.sum()
    objective = _bgnbd_objective(x, t_x, T, w)
    start = np.log([1.0, max(float(np.average(T, weights=w)), 1e-3), 1.0, 1.0])
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(-12.0, 12.0)] * 4)
    if not result.success:
        result = optimize.minimize(
            lambda p: objective(p)[0], result.x, method="Nelder-Mead", options={"maxiter": 4000}
        )
    r, alpha, a, b = (float(v) for v in np.exp(result.x))
    return BgNbd(r, alpha, a, b, log_likelihood=float(-result.fun * total))


def bgnbd_p_alive(m: BgNbd, x: Array, t_x: Array, T: Array) -> Array:
    """P(alive | x, t_x, T) = 1 / (1 + δ(x>0) · a/(b+x−1) · ((α+T)/(α+t_x))^(r+x))."""
    x, t_x, T = np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)
    ratio = np.zeros_like(x)
    repeat = x > 0
    xr = x[repeat]
    ratio[repeat] = np.exp(
        np.log(m.a / (m.b + xr - 1))
        + (m.r + xr) * (np.log(m.alpha + T[repeat]) - np.log(m.alpha + t_x[repeat]))
    )
    return np.asarray(1.0 / (1.0 + ratio), float)


def bgnbd_expected(m: BgNbd, t: float | Array, x: Array, t_x: Array, T: Array) -> Array:
    """E[Y(t) | x, t_x, T]: expected purchases in the next t periods, eq. (10):

    ((a+b+x−1)/(a−1)) · [1 − ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x−1; t/(α+T+t))] · P(alive)
    """
    x, t_x, T = np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)
    t = np.asarray(t, float)
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    bracket = 1.0 - np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t))) * hyp
    return np.asarray((a + b + x - 1) / (a - 1) * bracket * bgnbd_p_alive(m, x, t_x, T), float)


def bgnbd_expected_new(m: BgNbd, t: float | Array) -> Array:
    """E[X(t)] for a customer just acquired, eq. (9): the holdout check's population curve."""
    t = np.asarray(t, float)
    r, alpha, a, b = m.r, m.alpha, m.a, m.b
    hyp = special.hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return np.asarray((a + b - 1) / (a - 1) * (1.0 - (alpha / (alpha + t)) ** r * hyp), float)


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x: Array, m: Array) -> Array:
    """Per-row log-density of the mean spend m of x repeat purchases (the 2013 note, eq. 4):

    f(m | p, q, v, x) = Γ(px+q) / (Γ(px) Γ(q)) · v^q · m^(px−1) · x^(px) / (v + m x)^(px+q)
    """
    x, m = np.asarray(x, float), np.asarray(m, float)
    px = p * x
    return np.asarray(
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + m * x),
        float,
    )


def _gamma_gamma_objective(x: Array, m: Array, w: Array) -> Any:
    """The mean negative log-likelihood of the note's eq. (4) over log-parameters and its exact gradient:
    d/dp = x (ψ(px+q) − ψ(px) + ln m + ln x − ln(v+mx)), d/dq = ψ(px+q) − ψ(q) + ln v − ln(v+mx),
    d/dv = q/v − (px+q)/(v+mx). Γ and ψ of px are computed per distinct x."""
    xs, xi = _distinct(x)
    total = w.sum()
    w_x = np.bincount(xi, w, minlength=xs.size)
    log_m, log_x = np.log(m), np.log(x)
    mx = m * x
    wx = w * x
    w_log_m, wx_log_mx = w @ log_m, wx @ (log_m + log_x)

    def objective(log_params: Array) -> tuple[float, Array]:
        p, q, v = np.exp(log_params)
        px = p * xs
        log_vmx = np.log(v + mx)
        pxq_row = (px + q)[xi]
        ll = (
            w_x @ (special.gammaln(px + q) - special.gammaln(px))
            + total * (q * np.log(v) - special.gammaln(q))
            + p * wx_log_mx
            - w_log_m
            - w @ (pxq_row * log_vmx)
        )
        psi_pxq = special.digamma(px + q)
        d_p = (w_x * xs) @ (psi_pxq - special.digamma(px)) + wx_log_mx - wx @ log_vmx
        d_q = w_x @ psi_pxq - total * special.digamma(q) + total * np.log(v) - w @ log_vmx
        d_v = total * q / v - w @ (pxq_row / (v + mx))
        grad = -np.array([p * d_p, q * d_q, v * d_v]) / total
        return float(-ll / total), grad

    return objective


def gamma_gamma_fit(x: Array, m: Array, weights: Array | None = None) -> GammaGamma:
    """Maximum likelihood over customers with x > 0 and m > 0 (the caller passes only those), L-BFGS-B with
    the exact gradient."""
    x, m = np.asarray(x, float), np.asarray(m, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    total = w.sum()
    objective = _gamma_gamma_objective(x, m, w)
    start = np.log([1.0, 2.0, max(float(np.average(m, weights=w)), 1.0)])
    result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(-12.0, 16.0)] * 3)
    if not result.success:
        result = optimize.minimize(
            lambda p: objective(p)[0], result.x, method="Nelder-Mead", options={"maxiter": 4000}
        )
    p, q, v = (float(val) for val in np.exp(result.x))
    return GammaGamma(p, q, v, log_likelihood=float(-result.fun * total))


def gamma_gamma_expected_spend(g: GammaGamma, x: Array, m: Array) -> Array:
    """E[M | x, m] = (v + m x) p / (p x + q − 1), a weighted mean of the population mean p v / (q − 1) and
    the customer's own mean m (weight p x / (p x + q − 1)); the population mean alone for x = 0."""
    x, m = np.asarray(x, float), np.asarray(m, float)
    return np.asarray((g.v + m * x) * g.p / (g.p * x + g.q - 1), float)


def clv(
    model: BgNbd,
    spend: Array,
    x: Array,
    t_x: Array,
    T: Array,
    *,
    horizon: float,
    period_rate: float,
    steps: int,
) -> Array:
    """Discounted expected value over `horizon` periods: the horizon cut in `steps` equal parts, each part's
    expected purchases (differences of eq. 10) times the expected spend, discounted at `period_rate` per
    period to the end of its part."""
    total = np.zeros_like(np.asarray(x, float))
    previous = np.zeros_like(total)
    for step in range(1, steps + 1):
        t = horizon * step / steps
        cumulative = bgnbd_expected(model, t, x, t_x, T)
        total += (cumulative - previous) / (1.0 + period_rate) ** t
        previous = cumulative
    return np.asarray(total * np.asarray(spend, float), float)


def simulate_bgnbd(
    rng: np.random.Generator, n: int, r: float, alpha: float, a: float, b: float, T: Array
) -> tuple[Array, Array]:
    """Draw (x, t_x) for n customers observed for T periods from the BG/NBD story itself: λ ~ Gamma(r, α),
    p ~ Beta(a, b); purchases arrive as a Poisson process of rate λ; after each repeat purchase the customer
    drops out with probability p (for tests: parameter recovery)."""
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    x, t_x, now = np.zeros(n), np.zeros(n), np.zeros(n)
    active = np.ones(n, bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1.0 / np.maximum(lam[idx], 1e-12))
        arrived = now[idx] <= T[idx]
        done = idx[~arrived]
        active[done] = False
        got = idx[arrived]
        x[got] += 1
        t_x[got] = now[got]
        active[got[rng.random(got.size) < p[got]]] = False
    return x, t_x


def simulate_gamma_gamma(rng: np.random.Generator, x: Array, p: float, q: float, v: float) -> Array:
    """Mean spend of x purchases per customer: ν ~ Gamma(q, v), each spend ~ Gamma(p, ν) (so their sum is
    Gamma(p x, ν))."""
    nu = rng.gamma(q, 1.0 / v, x.size)
    return np.asarray(rng.gamma(p * x, 1.0 / nu) / x, float)
