"""CCE: clustered compositional embeddings (Tsang & Ahle, "Clustering the Sketch: Dynamic Compression for
Embedding Tables", NeurIPS 2023; survey §4.1, "Hashing"): the clustering-meets-hashing cousin of Saec.

The vector of id ``i`` is the concatenation of ``c`` columns. Column ``j`` is the sum of two rows of two small
tables of ``k`` rows each: ``E_j[i] = C_j[index_j[i]] + H_j[h_j(i)]``, where ``index`` is a stored per-id
pointer and ``h_j`` a seeded universal hash. Training starts from a hashed compositional table (``index_j[i]``
holds a second seeded hash ``g_j(i)``, both tables random), the paper's "sketch". Periodically during training the
sketch is clustered, column by column: every id's current sub-vector ``E_j[i]`` is materialised, k-means with
``k`` centroids is run on them, the centroids become ``C_j`` and each id's nearest centroid its ``index_j[i]``;
``H_j`` restarts at zero with a fresh seeded hash ``h_j``, so it learns the residual the clustering lost. Right
after a clustering every id reads its centroid, so nothing the model learned is thrown away beyond the
quantization error; the next clustering sees the sum again, and repeats (the paper proves convergence to the
optimal codebook for least squares). The structure, and so the footprint, never changes: the index exists from
the start (holding ``g_j``), only its values do.

Choices where the paper leaves room (its code, thomasahle/cce, clusters at the end of each epoch):

* Schedule: clustering runs inside the training-mode forward, at the start of the call that follows every
  ``cluster_every`` training-mode calls (calls ``cluster_every + 1``, ``2 cluster_every + 1``, ...), at most
  ``max_clusterings`` times; eval-mode calls neither count nor cluster, so the exported (eval) graph is gather +
  add only. :meth:`CCEEmbedding.cluster` runs one clustering by hand (e.g. at an epoch's end, as the paper does).
  The counts and the seed are a registered buffer (``schedule``), so a saved and reloaded table continues the
  schedule and seeds its clusterings as the original would.
* Scale (designed for 10^8 ids): k-means (:func:`saec.cluster.kmeans.kmeans`, faiss, random init as faiss's and
  the paper's code default) trains on at most ``sample_per_centroid * k`` ids drawn without replacement (all ids
  when there are fewer, in id order), then every id is assigned to its nearest centroid
  (:func:`saec.cluster.kmeans.assign`) ``ASSIGN_CHUNK`` ids at a time, so no ``v x d`` array is ever built.
* The fresh hashed table starts at zero (the paper's code initialises it with the mean residual of the ids
  hashed to each row, "a tiny bit better"); at zero a clustering leaves every id at exactly its centroid.
* Before the first clustering both tables start from N(0, init_std^2 / 2), so their sum has the ``init_std``
  of the other tables.
* ``d`` not divisible by ``c``: the first ``d mod c`` columns are one wider (as ``numpy.array_split``).
* The index is uint8 when ``k <= 256``, int16 when ``k <= 32767``, else int32: it costs 1, 2 or 4 bytes per
  id per column, which is what bounds ``c`` at a tight budget. At 1/16 of the float32 bytes an id may take
  ``d / 4`` bytes: 4 at 16 dims, where two uint8 columns would leave nothing for the tables and one int16
  column half; 2 at 8 dims, where only a uint8 index fits at all. So ``c = 1`` is the default, and uint8 is
  there because int16 alone cannot reach 1/16 of an 8-dim table (MovieLens-1M's zip codes). Where only
  parameters count (the peer's ppd budgets leave the index out), more columns pay instead: ``k^c`` sums for the
  same ``2 k e`` parameters. The peer's default of 4 (thomasahle/cce, ``examples/movielens.py --n-chunks``) takes
  its MovieLens-1M GMF task at ppd 256 from 0.718 AUC (one column) to 0.793; :mod:`saec.bench.tasks.cce_gmf` sets it.
* Seeds: clustering number ``t`` seeds its sample, its k-means and its new hashes from ``(seed, t, column)``
  (:func:`clustering_seeds`), never the global RNGs; the same table trained the same way clusters the same way.
* Optimizer state: a clustering copies the centroids into ``C_j`` and zeros into ``H_j`` *in place* (same
  Parameters, same shapes), so any optimizer keeps working. Left alone, its per-parameter state would be stale:
  Adagrad's accumulated squared gradients of row ``r`` of ``C_j`` would now belong to centroid ``r`` (and those of
  ``H_j``'s rows to other ids under the new hash), so the new tables would continue at the small step size the
  old rows' history earned (momentum states, as Adam's, would keep pushing in the old rows' directions). The
  tables are new, so their state restarts too (:meth:`CCEEmbedding.reset_optimizer_state`: Adagrad's
  accumulators back to the initial value and step 0, other optimizers' entries dropped, rebuilt lazily) for
  every optimizer attached with :meth:`CCEEmbedding.attach_optimizer`, which
  :func:`saec.train.loop.make_optimizer` does for the tables of the model it optimizes. On MovieLens-1M at 1/16
  of the bytes this restart is worth about 0.01 AUC (0.6856 without, 0.6951 with, one epoch, the default
  schedule); a table whose optimizer is not attached keeps the stale state.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np
import torch
from torch import nn

from saec.cluster.kmeans import ASSIGN_CHUNK, assign, kmeans
from saec.errors import SaecError
from saec.nn.base import (CompressedEmbedding, check_bool, check_float, check_int, generator, hash_coefficients,
                          seeded_table, universal_hash)

UINT8_MAX_K = 256  # k up to this stores the index as uint8 (values 0..255)
INT16_MAX_K = 32767  # k up to this stores the index as int16


def _check(v: int, d: int, k: Any, columns: Any) -> tuple[int, int]:
    return check_int("k", k, 1, v), check_int("columns", columns, 1, d)


def column_widths(d: int, c: int) -> list[int]:
    """Widths of the ``c`` columns of a ``d``-wide vector (the first ``d mod c`` one wider)."""
    return [d // c + (1 if j < d % c else 0) for j in range(c)]


def index_dtype(k: int) -> torch.dtype:
    """Dtype of the per-id index: uint8 when ``k <= 256``, int16 when ``k <= 32767``, else int32."""
    if k <= UINT8_MAX_K:
        return torch.uint8
    return torch.int16 if k <= INT16_MAX_K else torch.int32


def clustering_seeds(seed: int, t: int, columns: int) -> list[int]:
    """Seeds of clustering number ``t`` (1-based): one for the new hash coefficients, then one per column (its
    sample and its k-means), all in [0, 2^31)."""
    state = np.random.SeedSequence([seed, t]).generate_state(columns + 1)
    return [int(s) % 2**31 for s in state]


class CCEEmbedding(CompressedEmbedding):
    """``E[i] = concat_j (C_j[index_j[i]] + H_j[h_j(i)])``, periodically re-clustered (module docstring).

    Args:
        num_embeddings: ids addressed (v).
        embedding_dim: vector width (e).
        k: rows of each table (both tables of every column), 1 <= k <= v; the budget knob.
        columns: columns c, 1 <= c <= e.
        cluster_every: training-mode forward calls between clusterings.
        max_clusterings: clusterings at most (0: never, a hashed compositional table).
        niter: k-means iterations.
        sample_per_centroid: k-means trains on at most this many ids per centroid.

    Parameters: ``2 k e``; buffers: the ``v x c`` index (:func:`index_dtype`: 1, 2 or 4 bytes), ``c`` pairs of
    int64 hash coefficients and three int64 (training forward calls, clusterings done, the seed).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, k: int, columns: int = 1, cluster_every: int = 200,
                 max_clusterings: int = 3, niter: int = 25, sample_per_centroid: int = 256, *, seed: int = 0,
                 init_std: float = 0.01, sparse: bool = False) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.k, self.columns = _check(self.num_embeddings, self.embedding_dim, k, columns)
        self.cluster_every = check_int("cluster_every", cluster_every, 1)
        self.max_clusterings = check_int("max_clusterings", max_clusterings, 0)
        self.niter = check_int("niter", niter, 1)
        self.sample_per_centroid = check_int("sample_per_centroid", sample_per_centroid, 1)
        self.seed = check_int("seed", seed, 0, 2**63 - 1)
        std = check_float("init_std", init_std, 0.0, math.inf) / math.sqrt(2)
        sparse = check_bool("sparse", sparse)
        self.widths = column_widths(self.embedding_dim, self.columns)
        gen = generator(seed)
        self.clusters = nn.ModuleList(seeded_table(gen, self.k, w, std, sparse) for w in self.widths)
        self.hashed = nn.ModuleList(seeded_table(gen, self.k, w, std, sparse) for w in self.widths)
        self.register_buffer("hash_coeffs", hash_coefficients(gen, self.columns))
        first = hash_coefficients(gen, self.columns)  # g_j: the index before the first clustering
        index = torch.empty(self.num_embeddings, self.columns, dtype=index_dtype(self.k))
        for start in range(0, self.num_embeddings, ASSIGN_CHUNK):
            ids = torch.arange(start, min(start + ASSIGN_CHUNK, self.num_embeddings))
            index[start : start + len(ids)] = universal_hash(ids, first, self.k).T.to(index.dtype)
        self.register_buffer("index", index)
        # [training calls, clusterings done, seed]: a buffer, so a reloaded table continues the schedule and seeds
        self.register_buffer("schedule", torch.tensor([0, 0, self.seed], dtype=torch.int64))
        self._optimizers: list[weakref.ref] = []  # whose state restarts at every clustering (attach_optimizer)

    @property
    def clusterings(self) -> int:
        """Clusterings done so far."""
        return int(self.schedule[1])

    @property
    def training_calls(self) -> int:
        """Training-mode forward calls so far."""
        return int(self.schedule[0])

    def _column(self, j: int, ids: torch.Tensor) -> torch.Tensor:
        """(N, width_j) current sub-vectors of column ``j`` of ``ids``."""
        hashed = universal_hash(ids, self.hash_coeffs[j : j + 1], self.k)[0]
        return self.clusters[j](self.index[ids, j].long()) + self.hashed[j](hashed)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if self.training:
            calls = int(self.schedule[0])
            if calls and calls % self.cluster_every == 0 and int(self.schedule[1]) < self.max_clusterings:
                self.cluster()
            self.schedule[0] += 1
        index = self.index[ids].long()  # (N, c)
        hashed = universal_hash(ids, self.hash_coeffs, self.k)  # (c, N)
        parts = [self.clusters[j](index[:, j]) + self.hashed[j](hashed[j]) for j in range(self.columns)]
        return parts[0] if self.columns == 1 else torch.cat(parts, dim=1)

    @torch.no_grad()
    def cluster(self) -> None:
        """One clustering now: per column, k-means of every id's current sub-vector (on a sample), the centroids
        into ``C_j``, every id's nearest centroid into ``index_j``, ``H_j`` to zero under a fresh hash."""
        v, k = self.num_embeddings, self.k
        t = int(self.schedule[1]) + 1
        seeds = clustering_seeds(int(self.schedule[2]), t, self.columns)
        n = min(v, self.sample_per_centroid * k)
        centroids = []
        for j in range(self.columns):
            if n == v:
                sample = torch.arange(v)
            else:
                rng = np.random.default_rng(seeds[j + 1])
                sample = torch.from_numpy(np.sort(rng.choice(v, n, replace=False)).astype(np.int64))
            x = self._column(j, sample).numpy()
            if not np.isfinite(x).all():
                raise SaecError(f"{self.label()}: column {j} holds NaN or infinite values; cannot cluster it")
            centroids.append(kmeans(x, k, init="random", niter=self.niter, seed=seeds[j + 1],
                                    objective=False).centroids)
        for j, cent in enumerate(centroids):  # every id to its nearest centroid, reading the old tables
            labels = np.empty(ASSIGN_CHUNK, dtype=np.int64)
            for start in range(0, v, ASSIGN_CHUNK):
                ids = torch.arange(start, min(start + ASSIGN_CHUNK, v))
                out = assign(self._column(j, ids).numpy(), cent, out=labels[: len(ids)],
                             what=f"{self.label()} column {j}")
                self.index[start : start + len(ids), j] = torch.from_numpy(out).to(self.index.dtype)
        for j, cent in enumerate(centroids):
            self.clusters[j].weight.copy_(torch.from_numpy(cent))
            self.hashed[j].weight.zero_()
        self.hash_coeffs.copy_(hash_coefficients(generator(seeds[0]), self.columns))
        self.schedule[1] += 1
        for ref in self._optimizers:
            optimizer = ref()
            if optimizer is not None:
                self.reset_optimizer_state(optimizer)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Restart ``optimizer``'s state of this table's parameters at every clustering (module docstring);
        held by a weak reference. :func:`saec.train.loop.make_optimizer` attaches the optimizer it makes."""
        self._optimizers = [r for r in self._optimizers if r() is not None and r() is not optimizer]
        self._optimizers.append(weakref.ref(optimizer))

    def reset_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Forget ``optimizer``'s state of this table's parameters (what a clustering does for attached
        optimizers): Adagrad's accumulators go back to the group's ``initial_accumulator_value`` and step 0;
        other optimizers' state entries are dropped (they rebuild them lazily at their next step)."""
        mine = {id(p) for p in self.parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in mine or p not in optimizer.state:
                    continue
                if isinstance(optimizer, torch.optim.Adagrad):
                    state = optimizer.state[p]
                    state["sum"].fill_(group["initial_accumulator_value"])
                    if torch.is_tensor(state["step"]):
                        state["step"].zero_()
                    else:
                        state["step"] = 0
                else:
                    del optimizer.state[p]

    @classmethod
    def _size(cls, v: int, d: int, *, k: int, columns: int = 1, **_: Any) -> tuple[int, int]:
        k, c = _check(v, d, k, columns)
        return 2 * k * d, v * c * index_dtype(k).itemsize + 16 * c + 24

    def extra_repr(self) -> str:
        return (f"{self.num_embeddings}, {self.embedding_dim}, k={self.k}, columns={self.columns}, "
                f"cluster_every={self.cluster_every}, max_clusterings={self.max_clusterings}, "
                f"clusterings={self.clusterings}")


__all__ = ["CCEEmbedding", "clustering_seeds", "column_widths", "index_dtype"]
