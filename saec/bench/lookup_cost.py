"""Lookup cost of ClusteredEmbedding vs nn.Embedding: forward and forward+backward(+Adagrad) throughput.

For every (table rows, vector length, id distribution) :func:`run` builds the variants side by side
(:func:`build_variants`) and times them in rounds (:func:`bench_config`): every round runs every variant in a
rotated order, and a variant's throughput is the median over rounds. Ratios are taken within a round (variant /
``nn.Embedding(sparse=True)`` of the same round, what the library's container uses) and their median is
reported, so they compare the variants under the same conditions of one run. Then it profiles the ``mean``
gradient rule's backward (:func:`profile_steps`) and times candidate replacements of its pieces
(:func:`alternatives`). :func:`render` writes the page from the record alone.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from saec.bench.lookup import make_bags, num_threads
from saec.errors import SaecError
from saec.nn.clustered import ClusteredEmbedding

MODES = ("forward", "fwd+bwd", "fwd+bwd+adagrad")
REFERENCE = "nn.Embedding sparse"
DENSE = "nn.Embedding dense"
LARGE_ROWS = 1_000_000  # from here on the plain table's rows no longer fit in cache
PROFILE_MIN_US = 2.0  # ops below this many µs per step are left out of the profile tables


@dataclass(frozen=True)
class LookupCostConfig:
    """What :func:`run` measures.

    Attributes:
        sizes, dims, ks, dists: table rows, vector lengths, clusters of the clustered variants, id distributions
            (``zipf``: bounded Zipf(``zipf_s``) over frequency-ranked ids; ``uniform``).
        batch: ids per batch (one single-valued field); ``batches`` of them are pre-drawn and cycled.
        rounds: timed rounds per (variant, mode); ``dense_rounds`` of them for the dense table's backward.
        min_time: seconds one measurement is calibrated to; ``max_iters`` bounds its iterations.
        no_dense_above: the dense ``nn.Embedding`` is left out of tables larger than this.
        lr: Adagrad's learning rate in the training step.
        profile_rows, profile_steps: rows and steps of the profiled ``ClusteredEmbedding``; ``alt_rounds`` rounds
            of the candidate replacements.
        warmup_rows, warmup_time: the untimed round first run on a table of that many rows, ``min_time`` seconds
            per measurement (the first timed configuration would otherwise pay for allocator and thread-pool
            start-up).
    """

    sizes: tuple[int, ...] = (10_000, 1_000_000, 10_000_000)
    dims: tuple[int, ...] = (9, 17)
    ks: tuple[int, ...] = (100, 1000)
    dists: tuple[str, ...] = ("zipf", "uniform")
    batch: int = 4096
    batches: int = 64
    zipf_s: float = 1.1
    rounds: int = 5
    dense_rounds: int = 3
    min_time: float = 0.12
    max_iters: int = 400
    no_dense_above: int = 10_000_000
    lr: float = 0.01
    profile_rows: int = 1_000_000
    profile_steps: int = 200
    alt_rounds: int = 5
    warmup_rows: int = 10_000
    warmup_time: float = 0.05


def make_ids(dist: str, n: int, batch: int, batches: int, seed: int, zipf_s: float) -> torch.Tensor:
    """``batches`` batches (rows) of ``batch`` ids over ``n`` rows: :func:`saec.bench.lookup.make_bags` of one id
    per bag."""
    return torch.stack([ids for ids, _ in make_bags(dist, n, batch, 1, batches, seed, zipf_s)])


def build_variants(n: int, dim: int, ks: tuple[int, ...], with_dense: bool, seed: int) -> dict[str, nn.Module]:
    """The timed tables of one (rows, dim): ``nn.Embedding`` sparse (and dense), and ``ClusteredEmbedding`` of each
    k with the ``mean`` and ``sum`` gradient rules, on random masks (lookup cost does not depend on the clusters)."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    variants: dict[str, nn.Module] = {}
    weight = torch.randn(n, dim, generator=gen) * 0.01
    if with_dense:
        variants[DENSE] = nn.Embedding.from_pretrained(weight.clone(), freeze=False, sparse=False)
    variants[REFERENCE] = nn.Embedding.from_pretrained(weight, freeze=False, sparse=True)
    for k in ks:
        mask = rng.integers(0, k, n)
        codebook = torch.randn(k, dim, generator=gen) * 0.01
        for mode in ("mean", "sum"):
            variants[f"Clustered k={k} {mode}"] = ClusteredEmbedding.from_codebook(codebook, mask, grad_mode=mode)
    return variants


