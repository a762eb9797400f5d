"""A seeded synthetic stand-in for the Saec paper's QQ-browser production trace (Saec §1, §2.2.1, §3.1).

The paper trains continuously on 240 hourly segments of a 10-day trace in which

* the number of features grows ~10x, from under 10^7 to 1.24x10^8 (Fig. 1, Table 1);
* field sizes are heavy-tailed: most fields have under 10^4 features, ~7% over 10^5 (Fig. 4(a));
* feature frequency is heavy-tailed (Fig. 4(b));
* 88.95% of the embedding vectors have length 9 and 11.05% length 17 (§1);
* similar features exist inside a field (the premise of field-aware clustering, §2.2.1).

:class:`SyntheticTrace` generates such segments from a *known* click model, so every segment also
carries the Bayes-optimal AUC and log loss (the true click probability scored against the drawn
labels): the ceiling every method is judged against.

The model, for feature index ``j`` (0 = most popular) of field ``f``:

* **universe**: field ``f`` ends the trace with ``S_f`` features; its live universe grows
  geometrically from ``S_f / growth`` at hour 0 to ``S_f`` at the last hour, new features taking the
  next indices. Final sizes ``S_f`` are lognormal quantiles (``field_sigma``) scaled to
  ``final_features`` and assigned to fields by a seeded permutation.
* **frequency**: a draw from field ``f`` at hour ``h`` is, with probability ``1 - new_feature_share``,
  a bounded Zipf(``zipf_exponent``) rank over the live universe, otherwise a bounded Zipf rank
  inside the block of features born at hour ``h`` (so new features really show up in the data).
  The bounded Zipf is the continuous approximation ``P(k) ∝ ∫_{k+1/2}^{k+3/2} x^-s dx``, sampled by
  inverting its CDF in O(1) memory per draw; :meth:`SyntheticTrace.table` uses the same ``P(k)``.
* **labels**: ``logit = bias + Σ_f [effect[f, group_f(j)] + dev_f(j)] + Σ_pairs <u, v>`` where
  ``group_f(j) = hash(seed, f, j) mod groups`` (no per-feature memory), ``effect`` is a scalar per
  (field, group), ``dev_f(j)`` a small hash-derived per-feature deviation, and a few field pairs
  interact through rank-``latent_rank`` group vectors. ``bias`` is calibrated so the CTR is ``ctr``.
  ``label ~ Bernoulli(sigmoid(logit))``.

Everything is deterministic: ``segment(h)`` uses ``SeedSequence([seed, h])`` and hash functions of
``(seed, field, j)``, so it does not depend on which segments were generated before. Memory for a
segment is O(samples x fields); nothing is O(total features) except the arrays
:meth:`SyntheticTrace.table` is asked to return.

Raw feature ids are a seeded bijective scramble of ``(field, j)`` into ``[0, 2^63)``, so raw ids
carry no popularity order (hashing baselines cannot exploit it) and are unique across fields;
:meth:`SyntheticTrace.feature_index` inverts it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np
from scipy.special import expit, ndtri

from saec.config import check_float, check_int
from saec.data.dataset import CTRData
from saec.data.schema import Field, Schema
from saec.data.vocab import Vocabulary
from saec.errors import SaecError
from saec.train.metrics import auc, log_loss

__all__ = [
    "PRESETS", "FieldTable", "Segment", "SyntheticTrace", "TraceConfig", "encode_segment", "zipf_pmf", "zipf_sample"
]

PRESETS: dict[str, dict[str, Any]] = {
    # Tests: hundreds to a few thousand features, milliseconds per segment.
    "tiny": dict(n_fields=8, final_features=2_000, hours=6, samples_per_hour=2_000, groups=8),
    "small": dict(n_fields=16, final_features=50_000, hours=12, samples_per_hour=10_000, groups=16),
    # The defaults: 32 fields, 2x10^5 features, one day.
    "medium": dict(),
    # 1/10 of the paper's final table over the paper's 240 hourly segments (Saec §3.1, Table 1).
    "large": dict(n_fields=128, final_features=12_400_000, hours=240, samples_per_hour=50_000, field_sigma=3.5),
    # The paper's scale: 1.24x10^8 features at the end (Table 1); meant for table() benchmarks.
    "paper": dict(n_fields=256, final_features=124_000_000, hours=240, samples_per_hour=100_000, field_sigma=4.0),
}

_ID_BITS = 44  # raw-id packing: (field << 44) | j, so j < 2^44 and field < 2^19
_M63 = (1 << 63) - 1
_C1 = 0x3F58476D1CE4E5B9  # odd multipliers: bijections modulo 2^63
_C2 = 0x14D049BB133111EB
_C1_INV = pow(_C1, -1, 1 << 63)
_C2_INV = pow(_C2, -1, 1 << 63)
_GOLDEN = 0x9E3779B97F4A7C15
_CHUNK = 1 << 20  # features per chunk in table()
_VEC_BLOCK = 1 << 16  # rows per seeded noise block in field_vectors(): chunking never changes a vector
_CALIBRATION_SAMPLES = 20_000
_VECTOR_SCALE = 0.05  # std of a centroid coordinate: embedding values of the size trained tables have


# -- parameters ------------------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


@dataclass(frozen=True)
class TraceConfig:
    """Parameters of a :class:`SyntheticTrace`; every one is validated (``ValueError`` names it).

    Attributes:
        n_fields: number of single-valued categorical fields.
        final_features: total number of features over all fields at the last hour.
        hours: number of hourly segments (the paper has 240, Saec §3.1).
        samples_per_hour: samples in each segment.
        growth: the live universe grows by this factor from hour 0 to the last hour (~10x, Saec Fig. 1).
        zipf_exponent: exponent ``s`` of the bounded Zipf feature frequency inside a field (Fig. 4(b)).
        long_dim_share: target share of vectors (feature weighted, last hour) that get the long dim
            (11.05% in Saec §1).
        dims: (short, long) embedding dimensions (9 and 17 in Saec §1).
        groups: latent groups per field; features of a group share their effect on the label.
        new_feature_share: share of each field's draws that go to the features born that hour.
        field_sigma: sigma of the lognormal that field sizes are quantiles of (heavier tail if larger).
        ctr: target mean click-through rate; the model bias is calibrated to it.
        signal: standard deviation of the logit's main effects (sum over fields of the group effects).
        feature_noise: std of a feature's own deviation from its group effect, relative to its field's
            group-effect std.
        interactions: number of field pairs with a pairwise interaction (fewer if there are fewer pairs).
        interaction_scale: standard deviation of each pairwise interaction term.
        latent_rank: rank of the latent group vectors of the interactions.
        seed: seed of everything (a non-negative integer).
    """

    n_fields: int = 32
    final_features: int = 200_000
    hours: int = 24
    samples_per_hour: int = 20_000
    growth: float = 10.0
    zipf_exponent: float = 1.1
    long_dim_share: float = 0.11
    dims: tuple[int, int] = (9, 17)
    groups: int = 32
    new_feature_share: float = 0.1
    field_sigma: float = 2.5
    ctr: float = 0.15
    signal: float = 1.6
    feature_noise: float = 0.3
    interactions: int = 4
    interaction_scale: float = 0.5
    latent_rank: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        def need_int(name: str, lo: int, hi: int | None = None) -> None:
            object.__setattr__(self, name, check_int(f"TraceConfig.{name}", getattr(self, name), lo, hi))

        def need_real(name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
            value = check_float(f"TraceConfig.{name}", getattr(self, name), lo, hi, lo_open=lo_open, hi_open=hi_open)
            object.__setattr__(self, name, value)

        need_int("n_fields", 1, (1 << (63 - _ID_BITS)) - 1)
        need_int("hours", 1)
        need_int("samples_per_hour", 1)
        need_int("groups", 1)
        need_int("interactions", 0)
        need_int("latent_rank", 1)
        need_int("seed", 0)
        need_real("growth", 1.0, 1e6)
        need_int("final_features", 1, 1 << _ID_BITS)
        if self.final_features < self.n_fields * math.ceil(self.growth):
            raise SaecError(
                f"TraceConfig.final_features must be >= n_fields * ceil(growth) = "
                f"{self.n_fields * math.ceil(self.growth)} so every field starts with a feature, "
                f"got {self.final_features}"
            )
        need_real("zipf_exponent", 0.0, 10.0)
        need_real("long_dim_share", 0.0, 1.0)
        need_real("new_feature_share", 0.0, 1.0, hi_open=True)
        need_real("field_sigma", 0.0, 10.0)
        need_real("ctr", 0.0, 1.0, lo_open=True, hi_open=True)
        need_real("signal", 0.0, 20.0)
        need_real("feature_noise", 0.0, 10.0)
        need_real("interaction_scale", 0.0, 20.0)
        d = self.dims
        if not (isinstance(d, (tuple, list)) and len(d) == 2 and all(_is_int(x) and x >= 1 for x in d)):
            raise SaecError(f"TraceConfig.dims must be two positive integers (short, long), got {d!r}")
        object.__setattr__(self, "dims", (int(d[0]), int(d[1])))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TraceConfig":
        """A named configuration (``tiny``, ``small``, ``medium``, ``large``, ``paper``) with overrides.

        ``tiny`` is for tests, ``medium`` equals the defaults, ``large`` is 1/10 of the paper's final
        table over 240 hours and ``paper`` its full 1.24x10^8 features (Saec Table 1).
        """
        if name not in PRESETS:
            raise SaecError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SaecError(f"unknown TraceConfig parameters {unknown}")
        return cls(**{**PRESETS[name], **overrides})


# -- bounded Zipf ---------------------------------------------------------------------------------
def _zipf_mass(lo: np.ndarray | float, hi: np.ndarray | float, s: float) -> np.ndarray:
    """``∫_lo^hi x^-s dx`` computed without cancellation (``hi > lo > 0``)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    lr = np.log(hi / lo)
    a = 1.0 - s
    if a == 0.0:
        return lr
    return np.exp(a * np.log(lo)) * np.expm1(a * lr) / a


