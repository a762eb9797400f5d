"""Differentiable product quantization trained end to end, with frequency-aware code sizes (DPQ, Chen et al. 2020;
MGQE, Kang et al. 2020; survey §4.2, "Vector quantization").

Product quantization (:mod:`saec.nn.pq`) splits every row into ``M`` sub-vectors and stores each as the index of
its nearest centroid in that subspace's codebook of ``K`` centroids. DPQ learns the codes end to end: training
keeps a full *query* table ``Q``; the lookup of id ``i`` quantizes each sub-vector ``Q[i]^m`` to its nearest
centroid ``C_m[c_im]`` and returns the centroids' concatenation, so the network is trained on the quantized rows.
After training only the codes and the codebooks are kept. MGQE makes the code size frequency-aware: the ids are cut
into groups by frequency and group ``g`` may only use the first ``n_g`` centroids of every codebook (fewer for
rarer ids: the survey's "the embeddings in i-th group can only be quantized into the first n_i meta-embeddings in
each meta-table"), so a rare id's code needs ``ceil(log2 n_g)`` bits instead of ``ceil(log2 K)``.

Two tables, one method (as :mod:`saec.nn.binary`):

* :class:`DPQTrainEmbedding` (registered ``dpq_train``): the training form, ``Q`` (v x e float32), the codebooks
  (M x K x ceil(e / M) float32) and each id's group (one uint8 per id). Its bytes are what is trained, not what
  is served.
* :class:`DPQEmbedding` (registered ``dpq``, post-training, ``trained_with="dpq_train"``): the stored form, the
  codes bit-packed at each group's width and the codebooks (float32, trainable, so the table can be retrained).
  Built from a trained ``dpq_train`` table it keeps that table's codebooks and the codes its forward pass chose,
  so the lookups are identical; built from a float table it runs k-means per subspace under the group limits.

Choices where the papers leave room:

* Nearest centroid by squared Euclidean distance (DPQ-VQ's choice; DPQ-SX's softmax over dot products is not
  implemented); ties go to the lower index (``argmin``).
* Gradients: the lookup is ``C[code] + (Q - sg(Q))`` (``sg``: stop-gradient): its value is exactly the centroids,
  the centroids get the task's gradient through the indexing, and ``Q`` gets the same gradient unchanged (the
  straight-through estimator). DPQ-VQ (as VQ-VAE) instead returns ``Q + sg(C - Q)`` and moves the centroids with an
  extra centroid/commitment loss; saec's training loop has no auxiliary losses, and with this form the task loss
  alone trains both. ``Q`` follows its centroid's gradient, the centroid the sum of its members'.
* Centroid ``k`` of every codebook starts as the sub-vector of a distinct random row (seeded) of the most frequent
  group that may use it, so every centroid starts in use.
* Groups (MGQE): ids ranked by ``counts`` (descending, ties by id; None: id order is frequency order, as the
  vocabularies rank ids) are cut into ``len(group_centroids)`` groups of equal size, group 0 the most frequent
  (the survey numbers groups in ascending frequency; here they are listed most frequent first).
  ``group_centroids`` (non-increasing, each in [1, K]) defaults to ``[K, K // 4]``: the rarer half of the ids gets
  a quarter of the centroids, 2 bits less per code. ``[K]`` is plain DPQ.
* ``K`` defaults to :func:`saec.nn.pq.default_bits` (``2^bits``, at most 256, with 39 rows per centroid): the
  codebooks cost ``4 K e`` bytes, which 1/16 of a small table's bytes cannot pay for at K = 256.
* Storage: when the groups are id ranges (always without ``counts``, and for frequency-ranked vocabularies) the
  stored codes of group ``g`` take ``ceil(log2 n_g)`` bits each, packed little-endian into one uint8 buffer
  (``T // 8 + 2`` bytes for ``T`` bits: a code is read from two consecutive bytes). Otherwise every code takes
  ``ceil(log2 K)`` bits (the stored form does not keep the group of each id; the limits then only shape training).
  The packing is the ``layout`` in :meth:`DPQEmbedding.config`: ``[first id, centroids allowed]`` per segment.
* From a float table (``_from_weight``): the centroids the rarest group may use are k-means of every row, the next
  ones k-means of the rows allowed them (faiss, :func:`saec.cluster.kmeans.kmeans`, per subspace), so each prefix
  of a codebook is fit to the rows that can reach it; each row then takes its nearest allowed centroid.

A budget sets ``M`` of the stored form (``K`` and the groups stay as given or default); a trained ``dpq_train``
table keeps its own structure, so :func:`saec.models.build_compressed_model` builds the training form with the
structure its stored form gets at the budget (:func:`saec.nn.registry.training_structure`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from saec.errors import SaecError
from saec.nn.base import (MATERIALISE_ROWS, CompressedEmbedding, check_bool, check_counts, check_float, check_int,
                          generator, seeded_table)
from saec.nn.pq import default_bits

DEFAULT_SUBSPACES = 4
_PLACE = [2**j for j in range(9)]  # 2^shift and 2^bits as lookups (no integer shifts: ONNX, see binary.py)


# -- the structure shared by both forms -------------------------------------------------------------------
def plan(v: int, d: int, num_subspaces: Any, num_centroids: Any,
         group_centroids: Any) -> tuple[int, int, int, list[int]]:
    """(M, K, sub-vector width ceil(e / M), n_g per group) for these hyperparameters (None: the defaults)."""
    m = min(DEFAULT_SUBSPACES, d) if num_subspaces is None else check_int("num_subspaces", num_subspaces, 1, d)
    k = 2**default_bits(v) if num_centroids is None else check_int("num_centroids", num_centroids, 1, 256)
    if group_centroids is None:
        limits = [k, max(1, k // 4)] if v >= 2 else [k]
    else:
        if isinstance(group_centroids, (str, bytes)) or not isinstance(group_centroids, Sequence) \
                or not 1 <= len(group_centroids) <= min(v, 255):
            raise SaecError(f"group_centroids must be a list of 1 to {min(v, 255)} centroid counts (one per frequency "
                            f"group, most frequent first), got {group_centroids!r}")
        limits = [check_int("group_centroids", n, 1, k) for n in group_centroids]
        if any(a < b for a, b in zip(limits, limits[1:])):
            raise SaecError(f"group_centroids must not increase from the most frequent group to the rarest (rarer "
                            f"ids get fewer centroids), got {list(group_centroids)!r}")
    return m, k, -(-d // m), limits


def frequency_groups(v: int, num_groups: int, counts: Any = None) -> np.ndarray:
    """Each id's frequency group (int64, 0 = most frequent): ids ranked by ``counts`` (descending, ties by id;
    None: by id) and cut into ``num_groups`` groups of equal size (rank ``r`` is in group ``r * G // v``)."""
    counts = check_counts(counts, v)
    order = np.arange(v) if counts is None else np.argsort(-counts, kind="stable")
    rank = np.empty(v, dtype=np.int64)
    rank[order] = np.arange(v)
    return rank * num_groups // v


def bits_for(n: int) -> int:
    """Bits of a code that takes ``n`` values (0 for one value)."""
    return (n - 1).bit_length()


def layout_of(groups: np.ndarray, limits: Sequence[int]) -> list[list[int]]:
    """The stored form's packing: ``[first id, centroids allowed]`` per segment of ids stored at one width; one
    segment per group when the groups are id ranges, else a single one at K's width."""
    if len(groups) and bool((np.diff(groups) >= 0).all()):
        starts = np.searchsorted(groups, np.arange(len(limits)))
        return [[int(s), int(n)] for s, n, g in zip(starts, limits, range(len(limits))) if (groups == g).any()]
    return [[0, int(max(limits))]]


def _check_layout(layout: Any, v: int, k: int) -> list[list[int]]:
    bad = SaecError(f"layout must be a list of [first id, centroids allowed] segments starting at id 0 with "
                    f"increasing first ids below {v} and 1 to {k} centroids, got {layout!r}")
    try:
        out = [[int(s), int(n)] for s, n in layout]
    except (TypeError, ValueError):
        raise bad from None
    if not out or out[0][0] != 0 or any(a[0] >= b[0] for a, b in zip(out, out[1:])) or out[-1][0] >= v \
            or any(not 1 <= n <= k for _, n in out):
        raise bad
    return out


def _segments(layout: list[list[int]], v: int, m: int) -> tuple[list[int], list[int], list[int], int]:
    """(first ids, bits per code, first bit, total bits) of each segment."""
    starts = [s for s, _ in layout]
    bits = [bits_for(n) for _, n in layout]
    ends = starts[1:] + [v]
    base, total = [], 0
    for s, e, b in zip(starts, ends, bits):
        base.append(total)
        total += (e - s) * m * b
    return starts, bits, base, total


def packed_bytes(layout: list[list[int]], v: int, m: int) -> int:
    """Bytes of the packed codes: ``T // 8 + 2`` for ``T`` bits (a code is read from two consecutive bytes)."""
    return _segments(layout, v, m)[3] // 8 + 2


def pack(codes: np.ndarray, layout: list[list[int]]) -> np.ndarray:
    """The (v x M) codes bit-packed as ``layout`` says: code (i, m) of segment s at bit
    ``base_s + (i - first_s) M b_s + m b_s``, least significant bit first."""
    v, m = codes.shape
    starts, bits, base, total = _segments(layout, v, m)
    out = np.zeros((total // 8 + 2) * 8, dtype=bool)
    for s, e, b, at in zip(starts, starts[1:] + [v], bits, base):
        if b:
            block = codes[s:e].astype(np.int64)
            if block.size and (block.min() < 0 or block.max() >= 2**b):
                raise SaecError(f"codes of ids {s}..{e - 1} must fit in {b} bits")
            out[at:at + block.size * b] = ((block[..., None] >> np.arange(b)) & 1).astype(bool).ravel()
    return np.packbits(out, bitorder="little")


def assign(q: torch.Tensor, codebooks: torch.Tensor, limit: torch.Tensor,
           levels: Sequence[int] | None = None) -> torch.Tensor:
    """(N, M) index of each sub-vector's nearest centroid (squared L2; ties: the lower index) among the first
    ``limit[n]`` centroids of its subspace. ``q``: (N, M, sub); ``codebooks``: (M, K, sub); ``limit``: (N,), each
    value one of ``levels`` (the groups' centroid counts; None: K alone, every limit K).

    Per level ``n`` one batched ``|c|^2 - 2 q.c`` over the first ``n`` centroids (``|q|^2`` is the same for every
    centroid of a sub-vector, so it cannot change the nearest) and ``min`` (its first minimum, as ``argmin``, several
    times faster on CPU); each row keeps its own level's. Masking one (N, M, K) distance tensor with ``where`` and
    ``argmin`` instead took most of DPQ's training step. The levels are Python ints, so the graph does not depend
    on the data (ONNX export traces it)."""
    k = codebooks.shape[1]
    per_subspace = q.transpose(0, 1)  # (M, N, sub)
    norms = (codebooks * codebooks).sum(-1).unsqueeze(1)  # (M, 1, K)
    out = None
    for n in sorted(set(levels or [k]), reverse=True):
        dist = torch.baddbmm(norms[..., :n], per_subspace, codebooks[:, :n].transpose(1, 2), alpha=-2)
        nearest = dist.min(-1).indices.T  # (N, M)
        out = nearest if out is None else torch.where((limit == n).unsqueeze(1), nearest, out)
    return out


def _gather(codebooks: torch.Tensor, codes: torch.Tensor, d: int) -> torch.Tensor:
    """(N, d) concatenation of ``codebooks[m, codes[:, m]]``."""
    m, k, sub = codebooks.shape
    flat = codes + torch.arange(m, device=codes.device) * k
    return codebooks.reshape(-1, sub)[flat].reshape(codes.shape[0], m * sub)[:, :d]


# -- the training form ----------------------------------------------------------------------------------
class DPQTrainEmbedding(CompressedEmbedding):
    """The training form: ``E[i] = concat_m C_m[argmin_{k < n_g(i)} |Q[i]^m - C_m[k]|^2]``, straight-through to ``Q``.

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        num_subspaces: M, 1 <= M <= e (default 4, at most e); sub-vectors of ``ceil(e / M)`` coordinates (a
            dimension M does not divide is zero-padded for the distances and the padding dropped).
        num_centroids: K per subspace, 1 to 256 (None: :func:`saec.nn.pq.default_bits`).
        group_centroids: n_g, the centroids each frequency group may use, most frequent group first (None:
            ``[K, K // 4]``; ``[K]``: plain DPQ). See the module docstring.
        counts: per-id counts that rank the ids into groups (None: id order).
        seed, init_std: ``Q`` is drawn from N(0, init_std^2); the centroids start as distinct rows' sub-vectors.
        sparse: sparse gradients for ``Q`` (the codebooks are dense).

    Parameters: ``v e + M K ceil(e / M)``; buffer: ``group`` (uint8, v), each id's frequency group.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_subspaces: int | None = None,
                 num_centroids: int | None = None, group_centroids: Sequence[int] | None = None, *,
                 counts: Any = None, seed: int = 0, init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        v, d = self.num_embeddings, self.embedding_dim
        self.num_subspaces, self.num_centroids, self.sub_dim, self.group_centroids = plan(
            v, d, num_subspaces, num_centroids, group_centroids)
        gen = generator(seed)
        self.Q = seeded_table(gen, v, d, init_std, check_bool("sparse", sparse))
        groups = frequency_groups(v, len(self.group_centroids), counts)
        self.register_buffer("group", torch.from_numpy(groups.astype(np.uint8)))
        # centroid k of each codebook: the sub-vector of a distinct random row, taken from the most frequent rows
        # first (group 0 may use every centroid), so each starts as some allowed row's nearest centroid
        m, k, sub = self.num_subspaces, self.num_centroids, self.sub_dim
        rows = self._padded(self.Q.weight.detach()).reshape(v, m, sub)
        books = torch.empty(m, k, sub)
        for j in range(m):
            perm = torch.randperm(v, generator=gen)
            order = perm[torch.argsort(self.group[perm], stable=True)]
            pick = order[torch.arange(k) % v]
            books[j] = rows[pick, j]
        self.codebooks = nn.Parameter(books)

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.num_subspaces * self.sub_dim - self.embedding_dim
        return nn.functional.pad(x, (0, pad)) if pad else x

    def limits(self, ids: torch.Tensor) -> torch.Tensor:
        """(N,) centroids each id may use (n of its group)."""
        return torch.tensor(self.group_centroids, device=ids.device)[self.group[ids].long()]

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, M) the codes the lookup of ``ids`` picks (int64)."""
        with torch.no_grad():
            q = self._padded(self.Q(ids)).reshape(-1, self.num_subspaces, self.sub_dim)
            return assign(q, self.codebooks, self.limits(ids), self.group_centroids)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.Q(ids)
        q = self._padded(x.detach()).reshape(-1, self.num_subspaces, self.sub_dim)
        codes = assign(q, self.codebooks.detach(), self.limits(ids), self.group_centroids)
        return _gather(self.codebooks, codes, self.embedding_dim) + (x - x.detach())  # exactly C; STE to Q

    def uses_sparse_gradients(self) -> bool:
        return self.Q.sparse

    @classmethod
    def _size(cls, v: int, d: int, *, num_subspaces: int | None = None, num_centroids: int | None = None,
              group_centroids: Sequence[int] | None = None, **_: Any) -> tuple[int, int]:
        m, k, sub, _limits = plan(v, d, num_subspaces, num_centroids, group_centroids)
        return v * d + m * k * sub, v

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, num_subspaces={self.num_subspaces}, "
                f"num_centroids={self.num_centroids}, group_centroids={self.group_centroids}")


# -- the stored form ------------------------------------------------------------------------------------
class DPQEmbedding(CompressedEmbedding):
    """The stored form: ``E[i] = concat_m codebooks[m, code(i, m)]`` with bit-packed codes (module docstring).

    Built with :meth:`from_float` from a trained :class:`DPQTrainEmbedding` (its codebooks and codes) or from a
    float table (k-means per subspace); the constructor gives a fresh table of the structure (random codebooks,
    codes ``(i + m) mod n``), which ``load_state_dict`` fills.

    Args:
        num_embeddings, embedding_dim: v and e.
        num_subspaces, num_centroids, group_centroids: as for :class:`DPQTrainEmbedding` (None: the defaults).
        layout: the packing, ``[first id, centroids allowed]`` per segment (None: from ``counts`` and the groups;
            a saved table is rebuilt from it, since it depends on the counts it was built with).
        counts: per-id counts that rank the ids into groups (None: id order).
        seed, init_std: the fresh codebooks are drawn from N(0, init_std^2).

    Parameters: the codebooks, ``M K ceil(e / M)``; buffer: ``codes``, :func:`packed_bytes` uint8.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, num_subspaces: int | None = None,
                 num_centroids: int | None = None, group_centroids: Sequence[int] | None = None,
                 layout: Sequence[Sequence[int]] | None = None, *, counts: Any = None, seed: int = 0,
                 init_std: float = 0.01) -> None:
        super().__init__(num_embeddings, embedding_dim)
        v, d = self.num_embeddings, self.embedding_dim
        self.num_subspaces, self.num_centroids, self.sub_dim, self.group_centroids = plan(
            v, d, num_subspaces, num_centroids, group_centroids)
        self.layout = _resolve_layout(layout, v, self.num_centroids, self.group_centroids, counts)
        std = check_float("init_std", init_std, 0.0, math.inf)
        m, k = self.num_subspaces, self.num_centroids
        self.codebooks = nn.Parameter(torch.randn(m, k, self.sub_dim, generator=generator(seed)) * std)
        allowed = np.empty(v, dtype=np.int64)
        for (s, n), e in zip(self.layout, [s for s, _ in self.layout[1:]] + [v]):
            allowed[s:e] = n
        fresh = (np.arange(v)[:, None] + np.arange(m)) % allowed[:, None]
        self.register_buffer("codes", torch.from_numpy(pack(fresh, self.layout)))

    def unpacked_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, M) codes of ``ids`` (int64), read from the packed buffer."""
        m = self.num_subspaces
        starts, bits, base, _ = _segments(self.layout, self.num_embeddings, m)
        starts_t = torch.tensor(starts, device=ids.device)
        seg = (ids.unsqueeze(1) >= starts_t).sum(1) - 1
        b = torch.tensor(bits, device=ids.device)[seg]
        pos = torch.tensor(base, device=ids.device)[seg] + (ids - starts_t[seg]) * (m * b)
        pos = pos.unsqueeze(1) + torch.arange(m, device=ids.device) * b.unsqueeze(1)  # (N, M) first bit
        byte = torch.div(pos, 8, rounding_mode="floor")
        word = self.codes[byte].long() + self.codes[byte + 1].long() * 256
        place = torch.tensor(_PLACE, device=ids.device)
        return torch.div(word, place[pos % 8], rounding_mode="floor") % place[b].unsqueeze(1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return _gather(self.codebooks, self.unpacked_codes(ids), self.embedding_dim)

    def to_dense(self) -> torch.Tensor:
        """The (num_embeddings, dim) table this module stands for (materialises every row)."""
        with torch.no_grad():
            return self.embed(torch.arange(self.num_embeddings))

    @classmethod
    def from_float(cls, module: Any, *, budget: int | None = None, counts: Any = None,
                   **hyper: Any) -> "DPQEmbedding":
        """As :meth:`CompressedEmbedding.from_float`; a trained ``dpq_train`` table keeps its structure, so a budget
        is then only checked (the structure must be chosen before training)."""
        if not isinstance(module, DPQTrainEmbedding) or budget is None:
            return super().from_float(module, budget=budget, counts=counts, **hyper)
        table = cls._from_table(module, counts=None, **hyper)
        if table.nbytes() > budget:
            raise SaecError(f"budget_bytes={budget} is too small for method 'dpq': the trained {module.label()} "
                            f"(num_subspaces={module.num_subspaces}, num_centroids={module.num_centroids}, "
                            f"group_centroids={module.group_centroids}) stores in {table.nbytes()} bytes; train "
                            f"dpq_train with the structure the budget gives (saec.nn.registry.training_structure)")
        return table

    @classmethod
    def _from_table(cls, table: CompressedEmbedding, *, counts: np.ndarray | None = None,
                    num_subspaces: int | None = None, num_centroids: int | None = None,
                    group_centroids: Sequence[int] | None = None, layout: Any = None,
                    **fitting: Any) -> "DPQEmbedding":
        """A trained ``dpq_train`` table's codebooks and the codes its lookups pick (any other table: its rows,
        quantized as a float table's). Structural values given must be the trained table's; ``counts`` and the
        k-means settings are not used (the groups were fixed at training)."""
        if not isinstance(table, DPQTrainEmbedding):
            return super()._from_table(table, counts=counts, num_subspaces=num_subspaces, num_centroids=num_centroids,
                                       group_centroids=group_centroids, layout=layout, **fitting)
        for name, given in (("num_subspaces", num_subspaces), ("num_centroids", num_centroids),
                            ("group_centroids", None if group_centroids is None else list(group_centroids))):
            if given is not None and given != getattr(table, name):
                raise SaecError(f"{name}={given!r}: the trained {table.label()} has {name}="
                                f"{getattr(table, name)!r}; a trained dpq_train table keeps its structure (train it "
                                f"with the structure wanted, e.g. the one saec.nn.registry.training_structure gives "
                                f"for a budget)")
        v = table.num_embeddings
        with torch.no_grad():
            codes = torch.cat([table.codes(torch.arange(lo, min(lo + MATERIALISE_ROWS, v)))
                               for lo in range(0, v, MATERIALISE_ROWS)]).numpy()
        groups = table.group.numpy().astype(np.int64)
        return cls._built(table.codebooks.detach().clone(), codes, groups, table.group_centroids, v,
                          table.embedding_dim, layout)

    @classmethod
    def _from_weight(cls, weight: torch.Tensor, *, counts: np.ndarray | None, num_subspaces: int | None = None,
                     num_centroids: int | None = None, group_centroids: Sequence[int] | None = None,
                     layout: Any = None, niter: int = 25, seed: int = 0) -> "DPQEmbedding":
        """k-means per subspace of a (v x e) float32 table under the group limits (module docstring)."""
        from saec.cluster.kmeans import kmeans

        v, d = weight.shape
        m, k, sub, limits = plan(v, d, num_subspaces, num_centroids, group_centroids)
        niter, seed = check_int("niter", niter, 1), check_int("seed", seed, 0)
        if not bool(torch.isfinite(weight).all()):
            row = int((~torch.isfinite(weight).all(dim=1)).nonzero()[0])
            raise SaecError(f"row {row} of the weight has NaN or infinite values; k-means needs finite rows")
        groups = frequency_groups(v, len(limits), counts)
        allowed = np.asarray(limits)[groups]
        x = np.zeros((v, m * sub), dtype=np.float32)
        x[:, :d] = weight.numpy()
        books = np.zeros((m, k, sub), dtype=np.float32)
        levels = sorted(set(limits) | {k})
        for j in range(m):
            part = np.ascontiguousarray(x[:, j * sub:(j + 1) * sub])
            lo = 0
            for n in levels:  # centroids [lo, n): k-means of the rows allowed to use them
                rows = part[allowed >= n] if n > min(limits) else part
                want = n - lo
                if want and len(rows):
                    got = min(want, len(rows))
                    books[j, lo:lo + got] = kmeans(rows, got, niter=niter, seed=seed + j).centroids
                    books[j, lo + got:n] = books[j, lo:lo + got][np.arange(want - got) % got]  # fewer rows: repeat
                lo = n
        codebooks = torch.from_numpy(books)
        with torch.no_grad():
            lim = torch.from_numpy(allowed)
            q = torch.from_numpy(x).reshape(v, m, sub)
            codes = torch.cat([assign(q[lo:lo + MATERIALISE_ROWS], codebooks, lim[lo:lo + MATERIALISE_ROWS],
                                      limits)
                               for lo in range(0, v, MATERIALISE_ROWS)]).numpy()
        return cls._built(codebooks, codes, groups, limits, v, d, layout)

    @classmethod
    def _built(cls, codebooks: torch.Tensor, codes: np.ndarray, groups: np.ndarray, limits: list[int], v: int,
               d: int, layout: Any) -> "DPQEmbedding":
        m, k, _ = codebooks.shape
        own = layout_of(groups, limits)
        if layout is not None and _check_layout(layout, v, k) != own:
            raise SaecError(f"layout={layout!r}: the groups of this table store as {own} (the layout follows from "
                            f"the counts and group_centroids; leave it out)")
        table = cls(v, d, m, k, limits, own)
        table.codebooks = nn.Parameter(codebooks.float().contiguous())
        table.codes = torch.from_numpy(pack(codes, own))
        return table

    def config(self) -> dict[str, Any]:
        return {"num_subspaces": self.num_subspaces, "num_centroids": self.num_centroids,
                "group_centroids": list(self.group_centroids), "layout": [list(s) for s in self.layout]}

    @classmethod
    def _size(cls, v: int, d: int, *, num_subspaces: int | None = None, num_centroids: int | None = None,
              group_centroids: Sequence[int] | None = None, layout: Any = None, counts: Any = None,
              **_: Any) -> tuple[int, int]:
        m, k, sub, limits = plan(v, d, num_subspaces, num_centroids, group_centroids)
        return m * k * sub, packed_bytes(_resolve_layout(layout, v, k, limits, counts), v, m)

    def uses_sparse_gradients(self) -> bool:
        return False  # the codebooks are small and dense

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, num_subspaces={self.num_subspaces}, "
                f"num_centroids={self.num_centroids}, group_centroids={self.group_centroids}, layout={self.layout}")


def _resolve_layout(layout: Any, v: int, k: int, limits: list[int], counts: Any) -> list[list[int]]:
    if layout is not None:
        return _check_layout(layout, v, k)
    return layout_of(frequency_groups(v, len(limits), counts), limits)


__all__ = ["DPQEmbedding", "DPQTrainEmbedding", "assign", "frequency_groups", "layout_of", "pack", "packed_bytes",
           "plan"]