def module_bytes(m: nn.Module) -> tuple[int, int]:
    """(parameters + buffers, Adagrad state) in bytes."""
    own = sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])
    state = sum(p.numel() * p.element_size() for p in m.parameters())  # Adagrad's state_sum, one per element
    return own, state


def run_once(m: nn.Module, opt: torch.optim.Optimizer, mode: str, ids: torch.Tensor, grad: torch.Tensor,
             start: int, iters: int) -> float:
    """Seconds for ``iters`` steps of ``mode`` over the batches ``ids[start:]`` (cyclic)."""
    nb = len(ids)
    if mode == "forward":
        with torch.no_grad():
            t = time.perf_counter()
            for i in range(iters):
                m(ids[(start + i) % nb])
            return time.perf_counter() - t
    step = mode == "fwd+bwd+adagrad"
    t = time.perf_counter()
    for i in range(iters):
        opt.zero_grad(set_to_none=True)
        m(ids[(start + i) % nb]).backward(grad)
        if step:
            opt.step()
    return time.perf_counter() - t


def calibrate(m: nn.Module, opt: torch.optim.Optimizer, mode: str, ids: torch.Tensor, grad: torch.Tensor,
              min_time: float, max_iters: int) -> int:
    """Iterations of :func:`run_once` that take about ``min_time`` seconds (after a warm-up), at most ``max_iters``."""
    run_once(m, opt, mode, ids, grad, 0, 2)
    iters = 2
    while True:
        s = run_once(m, opt, mode, ids, grad, 0, iters)
        if s >= min_time or iters >= max_iters:
            return iters
        iters = min(max_iters, max(iters * 2, int(iters * min_time / max(s, 1e-6) * 1.2)))


def bench_config(variants: dict[str, nn.Module], ids: torch.Tensor, cfg: LookupCostConfig, dim: int,
                 rounds: int | None = None) -> dict[str, dict[str, list[float]]]:
    """Lookups/s of every variant and mode in each round (``{variant: {mode: [per round]}}``), variants rotated
    round by round."""
    rounds = cfg.rounds if rounds is None else rounds
    grad = torch.randn(ids.shape[1], dim, generator=torch.Generator().manual_seed(1))
    opts = {name: torch.optim.Adagrad(m.parameters(), lr=cfg.lr) for name, m in variants.items()}
    names = list(variants)
    out: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    for mode in MODES:
        iters = {n: calibrate(variants[n], opts[n], mode, ids, grad, cfg.min_time, cfg.max_iters) for n in names}
        for r in range(rounds):
            for n in names[r % len(names):] + names[: r % len(names)]:
                if n == DENSE and mode != "forward" and r >= cfg.dense_rounds:
                    continue  # a dense step touches the whole table: few rounds suffice, they are slow
                s = run_once(variants[n], opts[n], mode, ids, grad, r * 7, iters[n])
                out[n].setdefault(mode, []).append(iters[n] * ids.shape[1] / s)
    return out


