"""``ponder`` / ``ponder(N)``: the Ponder method (Lehmann et al., e-Science 2024), CWS semantics.

With n samples, minY/maxY the smallest/largest peak, maxX the largest input, M = 128 MiB and x
the queried input (cws-semantics.md 5.3):

1. Warm-up, n < N (default 5): maxY + M if some observed input is **strictly** larger than x,
   else no prediction.
2. n >= N: r = Pearson correlation of (x, y) (NaN when all x or all y are equal).

   - r > 0.3: p = lr2(x); if p < minY then p = minY; else if (p > maxY and x < maxX) or
     (x >= maxX and p < maxY) then p = maxY. Then add max(M, 2·sqrt(V)), V the reliability-
     weighted variance of the lr2 residuals d_i = y_i - lr2(x_i) with weights
     w_i = 1 - |x_i - x| / max_j |x_j - x| + c, c = max(1 - n/10, 0) / 100 (all 1 when every
     x_i equals x), V = Σ w_i (d_i - d̄_w)² / (V1 - V2/V1), V1 = Σ w_i, V2 = Σ w_i².
     V = 0 when n <= 1 and, unlike CWS, also when the denominator is 0 (D23 fix: CWS gets NaN).
   - otherwise: maxY + M.

The offset wrapper (default ``max``) applies on top, as in CWS. The version increases by one per
observation. Maturity: stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from predictors import base, lr2

NAME = "ponder"
ALIASES: tuple[str, ...] = ()
SYNTAX = "ponder|ponder(N)"

CORRELATION_THRESHOLD = 0.3
"""Above this Pearson r the regression branch is used."""

_BLOCK = 256  # queries per vectorised block in the weighted variance (bounds memory to 256 x n)


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Arguments of ``ponder``.

    Attributes:
        warmup: N, the number of samples before the correlation test is used (>= 1).
    """

    warmup: int = 5


def parse_args(suffix: str) -> Args | None:
    """Return the arguments for ``ponder`` or ``ponder(N)``, else ``None``."""
    if suffix == "":
        return Args()
    if suffix.startswith("(") and suffix.endswith(")") and suffix[1:-1].isdigit():
        warmup = int(suffix[1:-1])
        return Args(warmup=warmup) if warmup >= 1 else None
    return None


def pearson(x: base.FloatArray, y: base.FloatArray) -> float:
    """Return the signed Pearson correlation, NaN with < 2 points or zero variance in x or y."""
    if x.size < 2:
        return math.nan
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / denominator if denominator > 0 else math.nan


def weighted_residual_variance(
    x: base.FloatArray, residuals: base.FloatArray, queries: base.FloatArray
) -> base.FloatArray:
    """Return Ponder's reliability-weighted variance of ``residuals`` around each query input.

    See the module docstring for the weights. Entries are 0 when n <= 1 or when the
    denominator V1 - V2/V1 is 0 (a single non-zero weight).
    """
    n = x.size
    result = np.zeros(queries.shape)
    if n <= 1:
        return result
    bonus = max(1.0 - n / 10.0, 0.0) / 100.0
    for start in range(0, queries.size, _BLOCK):
        q = queries[start : start + _BLOCK, None]
        distance = np.abs(x[None, :] - q)
        farthest = distance.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(farthest > 0, 1.0 - distance / farthest + bonus, 1.0)
        v1 = w.sum(axis=1)
        v2 = (w * w).sum(axis=1)
        mean = (w @ residuals) / v1
        spread = (w * (residuals[None, :] - mean[:, None]) ** 2).sum(axis=1)
        denominator = v1 - v2 / v1
        ok = denominator > 1e-12 * v1
        result[start : start + _BLOCK] = np.where(ok, spread / np.where(ok, denominator, 1.0), 0.0)
    return result


class PonderModel(lr2.AsymmetricModel):
    """Ponder: lr2 where input size explains memory, max observed + margin elsewhere."""

    def __init__(self, warmup: int = 5) -> None:
        super().__init__()
        self.warmup = warmup

    def predict_many(self, xs: base.FloatArray) -> base.FloatArray:
        """See :meth:`base.Model.predict_many`."""
        x, y = self.samples.x, self.samples.y
        n = x.size
        margin = float(base.PONDER_MARGIN_BYTES)
        if n == 0:
            return np.full(xs.shape, np.nan)
        max_y = float(y.max())
        if n < self.warmup:
            return np.where(xs < x.max(), max_y + margin, np.nan)
        if not pearson(x, y) > CORRELATION_THRESHOLD:
            return np.full(xs.shape, max_y + margin)
        min_y, max_x = float(y.min()), float(x.max())
        p = super().predict_many(xs)
        p = np.where(
            p < min_y,
            min_y,
            np.where(((p > max_y) & (xs < max_x)) | ((xs >= max_x) & (p < max_y)), max_y, p),
        )
        residuals = y - super().predict_many(x)
        variance = weighted_residual_variance(x, residuals, xs)
        return p + np.maximum(margin, 2.0 * np.sqrt(variance))


def make(args: Args) -> base.Model:
    """Return an empty Ponder model with warm-up size ``args.warmup``."""
    return PonderModel(args.warmup)