def zipf_pmf(k: np.ndarray, n: int, s: float) -> np.ndarray:
    """Probability of rank ``k`` (0-based) of the bounded Zipf over ``n`` ranks that
    :func:`zipf_sample` draws from: ``P(k) = ∫_{k+1/2}^{k+3/2} x^-s dx / ∫_{1/2}^{n+1/2} x^-s dx``."""
    k = np.asarray(k, dtype=np.float64)
    return _zipf_mass(k + 0.5, k + 1.5, s) / _zipf_mass(0.5, n + 0.5, s)


def zipf_sample(u: np.ndarray, n: np.ndarray | int, s: float) -> np.ndarray:
    """Ranks in ``[0, n)`` of a bounded Zipf(``s``) by inverting its CDF at uniforms ``u`` in [0, 1).

    O(1) memory per draw: no probability vector over the ``n`` ranks is built. ``n`` may be an
    array broadcasting with ``u``.
    """
    u = np.asarray(u, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    lo, hi = 0.5, n + 0.5
    a = 1.0 - s
    span = np.log(hi / lo)
    if a == 0.0:
        x = lo * np.exp(u * span)
    else:
        # x^a = lo^a + u (hi^a - lo^a), written with expm1/log1p so s near 1 loses no precision.
        x = lo * np.exp(np.log1p(u * np.expm1(a * span)) / a)
    k = np.floor(x - 0.5).astype(np.int64)
    return np.clip(k, 0, np.asarray(n, dtype=np.int64) - 1)


# -- hashing --------------------------------------------------------------------------------------
def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection of uint64 with good avalanche."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash(j: np.ndarray, salt: int) -> np.ndarray:
    """uint64 hash of feature indices ``j`` under a 64-bit salt."""
    x = np.asarray(j).astype(np.uint64).reshape(-1)
    return _mix64(x * np.uint64(_GOLDEN) + np.uint64(salt)).reshape(np.shape(j))


def _unit(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> float64 uniforms in [0, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _perm63(x: np.ndarray) -> np.ndarray:
    """A bijection of [0, 2^63) (xorshift-multiply rounds modulo 2^63)."""
    m = np.uint64(_M63)
    x = x ^ (x >> np.uint64(31))
    x = (x * np.uint64(_C1)) & m
    x = x ^ (x >> np.uint64(29))
    x = (x * np.uint64(_C2)) & m
    return x ^ (x >> np.uint64(32))


def _unxorshift(y: np.ndarray, s: int) -> np.ndarray:
    x = y
    for _ in range(63 // s + 1):
        x = y ^ (x >> np.uint64(s))
    return x


def _unperm63(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_perm63`."""
    m = np.uint64(_M63)
    x = _unxorshift(y, 32)
    x = (x * np.uint64(_C2_INV)) & m
    x = _unxorshift(x, 29)
    x = (x * np.uint64(_C1_INV)) & m
    return _unxorshift(x, 31)


def _seed_words(seed: int, *key: int) -> np.random.SeedSequence:
    """Seed sequence of a named stream: ``key`` separates the model's streams from the hours'."""
    return np.random.SeedSequence(seed, spawn_key=key)


# -- outputs --------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Segment:
    """One hour of the trace.

    Attributes:
        hour: index of the segment, 0-based.
        raw: raw feature id (int64, scrambled, unique across fields) of every sample, per field name.
        labels: 0/1 clicks, float32.
        prob: the true click probability of every sample, float64.
    """

    hour: int
    raw: dict[str, np.ndarray]
    labels: np.ndarray
    prob: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ctr(self) -> float:
        """Mean label."""
        return float(self.labels.mean())

    @cached_property
    def bayes_auc(self) -> float:
        """AUC of the true probability against the drawn labels: the ceiling of any model
        (NaN when the segment has a single class)."""
        if self.labels.min() == self.labels.max():
            return float("nan")
        return auc(self.labels, self.prob)

    @cached_property
    def bayes_logloss(self) -> float:
        """Log loss of the true probability against the drawn labels (the Bayes-optimal floor)."""
        return log_loss(self.labels, self.prob)


@dataclass(frozen=True, eq=False)
class FieldTable:
    """A field's embedding table at some hour, for compression benchmarks.

    Attributes:
        name: field name.
        dim: vector length of the field.
        counts: int64 (size,), expected occurrences of each feature from hour 0 to the table's hour
            under the trace's sampling model, rounded, at least 1 (every feature in the universe has a
            row because it was seen). Index = feature index ``j`` (0 = most popular at birth).
        groups: int64 (size,) true latent group of each feature (what clustering should recover).
        vectors: float32 (size, dim) trained-looking vectors (group centroid + noise), or ``None``.
    """

    name: str
    dim: int
    counts: np.ndarray
    groups: np.ndarray
    vectors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.counts)


# -- the trace ------------------------------------------------------------------------------------
class SyntheticTrace:
    """Deterministic hourly segments mirroring the Saec paper's QQ-browser trace (module docstring).

    Attributes:
        config: the :class:`TraceConfig`.
        schema: fields ``f00, f01, ...`` with dims 9 or 17, label ``"label"``.
        names: field names in schema order.
        field_sizes: int64 (n_fields,), features of each field at the last hour.
        field_std: std of each field's group effects (uneven field importance).
        effects: (n_fields, groups) scalar logit effect of every latent group.
        dev_std: std of a feature's own deviation from its group effect, per field.
        pairs: interacting field pairs; ``latent[f]`` is field ``f``'s (groups, latent_rank) vectors.
        bias: calibrated global logit bias.
    """

    def __init__(self, config: TraceConfig | None = None) -> None:
        self.config = cfg = config if config is not None else TraceConfig()
        F, G = cfg.n_fields, cfg.groups
        self.field_sizes = self._field_sizes()
        dims = self._assign_dims(self.field_sizes)
        width = max(2, len(str(F - 1)))
        self.names = [f"f{i:0{width}d}" for i in range(F)]
        self.schema = Schema(
            fields=tuple(Field(name=n, dim=int(d)) for n, d in zip(self.names, dims)),
            label="label",
            extra={"source": "saec.data.synthetic", "config": dataclasses.asdict(cfg)},
        )
        self._dims = dims
        # Geometric growth of every field's universe (Saec Fig. 1): hours -1 .. H-1.
        self._universe = self._universe_table()

        salts = _seed_words(cfg.seed, 9).generate_state(3 * F, dtype=np.uint64).reshape(3, F)
        self._group_salt = [int(x) for x in salts[0]]
        self._dev_salt = [int(x) for x in salts[1]]
        self._raw_key = [int(x) & _M63 for x in salts[2]]

        # Known click model. Field importance is uneven (exponential weights), group effects are
        # Gaussian with the field's std, and features deviate a little from their group (§2.2.1:
        # similar features have similar effects).
        rng = np.random.default_rng(_seed_words(cfg.seed, 1))
        weight = rng.exponential(1.0, size=F)
        self.field_std = cfg.signal * np.sqrt(weight / weight.sum())
        self.effects = self.field_std[:, None] * rng.standard_normal((F, G))
        self.dev_std = cfg.feature_noise * self.field_std
        n_pairs = min(cfg.interactions, F * (F - 1) // 2)
        flat = np.sort(rng.choice(F * (F - 1) // 2, size=n_pairs, replace=False)) if n_pairs else np.zeros(0, int)
        iu, ju = np.triu_indices(F, k=1)
        self.pairs = [(int(iu[p]), int(ju[p])) for p in flat]
        self.latent = {f: rng.standard_normal((G, cfg.latent_rank)) for f in sorted({f for p in self.pairs for f in p})}
        self.bias = 0.0
        self.bias = self._calibrate_bias()

    # -- structure -------------------------------------------------------------------------------
    def _field_sizes(self) -> np.ndarray:
        """Lognormal quantiles (deterministic shape) scaled to ``final_features``, at least
        ``ceil(growth)`` each, largest-remainder rounded, assigned to fields by a seeded permutation
        (Saec Fig. 4(a): most fields small, a few huge)."""
        cfg = self.config
        F, T = cfg.n_fields, cfg.final_features
        floor = math.ceil(cfg.growth)
        w = np.exp(cfg.field_sigma * ndtri((np.arange(F) + 0.5) / F))
        share = (T - floor * F) * w / w.sum()
        sizes = np.floor(share).astype(np.int64)
        rest = (T - floor * F) - int(sizes.sum())
        sizes[np.argsort(-(share - sizes), kind="stable")[:rest]] += 1
        sizes += floor
        perm = np.random.default_rng(_seed_words(cfg.seed, 2)).permutation(F)
        return sizes[perm]

    def _assign_dims(self, sizes: np.ndarray) -> np.ndarray:
        """Give the long dim to a subset of fields holding ~``long_dim_share`` of the final features
        (Saec §1: 88.95% of vectors have length 9, 11.05% length 17): greedy subset sum, largest field
        first, taking every field that does not overshoot the target, then the one overshooting field
        that lands closest if that beats stopping short."""
        cfg = self.config
        short, long = cfg.dims
        target = cfg.long_dim_share * float(sizes.sum())
        dims = np.full(len(sizes), short, dtype=np.int64)
        acc = 0
        for f in np.argsort(-sizes, kind="stable"):
            if acc + sizes[f] <= target:
                dims[f] = long
                acc += int(sizes[f])
        rest = np.flatnonzero(dims == short)
        if len(rest):
            f = rest[np.argmin(np.abs(acc + sizes[rest] - target))]
            if abs(acc + sizes[f] - target) < abs(acc - target):
                dims[f] = long
        return dims

    def _universe_table(self) -> np.ndarray:
        """int64 (hours + 1, n_fields): row ``h + 1`` is the live universe at hour ``h`` (row 0 is
        hour -1, the lower end of the block born at hour 0)."""
        cfg = self.config
        h = np.arange(-1, cfg.hours, dtype=np.float64)
        frac = cfg.growth ** ((h - (cfg.hours - 1)) / max(cfg.hours - 1, 1))
        u = np.rint(self.field_sizes[None, :] * frac[:, None]).astype(np.int64)
        u = np.maximum(u, 1)
        u[-1] = self.field_sizes  # exact at the end
        return np.maximum.accumulate(u, axis=0)

    def _check_hour(self, hour: int) -> int:
        if not _is_int(hour) or not 0 <= hour < self.config.hours:
            raise SaecError(f"hour must be an integer in [0, {self.config.hours}), got {hour!r}")
        return int(hour)

    def _check_field(self, field: int | str) -> int:
        if isinstance(field, str):
            if field not in self.names:
                raise SaecError(f"unknown field {field!r}; the trace has {self.names[0]} .. {self.names[-1]}")
            return self.names.index(field)
        if not _is_int(field) or not 0 <= field < self.config.n_fields:
            raise SaecError(f"field must be a name or an index in [0, {self.config.n_fields}), got {field!r}")
        return int(field)

    def universe(self, hour: int) -> np.ndarray:
        """Live features of every field at ``hour`` (int64, n_fields): indices ``0 .. U-1`` exist."""
        return self._universe[self._check_hour(hour) + 1].copy()

    def born(self, hour: int) -> tuple[np.ndarray, np.ndarray]:
        """``(start, stop)`` per field of the indices of the features born at ``hour``."""
        h = self._check_hour(hour)
        return self._universe[h].copy(), self._universe[h + 1].copy()

    @property
    def dims(self) -> np.ndarray:
        """Vector length of every field (int64, n_fields)."""
        return self._dims.copy()

    def long_share(self, hour: int | None = None) -> float:
        """Share of the live vectors at ``hour`` (default: last hour) that have the long dim."""
        u = self.field_sizes if hour is None else self.universe(hour)
        return float(u[self._dims == self.config.dims[1]].sum() / u.sum())

    # -- the click model -------------------------------------------------------------------------
    def feature_groups(self, field: int | str, j: np.ndarray) -> np.ndarray:
        """True latent group (int64) of features ``j`` of ``field``: ``hash(seed, f, j) mod groups``."""
        f = self._check_field(field)
        return ((_hash(j, self._group_salt[f]) >> np.uint64(16)) % np.uint64(self.config.groups)).astype(np.int64)

    def _deviation(self, f: int, j: np.ndarray) -> np.ndarray:
        """A feature's own effect: hash-derived uniform with std ``dev_std[f]``."""
        u = _unit(_hash(j, self._dev_salt[f]))
        return (2.0 * u - 1.0) * (math.sqrt(3.0) * self.dev_std[f])

    def _draw(self, rng: np.random.Generator, n: int, hour_row: int) -> list[np.ndarray]:
        """Feature indices of ``n`` draws per field at universe row ``hour_row`` (hour + 1)."""
        cfg = self.config
        s, nu = cfg.zipf_exponent, cfg.new_feature_share
        start, stop = self._universe[hour_row - 1], self._universe[hour_row]
        out = []
        for f in range(cfg.n_fields):
            u = rng.random(n)
            new = rng.random(n) < nu  # always drawn so the stream does not depend on sizes
            nb = int(stop[f] - start[f])
            j = zipf_sample(u, int(stop[f]), s)
            if nb > 0 and nu > 0:
                # Saec Fig. 1: features keep arriving; a share of the traffic goes to this hour's.
                j[new] = start[f] + zipf_sample(u[new], nb, s)
            out.append(j)
        return out

    def _logit(self, idx: Sequence[np.ndarray]) -> np.ndarray:
        """Logits of samples given their feature index per field."""
        cfg = self.config
        z = np.full(len(idx[0]), self.bias, dtype=np.float64)
        groups = []
        for f, j in enumerate(idx):
            g = self.feature_groups(f, j)
            groups.append(g)
            z += self.effects[f, g]
            z += self._deviation(f, j)
        scale = cfg.interaction_scale / math.sqrt(cfg.latent_rank)
        for a, b in self.pairs:
            z += scale * np.einsum("ij,ij->i", self.latent[a][groups[a]], self.latent[b][groups[b]])
        return z

    def _calibrate_bias(self) -> float:
        """Bias making the mean click probability ``ctr`` on a calibration draw at the middle hour."""
        rng = np.random.default_rng(_seed_words(self.config.seed, 3))
        idx = self._draw(rng, _CALIBRATION_SAMPLES, self.config.hours // 2 + 1)
        z = self._logit(idx)  # bias is 0 here
        lo, hi = -40.0, 40.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if expit(z + mid).mean() < self.config.ctr:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def click_prob(self, idx: dict[str, np.ndarray] | Sequence[np.ndarray]) -> np.ndarray:
        """True click probability of samples given by feature index ``j`` per field (all fields)."""
        if isinstance(idx, dict):
            missing = [n for n in self.names if n not in idx]
            if missing:
                raise SaecError(f"click_prob needs every field; missing {missing[:5]}")
            idx = [np.asarray(idx[n], dtype=np.int64) for n in self.names]
        if len(idx) != self.config.n_fields:
            raise SaecError(f"click_prob needs {self.config.n_fields} fields, got {len(idx)}")
        return expit(self._logit(idx))

    # -- raw ids ---------------------------------------------------------------------------------
    def raw_ids(self, field: int | str, j: np.ndarray) -> np.ndarray:
        """Raw (scrambled) int64 ids of features ``j`` of ``field``; a bijection, unique across fields."""
        f = self._check_field(field)
        j = np.asarray(j, dtype=np.int64)
        x = ((np.uint64(f) << np.uint64(_ID_BITS)) | j.astype(np.uint64).reshape(-1)) ^ np.uint64(self._raw_key[f])
        return _perm63(x).astype(np.int64).reshape(j.shape)

    def feature_index(self, field: int | str, raw: np.ndarray) -> np.ndarray:
        """Feature index ``j`` of raw ids of ``field`` (inverse of :meth:`raw_ids`); ``ValueError`` if
        an id is not a feature of that field."""
        f = self._check_field(field)
        raw = np.asarray(raw, dtype=np.int64)
        if raw.size and raw.min() < 0:
            raise SaecError("raw ids are non-negative")
        x = _unperm63(raw.astype(np.uint64).reshape(-1)) ^ np.uint64(self._raw_key[f])
        if raw.size and (x >> np.uint64(_ID_BITS) != np.uint64(f)).any():
            raise SaecError(f"some raw ids are not features of field {self.names[f]!r}")
        return (x & np.uint64((1 << _ID_BITS) - 1)).astype(np.int64).reshape(raw.shape)

    # -- segments --------------------------------------------------------------------------------
    def segment(self, hour: int) -> Segment:
        """The samples of ``hour``; seeded by ``SeedSequence([seed, hour])`` alone, so identical
        whatever was generated before."""
        h = self._check_hour(hour)
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, h]))
        idx = self._draw(rng, cfg.samples_per_hour, h + 1)
        prob = expit(self._logit(idx))
        labels = (rng.random(cfg.samples_per_hour) < prob).astype(np.float32)
        raw = {name: self.raw_ids(f, j) for f, (name, j) in enumerate(zip(self.names, idx))}
        return Segment(hour=h, raw=raw, labels=labels, prob=prob)

    def segments(self, start: int = 0, stop: int | None = None) -> Iterator[Segment]:
        """Segments ``start .. stop-1`` (default: to the end), generated lazily."""
        stop = self.config.hours if stop is None else stop
        if not _is_int(start) or not _is_int(stop) or not 0 <= start <= stop <= self.config.hours:
            raise SaecError(f"need 0 <= start <= stop <= {self.config.hours}, got start={start!r}, stop={stop!r}")
        for h in range(start, stop):
            yield self.segment(h)

    # -- tables for compression benchmarks -------------------------------------------------------
    def field_counts(self, hour: int, field: int | str, out: np.ndarray | None = None) -> np.ndarray:
        """Expected occurrences of every live feature of ``field`` over hours ``0..hour`` (rounded,
        at least 1), int64 of length ``universe(hour)[field]``; computed in chunks.

        The expectation is exact for the sampling model: a feature born at hour ``b`` gets
        ``n (1-ν) P_{U(t)}(j)`` at every hour ``t >= b`` plus ``n ν P_{nb(b)}(j - start(b))`` at ``b``.
        """
        h, f = self._check_hour(hour), self._check_field(field)
        cfg = self.config
        s, n = cfg.zipf_exponent, float(cfg.samples_per_hour)
        rows = self._universe[: h + 2, f]  # hours -1 .. h
        start, stop = rows[:-1], rows[1:]  # born blocks of hours 0..h
        nb = stop - start
        nu = np.where(nb > 0, cfg.new_feature_share, 0.0)
        z_all = _zipf_mass(0.5, stop + 0.5, s)  # normaliser of the established draws per hour
        z_new = _zipf_mass(0.5, np.maximum(nb, 1) + 0.5, s)
        # suffix[b] = Σ_{t=b..h} n (1-ν_t) / Z(U(t))
        suffix = np.cumsum((n * (1.0 - nu) / z_all)[::-1])[::-1]
        size = int(stop[-1])
        if out is None:
            out = np.empty(size, dtype=np.int64)
        elif out.shape != (size,) or out.dtype != np.int64:
            raise SaecError(f"out must be int64 of shape ({size},), got {out.dtype} {out.shape}")
        for a in range(0, size, _CHUNK):
            j = np.arange(a, min(a + _CHUNK, size), dtype=np.int64)
            b = np.searchsorted(stop, j, side="right")  # birth hour: first t with U(t) > j
            jf = j.astype(np.float64)
            e = _zipf_mass(jf + 0.5, jf + 1.5, s) * suffix[b]
            k = j - start[b]
            fresh = k >= 0  # hour 0's block starts at U(-1); older features were never "new"
            kf = k[fresh].astype(np.float64)
            e[fresh] += n * nu[b[fresh]] * _zipf_mass(kf + 0.5, kf + 1.5, s) / z_new[b[fresh]]
            out[a : a + len(j)] = np.maximum(np.rint(e), 1).astype(np.int64)
        return out

    def centroids(self, field: int | str) -> np.ndarray:
        """float32 (groups, dim) group centroids of ``field``'s trained-looking vectors."""
        f = self._check_field(field)
        rng = np.random.default_rng(_seed_words(self.config.seed, 4, f))
        return (_VECTOR_SCALE * rng.standard_normal((self.config.groups, int(self._dims[f])))).astype(np.float32)

    def field_vectors(
        self, field: int | str, start: int, stop: int, noise: float = 0.25, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Trained-looking vectors of features ``start .. stop-1`` of ``field``: their group's centroid
        plus Gaussian noise of ``noise`` times the centroid spread; float32 (stop-start, dim).

        Noise comes from seeded blocks of rows, so a vector is the same however the range is chunked
        and at every hour.
        """
        f = self._check_field(field)
        noise = check_float("noise", noise, 0.0)
        if not (_is_int(start) and _is_int(stop) and 0 <= start <= stop < 1 << _ID_BITS):
            raise SaecError(f"need 0 <= start <= stop, got start={start!r}, stop={stop!r}")
        dim = int(self._dims[f])
        if out is None:
            out = np.empty((stop - start, dim), dtype=np.float32)
        elif out.shape != (stop - start, dim) or out.dtype != np.float32:
            raise SaecError(f"out must be float32 of shape ({stop - start}, {dim}), got {out.dtype} {out.shape}")
        cent = self.centroids(f)
        sd = np.float32(noise * _VECTOR_SCALE)
        for blk in range(start // _VEC_BLOCK, -(-stop // _VEC_BLOCK)):
            b0 = blk * _VEC_BLOCK
            lo, hi = max(start, b0), min(stop, b0 + _VEC_BLOCK)
            rng = np.random.default_rng(_seed_words(self.config.seed, 5, f, blk))
            eps = rng.standard_normal((_VEC_BLOCK, dim), dtype=np.float32)[lo - b0 : hi - b0]
            g = self.feature_groups(f, np.arange(lo, hi, dtype=np.int64))
            dst = out[lo - start : hi - start]
            np.multiply(eps, sd, out=dst)
            dst += cent[g]
        return out

    def table(self, hour: int, field: int | str, vectors: bool = True, noise: float = 0.25) -> FieldTable:
        """Counts, true groups and (if ``vectors``) trained-looking vectors of one field's live
        features at ``hour``. Holds nothing beyond the returned arrays: call it field by field to
        stream a paper-scale table (1.24x10^8 vectors, Saec Table 1)."""
        h, f = self._check_hour(hour), self._check_field(field)
        size = int(self._universe[h + 1, f])
        counts = self.field_counts(h, f)
        groups = np.empty(size, dtype=np.int64)
        for a in range(0, size, _CHUNK):
            b = min(a + _CHUNK, size)
            groups[a:b] = self.feature_groups(f, np.arange(a, b, dtype=np.int64))
        vecs = self.field_vectors(f, 0, size, noise=noise) if vectors else None
        return FieldTable(name=self.names[f], dim=int(self._dims[f]), counts=counts, groups=groups, vectors=vecs)

    def tables(self, hour: int, vectors: bool = True, noise: float = 0.25) -> list[FieldTable]:
        """:meth:`table` of every field at ``hour``."""
        return [self.table(hour, f, vectors=vectors, noise=noise) for f in range(self.config.n_fields)]


def encode_segment(seg: Segment, vocabs: dict[str, Vocabulary], grow: bool = False, min_count: int = 1) -> CTRData:
    """Encode a segment with per-field vocabularies into :class:`CTRData`.

    Streaming protocol (Saec §2.1): train on hour ``t`` with ``grow=True`` (each vocabulary first
    admits the hour's new features, creating missing vocabularies in ``vocabs`` with ``min_count``),
    then evaluate hour ``t + 1`` with ``grow=False`` so its unseen features encode to the OOV id -1.
    With ``min_count > 1`` a feature stays OOV in training until seen that often, so the OOV vector
    learns from first sightings -- what it serves at test time.
    """
    missing = [name for name in seg.raw if name not in vocabs]
    if missing and not grow:
        raise SaecError(f"no vocabulary for fields {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    ids = {}
    for name, raw in seg.raw.items():
        if grow:
            vocabs.setdefault(name, Vocabulary(min_count)).update(raw)
        ids[name] = vocabs[name].encode(raw)
    return CTRData(ids, seg.labels)