def profile_steps(n: int, dim: int, k: int, ids: torch.Tensor, steps: int) -> dict[str, dict[str, Any]]:
    """torch.profiler over ``steps`` forward+backward steps of each ``grad_mode`` (ids cycled): self CPU
    microseconds per step of every op, and the wall time per step measured without the profiler."""
    rng = np.random.default_rng(0)
    mask, codebook = rng.integers(0, k, n), torch.randn(k, dim)
    grad = torch.randn(ids.shape[1], dim)
    out = {}
    for mode in ("mean", "sum"):
        m = ClusteredEmbedding.from_codebook(codebook, mask, mode)

        def steps_of(count: int) -> None:
            for i in range(count):
                m.codebook.grad = None
                m(ids[i % len(ids)]).backward(grad)

        steps_of(20)
        walls = []
        for _ in range(5):
            t = time.perf_counter()
            steps_of(steps)
            walls.append((time.perf_counter() - t) / steps * 1e6)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            steps_of(steps)
        out[mode] = {"wall": statistics.median(walls),
                     "ops": {e.key: e.self_cpu_time_total / steps for e in prof.key_averages()}}
    return out


def alternatives(n: int, dim: int, k: int, ids: torch.Tensor, steps: int, rounds: int) -> dict[str, dict[str, float]]:
    """Best-of-``rounds`` microseconds per batch (``{piece: {threads: µs}}``; ids cycled, so no call sees the
    previous call's input) of the two pieces of the ``mean`` backward and of candidate replacements, with torch's
    default thread count and with one thread."""
    from saec.cluster.saec import mask_dtype

    rng = np.random.default_rng(0)
    mask = torch.from_numpy(rng.integers(0, k, n).astype(mask_dtype(k)))
    clusters = [mask[b].long() for b in ids]
    grads = [torch.randn(ids.shape[1], dim) for _ in range(len(ids))]
    scratch = torch.empty(n, dtype=torch.int32)
    arange = torch.arange(ids.shape[1], dtype=torch.int32)
    nb = len(ids)

    def unique_count(i: int) -> torch.Tensor:  # what _MeanGradLookup.backward does
        c = clusters[i % nb]
        u, inv = torch.unique(ids[i % nb], return_inverse=True)
        return torch.bincount(c.new_empty(len(u)).scatter_(0, inv, c), minlength=k)

    def scratch_count(i: int) -> torch.Tensor:  # O(batch): one representative position per distinct id
        f, c = ids[i % nb], clusters[i % nb]
        scratch[f] = arange
        return torch.bincount(c[scratch[f] == arange], minlength=k)

    if not torch.equal(unique_count(0), scratch_count(0)):
        raise SaecError(f"n={n}, k={k}: the scratch-buffer count of distinct members differs from torch.unique's")
    cands: dict[str, Callable[[int], torch.Tensor]] = {
        "distinct members per cluster: torch.unique + scatter_ + bincount (current mean)": unique_count,
        "distinct members per cluster: int32 scratch buffer of num_embeddings + bincount": scratch_count,
        "per-cluster gradient sum: index_add_ (current mean)":
            lambda i: grads[i % nb].new_zeros(k, dim).index_add_(0, clusters[i % nb], grads[i % nb]),
        "per-cluster gradient sum: aten.embedding_dense_backward (what sum mode runs)":
            lambda i: torch.ops.aten.embedding_dense_backward(grads[i % nb], clusters[i % nb], k, -1, False),
    }
    best: dict[str, dict[str, float]] = {name: {} for name in cands}
    for _ in range(rounds):  # rounds: every candidate at every thread count, best round kept
        for threads in sorted({torch.get_num_threads(), 1}, reverse=True):
            with num_threads(threads):
                for name, fn in cands.items():
                    for i in range(10):
                        fn(i)
                    t = time.perf_counter()
                    for i in range(steps):
                        fn(i)
                    us = (time.perf_counter() - t) / steps * 1e6
                    best[name][str(threads)] = min(us, best[name].get(str(threads), float("inf")))
    return best


def run(cfg: LookupCostConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Measure every (rows, dim, ids) cell, then the profile and the alternatives; the raw record as plain data."""
    from saec.bench.report import environment, peak_rss_mib
    from saec.train.loop import sparse_checks_off

    start = time.perf_counter()
    record: dict[str, Any] = {"command": command, "config": asdict(cfg), "environment": environment(),
                              "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
                              "load_before": os.getloadavg()[0], "cells": [], "distinct": [], "profiles": []}
    with sparse_checks_off():  # as training steps them (saec.train.loop)
        warm = build_variants(cfg.warmup_rows, max(cfg.dims), cfg.ks, True, seed=1)
        bench_config(warm, make_ids("zipf", cfg.warmup_rows, cfg.batch, 8, 1, cfg.zipf_s),
                     LookupCostConfig(min_time=cfg.warmup_time, max_iters=50, dense_rounds=1, lr=cfg.lr),
                     max(cfg.dims), 1)
        del warm
        for n in cfg.sizes:
            for dist in cfg.dists:
                ids = make_ids(dist, n, cfg.batch, cfg.batches, 0, cfg.zipf_s)
                record["distinct"].append({"rows": n, "dist": dist,
                                           "mean": float(np.mean([len(torch.unique(b)) for b in ids]))})
                for dim in cfg.dims:
                    variants = build_variants(n, dim, cfg.ks, n <= cfg.no_dense_above, seed=0)
                    cell = {"rows": n, "dim": dim, "dist": dist,
                            "bytes": {name: module_bytes(m) for name, m in variants.items()},
                            "rates": bench_config(variants, ids, cfg, dim)}
                    record["cells"].append(cell)
                    if progress:
                        ref = statistics.median(cell["rates"][REFERENCE]["fwd+bwd+adagrad"])
                        print(f"n={n:,} d={dim} {dist}: sparse emb train {fmt_rate(ref)}/s  " + "  ".join(
                            f"{v}: {statistics.median(r['fwd+bwd+adagrad']) / ref:.2f}x"
                            for v, r in cell["rates"].items() if v != REFERENCE and "fwd+bwd+adagrad" in r),
                              flush=True)
                    del variants
                    gc.collect()
        prof_ids = make_ids("zipf", cfg.profile_rows, cfg.batch, cfg.batches, 0, cfg.zipf_s)
        for dim in cfg.dims:
            for k in cfg.ks:
                record["profiles"].append({
                    "dim": dim, "k": k, **profile_steps(cfg.profile_rows, dim, k, prof_ids, cfg.profile_steps),
                    "alternatives": alternatives(cfg.profile_rows, dim, k, prof_ids, cfg.profile_steps,
                                                 cfg.alt_rounds)})
    record["load_after"] = os.getloadavg()[0]
    record["wall_s"] = time.perf_counter() - start
    record["peak_rss_mib"] = peak_rss_mib()
    return record


# -- the page ---------------------------------------------------------------------------------------
def fmt_rate(x: float) -> str:
    """Lookups per second, as ``1.23 M`` or ``456 k``."""
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def fmt_bytes(b: float) -> str:
    """Bytes in the largest unit that keeps one digit before the point."""
    for unit, s in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= s:
            return f"{b / s:.1f} {unit}"
    return f"{b:.0f} B"


def ratio(rates: dict[str, dict[str, list[float]]], variant: str, mode: str, ref: str = REFERENCE) -> float:
    """Median over rounds of the within-round throughput ratio variant / ref."""
    return statistics.median([a / b for a, b in zip(rates[variant][mode], rates[ref][mode])])


def _rows_text(ns: list[int]) -> str:
    """``10,000`` or ``1-10 M`` rows."""
    lo, hi = min(ns), max(ns)
    if lo >= 1_000_000:
        return f"{lo / 1e6:g} M" if lo == hi else f"{lo / 1e6:g}-{hi / 1e6:g} M"
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def render(record: dict[str, Any], md_path: str | Path) -> None:
    """The page of a :func:`run` record."""
    from saec.bench.report import checksums, header, markdown_table, recorded_run
    from saec.cluster.saec import mask_dtype
    from saec.io import write_text

    cfg, cells = record["config"], record["cells"]
    text = header("Lookup cost: ClusteredEmbedding vs nn.Embedding", record["command"], recorded_run(record),
                  checksums(record))
    masks = ", ".join(f"k={k} gives a {mask_dtype(k).name} mask" for k in cfg["ks"])
    text += (
        f"\nOne batch = {cfg['batch']:,} ids of one field (a 1-D id tensor, as for a single-valued field); throughput "
        f"is lookups (ids) per second. Modes: **forward** under `torch.no_grad()` (serving); **fwd+bwd**: forward, "
        f"`backward()` of a fixed random (batch, d) output gradient, `zero_grad(set_to_none=True)`; "
        f"**fwd+bwd+adagrad**: the same plus `torch.optim.Adagrad.step()` (lr {cfg['lr']:g}), i.e. one training step "
        f"of the table, as `saec.train.loop.train_epoch` does it.\n\n"
        f"Ids: **zipf** = bounded Zipf(s={cfg['zipf_s']}) over frequency-ranked ids (id 0 most frequent, as saec "
        f"vocabularies number features; `saec.data.synthetic.zipf_sample`), **uniform** = uniform over the table. "
        f"{cfg['batches']} pre-drawn batches are cycled. Clustered masks are random (cost does not depend on the "
        f"assignment); {masks}.\n\n"
        f"Method: for each (rows, d, ids) all variants are built side by side; each (variant, mode) is calibrated "
        f"to ~{cfg['min_time']} s per measurement; then {cfg['rounds']} rounds each run every variant once, in an "
        f"order rotated every round. Absolute numbers are the median over rounds; a **ratio** is variant / "
        f"`{REFERENCE}` computed *within* each round, median over rounds (same process, same conditions). The "
        f"dense `nn.Embedding` backward/step is measured in {cfg['dense_rounds']} rounds only (it is slow at large "
        f"tables). 1-min load average {record['load_before']:.2f} before and {record['load_after']:.2f} after the "
        f"run ({record['cpu_count']} cores; this process uses up to {record['threads']} threads, so a load well "
        f"above {record['cpu_count']} means another process was competing).\n\n")
    text += _findings(record)
    text += "\n## Throughput, and ratio to nn.Embedding(sparse=True)\n\n"
    text += ("Cells: ratio to the sparse `nn.Embedding` the library's container uses (higher = faster), then the "
             "absolute lookups/s.\n")
    order = list(dict.fromkeys(v for c in cells for v in c["rates"]))
    others = [v for v in order if v != REFERENCE]
    for mode in MODES:
        text += f"\n### {mode}\n\n"
        rows = [["rows", "d", "ids", f"{REFERENCE} (lookups/s)", *others]]
        for c in cells:
            rates = c["rates"]
            row = [f"{c['rows']:,}", str(c["dim"]), c["dist"], fmt_rate(statistics.median(rates[REFERENCE][mode]))]
            row += [f"{ratio(rates, v, mode):.2f}x ({fmt_rate(statistics.median(rates[v][mode]))})"
                    if mode in rates.get(v, {}) else "-" for v in others]
            rows.append(row)
        text += markdown_table(rows)

    spread_dist, spread_dim = cfg["dists"][0], max(cfg["dims"])
    text += (f"\n## Spread\n\nMin-max of the training-step throughput over rounds (lookups/s), {spread_dist} ids, "
             f"d={spread_dim}:\n\n")
    rows = [["rows", *order]]
    for c in cells:
        if c["dist"] == spread_dist and c["dim"] == spread_dim:
            rows.append([f"{c['rows']:,}"] + [
                f"{fmt_rate(min(c['rates'][v]['fwd+bwd+adagrad']))} - {fmt_rate(max(c['rates'][v]['fwd+bwd+adagrad']))}"
                if "fwd+bwd+adagrad" in c["rates"].get(v, {}) else "-" for v in order])
    text += markdown_table(rows)

    text += ("\n## Memory of each module\n\nParameters + buffers (what is served) and the Adagrad state (one float per "
             "trainable element; training only). The dense `nn.Embedding`'s backward also allocates a full "
             "(rows x d) gradient every step.\n\n")
    rows = [["rows", "d", *[f"{v}: module / Adagrad state" for v in order]]]
    seen = set()
    for c in cells:
        if (c["rows"], c["dim"]) not in seen:
            seen.add((c["rows"], c["dim"]))
            rows.append([f"{c['rows']:,}", str(c["dim"])] + [
                f"{fmt_bytes(c['bytes'][v][0])} / {fmt_bytes(c['bytes'][v][1])}" if v in c["bytes"] else "-"
                for v in order])
    text += markdown_table(rows)
    text += f"\nDistinct ids per batch (mean over the {cfg['batches']} batches):\n\n"
    distinct = {(d["rows"], d["dist"]): d["mean"] for d in record["distinct"]}
    text += markdown_table([["rows", *cfg["dists"]]] + [[f"{n:,}"] + [f"{distinct[(n, d)]:,.0f}" for d in cfg["dists"]]
                                                        for n in cfg["sizes"]])
    text += _profile_text(record)
    write_text(md_path, text)


def _profile_text(record: dict[str, Any]) -> str:
    from saec.bench.report import markdown_table

    cfg = record["config"]
    text = "\n## Where the `mean` backward's time goes\n\n"
    text += (f"`torch.profiler` over {cfg['profile_steps']} forward+backward steps of one `ClusteredEmbedding` "
             f"({cfg['profile_rows']:,} rows, zipf ids cycled over {cfg['batches']} batches of {cfg['batch']:,}), "
             f"self CPU time per step of every op above {PROFILE_MIN_US:g} µs; the first row is the wall time per "
             f"step measured without the profiler.\n\n")
    for p in record["profiles"]:
        mean_ops, sum_ops = p["mean"]["ops"], p["sum"]["ops"]
        names = sorted(set(mean_ops) | set(sum_ops), key=lambda o: -(mean_ops.get(o, 0) + sum_ops.get(o, 0)))
        names = [o for o in names if max(mean_ops.get(o, 0), sum_ops.get(o, 0)) >= PROFILE_MIN_US]
        rows = [[f"d={p['dim']}, k={p['k']}: op", "mean: µs / step", "sum: µs / step"],
                ["**wall time per step (no profiler)**", f"**{p['mean']['wall']:.0f}**", f"**{p['sum']['wall']:.0f}**"]]
        rows += [[f"`{o}`", f"{mean_ops.get(o, 0):.1f}", f"{sum_ops.get(o, 0):.1f}"] for o in names]
        text += markdown_table(rows) + "\n"
    text += (f"Candidate replacements, timed alone (µs per batch, best of {cfg['alt_rounds']} rounds of "
             f"{cfg['profile_steps']} calls; ids cycled over {cfg['batches']} batches so no call repeats the previous "
             f"input; same rows and ids as above), with torch's default thread count and with one thread:\n\n")
    profiles = record["profiles"]
    tcounts = sorted({t for p in profiles for piece in p["alternatives"].values() for t in piece}, key=int, reverse=True)
    rows = [["piece", *[f"d={p['dim']}, k={p['k']}, {t} thread{'s' if int(t) > 1 else ''}"
                        for p in profiles for t in tcounts]]]
    rows += [[name, *[f"{p['alternatives'][name][t]:.0f}" for p in profiles for t in tcounts]]
             for name in profiles[0]["alternatives"]]
    return text + markdown_table(rows)


def _findings(record: dict[str, Any]) -> str:
    """Findings, with every number computed from the record."""
    from saec.bench.report import span
    from saec.cluster.saec import mask_dtype

    cfg, cells, profiles = record["config"], record["cells"], record["profiles"]
    ks, batch = cfg["ks"], cfg["batch"]

    def rr(variant: str, mode: str, rows: Callable[[int], bool] = lambda n: True, ref: str = REFERENCE) -> list[float]:
        return [ratio(c["rates"], variant, mode, ref) for c in cells
                if rows(c["rows"]) and mode in c["rates"].get(variant, {})]

    def us(variant: str, mode: str) -> list[float]:  # µs per batch
        return [batch / statistics.median(c["rates"][variant][mode]) * 1e6 for c in cells]

    smallest = min(cfg["sizes"])
    small, large = (lambda n: n == smallest), (lambda n: n >= LARGE_ROWS)
    large_rows = [n for n in cfg["sizes"] if n >= LARGE_ROWS]
    cl = [f"Clustered k={k} {m}" for k in ks for m in ("mean", "sum")]
    fwd_small = [x for v in cl for x in rr(v, "forward", small)]
    fwd_large = [x for v in cl for x in rr(v, "forward", large)]
    train_mean = [x for k in ks for x in rr(f"Clustered k={k} mean", "fwd+bwd+adagrad")]
    train_sum = [x for k in ks for x in rr(f"Clustered k={k} sum", "fwd+bwd+adagrad")]
    fb_mean = [x for k in ks for x in rr(f"Clustered k={k} mean", "fwd+bwd")]
    fb_sum = [x for k in ks for x in rr(f"Clustered k={k} sum", "fwd+bwd")]
    mean_vs_sum = [x for k in ks for x in rr(f"Clustered k={k} mean", "fwd+bwd+adagrad", ref=f"Clustered k={k} sum")]
    bwd_mean_vs_sum = [x for k in ks for x in rr(f"Clustered k={k} mean", "fwd+bwd", ref=f"Clustered k={k} sum")]
    dense_large = rr(DENSE, "fwd+bwd+adagrad", large)
    step_us = [t - b for v in cl for t, b in zip(us(v, "fwd+bwd+adagrad"), us(v, "fwd+bwd"))]
    slowest_fwd = min(statistics.median(c["rates"][v]["forward"]) for c in cells for v in cl)
    sort_us = [p["mean"]["ops"].get("aten::sort", 0) for p in profiles]
    edb_us = [p["sum"]["ops"].get("aten::embedding_dense_backward", 0) for p in profiles]
    threads = str(record["threads"])
    names = list(profiles[0]["alternatives"])

    def pick(i: int, t: str) -> list[float]:
        return [p["alternatives"][names[i]][t] for p in profiles if t in p["alternatives"][names[i]]]

    uniq, scratch, ia2, edb2 = pick(0, threads), pick(1, threads), pick(2, threads), pick(3, threads)
    uniq1, scratch1, ia1 = pick(0, "1"), pick(1, "1"), pick(2, "1")
    scratch_bytes = np.dtype(np.int32).itemsize
    small_mask = mask_dtype(min(ks))
    faster = min(train_mean + train_sum) > 1
    cheaper = bool(ia2 and edb2 and max(ia2) < min(edb2))
    mask_sizes = ", ".join(f"{mask_dtype(k).itemsize} byte(s) per row at k={k}" for k in ks)
    x = "{:.2f}x"
    text = "\n## Findings\n\n"
    text += (
        f"- **Serving (forward only)** costs more per lookup with `ClusteredEmbedding`: two gathers (`mask[ids]`, "
        f"then `codebook[...]`) plus a `.long()` of the compact mask indices, against one gather. At "
        f"{_rows_text([smallest])} rows, where everything is in cache, it runs at {span(fwd_small, x)} of "
        f"`nn.Embedding`'s throughput"
        + (f"; at {_rows_text(large_rows)} rows at {span(fwd_large, x)}, where the plain table's gather also misses "
           f"cache (these large-table ratios are the least stable cells between runs on this shared machine)"
           if large_rows else "")
        + f". In absolute terms every variant stays above {fmt_rate(slowest_fwd)} lookups/s, i.e. a {batch:,}-id "
        f"batch in at most {batch / slowest_fwd * 1e6:.0f} µs.\n"
        f"- **Training (fwd+bwd+Adagrad)** is {'faster' if faster else 'not always faster'} with "
        f"`ClusteredEmbedding` than with the sparse `nn.Embedding`: {span(train_mean, x)} with the `mean` rule and "
        f"{span(train_sum, x)} with `sum`. The sparse table's step costs {span(us(REFERENCE, 'fwd+bwd+adagrad'), '{:.0f} µs')} "
        f"per batch, of which forward+backward is only {span(us(REFERENCE, 'fwd+bwd'), '{:.0f} µs')}: the rest is "
        f"Adagrad on a sparse gradient (coalescing duplicate ids, then updating the touched rows and their state). "
        f"The clustered table's gradient is a dense (k x d) tensor, whose Adagrad step adds "
        f"{span(step_us, '{:.0f} µs')} (training step minus forward+backward)."
        + (f" The dense `nn.Embedding` is competitive only when the table is tiny: at >= {_rows_text([LARGE_ROWS])} "
           f"rows its step runs over the whole table and its throughput drops to {span(dense_large, x)} of the "
           f"sparse one." if dense_large else "") + "\n"
        f"- **Forward+backward alone** (no optimizer step): {span(fb_mean, x)} of the sparse `nn.Embedding` with "
        f"`mean`, {span(fb_sum, x)} with `sum`. That comparison flatters the sparse table: its backward only "
        f"packages the output gradient with the ids (no accumulation) and leaves the work to the optimizer, whereas "
        f"the clustered backward reduces the {batch:,} row gradients into k rows."
        + (" Per training step, which is what retraining pays, the order reverses (previous point)."
           if faster and max(fb_mean + fb_sum) < 1 else "") + "\n"
        f"- **`mean` vs `sum`**: the `mean` rule's training step runs at {span(mean_vs_sum, x)} of `sum`'s "
        f"throughput (forward+backward alone: {span(bwd_mean_vs_sum, x)}). The profile below says where: "
        f"`torch.unique` (a sort of the {batch:,} ids, `aten::sort` {span(sort_us, '{:.0f} µs')} per step) to count "
        f"each cluster's distinct features, plus `index_add_` for the per-cluster sum and the Python "
        f"`autograd.Function`; `sum` runs a single `aten::embedding_dense_backward` ({span(edb_us, '{:.0f} µs')}). "
        f"Counting distinct members without sorting, with an int32 scratch buffer of `num_embeddings` entries "
        f"(`buf[ids] = arange(B)`; an id's representative is the position that reads itself back; `bincount` of "
        f"their clusters), takes {span(scratch, '{:.0f} µs')} instead of {span(uniq, '{:.0f} µs')} with {threads} "
        f"threads and {span(scratch1, '{:.0f} µs')} instead of {span(uniq1, '{:.0f} µs')} with one (best of "
        f"{cfg['alt_rounds']} rounds, identical counts, checked). The buffer costs {scratch_bytes} bytes per feature "
        f"during retraining only ({scratch_bytes // small_mask.itemsize}x a {small_mask.name} mask), so it should be "
        f"allocated lazily and dropped after retraining. The per-cluster sum (`index_add_`) is the other piece "
        f"({span(ia2, '{:.0f} µs')} with {threads} threads, {span(ia1, '{:.0f} µs')} with one, in this run), "
        + ("cheaper than" if cheaper else "not always cheaper than")
        + f" the `embedding_dense_backward` that `sum` runs ({span(edb2, '{:.0f} µs')})."
        + (" So with the sort gone the `mean` backward would do no more work than `sum`'s, and `sum` itself could "
           "use the same `index_add_` (a custom `autograd.Function`, as `mean` already is) instead of "
           "`F.embedding`'s backward." if cheaper and max(scratch) < min(uniq) else "") + "\n"
        f"- **Memory**: the clustered module is the mask ({mask_sizes}) plus a k x d codebook, and its Adagrad state "
        f"is k x d floats, against rows x d floats for both the table and the Adagrad state of `nn.Embedding` (see "
        f"the memory table).\n")
    return text


__all__ = ["LookupCostConfig", "alternatives", "bench_config", "build_variants", "calibrate", "make_ids",
           "module_bytes", "profile_steps", "render", "run", "run_once"]
