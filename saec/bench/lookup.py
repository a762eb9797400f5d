"""Forward speed of the packed low-precision tables against ``nn.EmbeddingBag`` (issue 8, item 3).

:func:`run` times pooled lookups of 4,096-bag batches (forward only, no gradients) through
:class:`saec.nn.bag.CompressedEmbeddingBag` over :class:`saec.nn.quantized.QuantizedEmbedding` at
float16 and 8, 4, 2 bits, beside a float32 ``nn.EmbeddingBag`` holding the same weights, and returns
the raw record (every repeat's time, table bytes, the environment). :func:`render` writes the results
page and its plot from that record alone, so a page re-rendered from the JSON is the same page.
``benchmarks/quantized_lookup.py`` is the entry point.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from saec.bench.measure import busy_cpu_s
from saec.bench.report import (checksums, cpu_model, environment, header, markdown_table, peak_rss_mib,
                               recorded_environment, save_figure, span)
from saec.data.synthetic import zipf_sample
from saec.io import write_text
from saec.nn.bag import CompressedEmbeddingBag
from saec.nn.quantized import QuantizedEmbedding

REFERENCE = "nn.EmbeddingBag fp32"
BARE = "int8 bare op"
_BITS = {"fp16": 16, "int8": 8, "int4": 4, "int2": 2}

Lookup = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LookupConfig:
    """What :func:`run` measures.

    Attributes:
        rows: table rows (v).
        dims: vector widths (d).
        bag_lengths: ids per bag (every bag of a batch has this length).
        id_dists: ``"uniform"`` over the table, or ``"zipf"`` (bounded Zipf(``zipf_s``) over
            frequency-ranked ids, id 0 most frequent: :func:`saec.data.synthetic.zipf_sample`).
        threads: values of ``torch.set_num_threads`` to measure at (restored afterwards).
        batch: bags per batch.
        repeats: timed rounds per cell; a round runs every variant once, in an order rotated every
            round, each on its own batch (so none reads rows another has just brought into cache).
        warmup: untimed rounds before them.
        batches: pre-drawn batches per cell, cycled over the rounds and variants.
        quiet_cores: a cell is *quiet* if other processes kept at most this many cores busy on average
            while it was timed (:func:`other_cpu`).
        retry_budget_s: seconds (per table width) spent re-measuring cells that were not quiet, keeping each
            cell's measurement with the least competing load.
        retry_wait_s: pause before each retry pass.
        init_std: the float weights are drawn from N(0, init_std^2).
        seed: weights and ids.
    """

    rows: int = 1_000_000
    dims: tuple[int, ...] = (16, 64)
    bag_lengths: tuple[int, ...] = (1, 20)
    id_dists: tuple[str, ...] = ("uniform", "zipf")
    threads: tuple[int, ...] = (1, 2)
    batch: int = 4096
    repeats: int = 100
    warmup: int = 3
    batches: int = 64
    zipf_s: float = 1.1
    init_std: float = 0.1
    quiet_cores: float = 0.25
    retry_budget_s: float = 180.0
    retry_wait_s: float = 10.0
    seed: int = 0


def make_bags(dist: str, rows: int, batch: int, length: int, count: int, seed: int,
              zipf_s: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ``batch`` bags of ``length`` ids each, as (1-D ids, offsets)."""
    rng = np.random.default_rng(seed)
    shape = (count, batch * length)
    ids = zipf_sample(rng.random(shape), rows, zipf_s) if dist == "zipf" else rng.integers(0, rows, shape)
    ids = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
    offsets = torch.arange(0, batch * length, length, dtype=torch.int64)
    return [(ids[i], offsets) for i in range(count)]


def build_variants(weight: torch.Tensor) -> tuple[dict[str, Lookup], dict[str, int], dict[str, float]]:
    """What is timed, over ``weight``: the float reference (:data:`REFERENCE`), the four precisions through
    ``CompressedEmbeddingBag``, and the int8 fused operator called directly on the packed rows (:data:`BARE`,
    what the container's checks cost); with their tables' bytes and build seconds."""
    lookups: dict[str, Lookup] = {REFERENCE: nn.EmbeddingBag.from_pretrained(weight, mode="sum")}
    nbytes = {REFERENCE: weight.numel() * weight.element_size()}
    build_s = {REFERENCE: 0.0}
    for name, bits in _BITS.items():
        t = time.perf_counter()
        table = QuantizedEmbedding.from_float(weight, bits=bits)
        build_s[name] = time.perf_counter() - t
        lookups[name] = CompressedEmbeddingBag(table, mode="sum")
        nbytes[name] = table.nbytes()
    packed = lookups["int8"].table.packed
    lookups[BARE] = lambda ids, offsets: torch.ops.quantized.embedding_bag_byte_rowwise_offsets(packed, ids, offsets)
    nbytes[BARE], build_s[BARE] = nbytes["int8"], build_s["int8"]
    return lookups, nbytes, build_s


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block only."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def other_cpu(out: dict) -> Iterator[None]:
    """Set ``out["other_cores"]``: the average number of cores other processes kept busy during the block
    (the machine's busy CPU time minus this process's, over the wall time; None off Linux)."""
    busy, own, wall = busy_cpu_s(), _own_cpu_s(), time.perf_counter()
    try:
        yield
    finally:
        after = busy_cpu_s()
        elapsed = time.perf_counter() - wall
        out["other_cores"] = (None if busy is None or after is None or elapsed <= 0 else
                              max(0.0, (after - busy) - (_own_cpu_s() - own)) / elapsed)


def time_rounds(lookups: dict[str, Lookup], bags: list, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds of every timed round for every lookup (rounds rotate the order of the lookups; within a
    round every lookup gets the next of the cycled ``bags``)."""
    names = list(lookups)
    times: dict[str, list[float]] = {n: [] for n in names}
    gc.collect()
    with torch.no_grad():
        for r in range(warmup + repeats):
            shift = r % len(names)
            for i, name in enumerate(names[shift:] + names[:shift]):
                ids, offsets = bags[(r * len(names) + i) % len(bags)]
                t = time.perf_counter()
                lookups[name](ids, offsets)
                dt = time.perf_counter() - t
                if r >= warmup:
                    times[name].append(round(dt, 8))  # 10 ns: finer than the timer's noise
    return times


def measure(lookups: dict[str, Lookup], bags: list, threads: int, cfg: LookupConfig) -> dict:
    """One cell: ``{"times_s": {lookup: [seconds]}, "other_cores": ...}`` at ``threads`` threads."""
    out: dict = {}
    with num_threads(threads), other_cpu(out):
        out["times_s"] = time_rounds(lookups, bags, cfg.repeats, cfg.warmup)
    return out


def _quiet(m: dict, cfg: LookupConfig) -> bool:
    return m["other_cores"] is None or m["other_cores"] <= cfg.quiet_cores


def max_errors(lookups: dict[str, Lookup], ids: torch.Tensor, offsets: torch.Tensor) -> dict[str, float]:
    """Largest |pooled vector - float32 pooled vector| of every lookup on one batch."""
    with torch.no_grad():
        ref = lookups[REFERENCE](ids, offsets)
        return {n: float((f(ids, offsets) - ref).abs().max()) for n, f in lookups.items()}


def run(cfg: LookupConfig, command: list[str], progress: bool = True) -> dict:
    """Measure every (dim, bag length, id distribution, threads) cell; the raw record as plain data."""
    from tqdm import tqdm

    start = time.perf_counter()
    env = environment()
    env.pop("torch threads")  # set per cell (LookupConfig.threads)
    record = {"command": command, "config": asdict(cfg), "environment": env, "cpu": cpu_model(),
              "cpu_count": os.cpu_count(), "load_before": os.getloadavg()[0], "tables": [], "cells": []}
    cells = [(d, L, dist) for d in cfg.dims for L in cfg.bag_lengths for dist in cfg.id_dists]
    bar = tqdm(total=len(cells) * len(cfg.threads), desc="lookup cells", disable=not progress)
    for d in cfg.dims:
        gen = torch.Generator().manual_seed(cfg.seed)
        weight = torch.randn(cfg.rows, d, generator=gen) * cfg.init_std
        lookups, nbytes, build_s = build_variants(weight)
        record["tables"] += [{"dim": d, "variant": n, "nbytes": nbytes[n], "build_s": build_s[n]} for n in lookups]
        bags, errors, done = {}, {}, {}
        for L in cfg.bag_lengths:
            for dist in cfg.id_dists:
                bags[L, dist] = make_bags(dist, cfg.rows, cfg.batch, L, cfg.batches, cfg.seed + 1, cfg.zipf_s)
                errors[L, dist] = max_errors(lookups, *bags[L, dist][0])
                for threads in cfg.threads:
                    done[L, dist, threads] = {**measure(lookups, bags[L, dist], threads, cfg), "attempts": 1}
                    bar.update()
        deadline = time.perf_counter() + cfg.retry_budget_s
        while time.perf_counter() < deadline:  # the machine is shared: measure contended cells again
            pending = [k for k, m in done.items() if not _quiet(m, cfg)]
            if not pending:
                break
            time.sleep(cfg.retry_wait_s)
            for k in pending:
                if time.perf_counter() >= deadline:
                    break
                m = measure(lookups, bags[k[:2]], k[2], cfg)
                m["attempts"] = done[k]["attempts"] + 1
                if done[k]["other_cores"] is None or m["other_cores"] < done[k]["other_cores"]:
                    done[k] = m
                else:
                    done[k]["attempts"] = m["attempts"]
        for (L, dist, threads), m in done.items():
            record["cells"] += [{"dim": d, "bag_length": L, "ids": dist, "threads": threads, "variant": n,
                                 "times_s": m["times_s"][n], "max_abs_error": errors[L, dist][n],
                                 "other_cores": m["other_cores"], "attempts": m["attempts"]} for n in lookups]
        del lookups, weight, bags
    bar.close()
    record["wall_s"] = time.perf_counter() - start
    record["load_after"] = os.getloadavg()[0]
    record["peak_rss_mib"] = peak_rss_mib()
    return record


# -- report ----------------------------------------------------------------------------------------
def _ms(xs: list[float]) -> float:
    return 1e3 * statistics.median(xs)


def _paired(cell: dict, ref: dict, op: Callable[[float, float], float]) -> float:
    """Median over rounds of ``op(this variant's time, the other's time in the same round)``."""
    return statistics.median(op(t, r) for t, r in zip(cell["times_s"], ref["times_s"]))


def _per_bag(n: int) -> str:
    return f"{n} id{'s' if n > 1 else ''}/bag"


def render(record: dict, md_path: str | Path, png_path: str | Path) -> None:
    """Write the results page and its plot from ``record`` (what :func:`run` returned)."""
    cfg = record["config"]
    cells = {(c["dim"], c["bag_length"], c["ids"], c["threads"], c["variant"]): c for c in record["cells"]}
    variants = list(dict.fromkeys(c["variant"] for c in record["cells"]))
    timed = [v for v in variants if v != REFERENCE]
    keys = [(d, L, dist, th) for d in cfg["dims"] for L in cfg["bag_lengths"] for dist in cfg["id_dists"]
            for th in cfg["threads"]]
    ratio = {(*k, v): _paired(cells[(*k, v)], cells[(*k, REFERENCE)], lambda a, b: a / b) for k in keys for v in timed}
    other = {k: cells[(*k, REFERENCE)].get("other_cores") for k in keys}
    quiet = [k for k in keys if other[k] is None or other[k] <= cfg["quiet_cores"]]

    text = header("Forward speed of packed low-precision tables vs nn.EmbeddingBag", record["command"],
                  env=recorded_environment(record["environment"]), sums=checksums(record))
    text += f"""
Run time {record['wall_s'] / 60:.1f} min, peak RSS {record['peak_rss_mib']:,.0f} MiB, {record['cpu_count']} cores; 1-min load
average {record['load_before']:.2f} before and {record['load_after']:.2f} after the run. The machine is shared: for
every cell, **other cores** is the average number of cores that other processes kept busy while it was timed
(all CPU time in `/proc/stat` minus this process's, over the wall time). Cells with more than
{cfg['quiet_cores']} such cores were measured again after a {cfg['retry_wait_s']:.0f} s pause, within
{cfg['retry_budget_s']:.0f} s per table width, keeping the measurement with the least competing load ("tries" below).
{len(keys) - len(quiet)} of {len(keys)} cells stayed above {cfg['quiet_cores']}; they are marked * below and left out of
the summary.

What is timed: one forward call (under `torch.no_grad()`) on a batch of {cfg['batch']:,} bags, mode `sum`,
1-D ids with offsets (DLRM-style), over a table of {cfg['rows']:,} rows drawn from N(0, {cfg['init_std']}²).
**{REFERENCE}**: `nn.EmbeddingBag.from_pretrained(weight, mode="sum")`. **fp16 / int8 / int4 / int2**:
`CompressedEmbeddingBag(QuantizedEmbedding.from_float(weight, bits=...), mode="sum")` (`saec.nn.bag`,
`saec.nn.quantized`), i.e. with the container's id and offset checks; the integer tables pool with torch's
fused `embedding_bag_{{byte,4bit,2bit}}_rowwise_offsets` over the packed rows, float16 gathers its rows
(`F.embedding`), converts them to float32 and pools them with `F.embedding_bag`. **{BARE}**:
`torch.ops.quantized.embedding_bag_byte_rowwise_offsets` called directly on the int8 table's packed rows,
without the container. Ids: **uniform** over the table, or **zipf** = bounded Zipf(s={cfg['zipf_s']}) over
frequency-ranked ids (`saec.data.synthetic.zipf_sample`). Every cell: {cfg['warmup']} untimed rounds, then {cfg['repeats']} timed rounds, each running every variant once, in an
order rotated every round, each variant on the next of the cell's {cfg['batches']} pre-drawn batches (so no variant
reads rows another has just brought into cache). Times are medians over rounds; a **ratio** is variant time /
{REFERENCE} time within each round, median over rounds (>1: slower than the float table).
`torch.set_num_threads` is {' or '.join(str(t) for t in cfg['threads'])} per cell (restored afterwards).
"""
    text += "\n## Summary\n\n" + _summary(record, cells, quiet, timed, ratio)

    text += "\n## Bytes per table\n\n"
    rows = [["d", "variant", "bytes", "MiB", "float32 / this", "from_float s"]]
    for t in record["tables"]:
        if t["variant"] == BARE:
            continue
        ref = next(x for x in record["tables"] if x["dim"] == t["dim"] and x["variant"] == REFERENCE)
        rows.append([str(t["dim"]), t["variant"], f"{t['nbytes']:,}", f"{t['nbytes'] / 2**20:,.1f}",
                     f"{ref['nbytes'] / t['nbytes']:.2f}", "" if t["variant"] == REFERENCE else f"{t['build_s']:.2f}"])
    text += markdown_table(rows)

    text += (f"\n## Time per batch\n\nMedian ms per batch of {cfg['batch']:,} bags; in parentheses the ratio to "
             f"{REFERENCE} (>1: slower).\n\n")
    rows = [["d", "ids/bag", "ids", "threads", "other cores", *variants]]
    for k in keys:
        mark = "" if k in quiet else " *"
        tries = cells[(*k, REFERENCE)]["attempts"]
        load = ("n/a" if other[k] is None else f"{other[k]:.2f}") + mark + (f" ({tries} tries)" if tries > 1 else "")
        row = [str(k[0]), str(k[1]), k[2], str(k[3]), load]
        for v in variants:
            ms = f"{_ms(cells[(*k, v)]['times_s']):.3f}"
            row.append(ms if v == REFERENCE else f"{ms} ({ratio[(*k, v)]:.2f}x)")
        rows.append(row)
    text += markdown_table(rows)

    packed = [v for v in timed if v != BARE]  # the bare op reads the int8 table: same error
    text += ("\n## Largest error of a pooled vector\n\nmax |pooled - float32 pooled| over the first batch (sums of "
             f"the bag's rows; weights ~ N(0, {cfg['init_std']}²)).\n\n")
    rows = [["d", "ids/bag", "ids", *packed]]
    for d in cfg["dims"]:
        for L in cfg["bag_lengths"]:
            for dist in cfg["id_dists"]:
                k = (d, L, dist, cfg["threads"][0])
                rows.append([str(d), str(L), dist, *[f"{cells[(*k, v)]['max_abs_error']:.2g}" for v in packed]])
    text += markdown_table(rows)
    text += f"\n![time per batch]({Path(png_path).name})\n"
    write_text(md_path, text)
    _plot(record, keys, variants, cells, png_path)


def _summary(record: dict, cells: dict, quiet: list[tuple], timed: list[str], ratio: dict) -> str:
    """Ratio ranges per (threads, bag length) over the quiet cells, the container's cost, thread scaling."""
    cfg = record["config"]
    groups = [(th, L) for th in cfg["threads"] for L in cfg["bag_lengths"]]
    dists = " / ".join(cfg["id_dists"])
    text = (f"Time relative to {REFERENCE} (ratio, >1: slower), {dists} ids (n/a: the cell was not quiet):\n\n")
    rows = [["variant", "d", *[f"{th} thread{'s' if th > 1 else ''}, {_per_bag(L)}" for th, L in groups]]]
    for v in timed:
        for d in cfg["dims"]:
            row = [v, str(d)]
            for th, L in groups:
                row.append(" / ".join(f"{ratio[(d, L, dist, th, v)]:.2f}" if (d, L, dist, th) in quiet else "n/a"
                                      for dist in cfg["id_dists"]))
            rows.append(row)
    text += markdown_table(rows) + "\n"
    out = []
    for th in cfg["threads"]:
        parts = []
        for L in cfg["bag_lengths"]:
            us = [_paired(cells[(*k, "int8")], cells[(*k, BARE)], lambda a, b: 1e6 * (a - b))
                  for k in quiet if k[3] == th and k[1] == L]
            parts.append(f"{span(us, '{:.0f}')} µs at {_per_bag(L)}")
        out.append(f"- `CompressedEmbeddingBag` (its checks of ids and offsets, then `pooled`) adds {' and '.join(parts)} "
                   f"to the int8 operator's time per batch with {th} thread{'s' if th > 1 else ''} (int8 minus "
                   f"{BARE}, median over rounds; quiet cells).")
    if len(cfg["threads"]) > 1:
        lo, hi = cfg["threads"][0], cfg["threads"][-1]
        pairs = [(k, (*k[:3], hi)) for k in quiet if k[3] == lo and (*k[:3], hi) in quiet]
        for v in (REFERENCE, "int8", "int4"):
            speed = [_ms(cells[(*a, v)]["times_s"]) / _ms(cells[(*b, v)]["times_s"]) for a, b in pairs]
            out.append(f"- {hi} threads instead of {lo}: **{v}** runs {span(speed)}x as fast "
                       f"(time with {lo} / time with {hi}, {len(pairs)} cells quiet at both).")
    return text + "\n".join(out) + "\n"


def _plot(record: dict, keys: list[tuple], variants: list[str], cells: dict, png_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = record["config"]
    threads = cfg["threads"]
    fig, axes = plt.subplots(1, len(threads), figsize=(6.5 * len(threads), 4.2), sharey=True, squeeze=False)
    groups = [k[:3] for k in keys if k[3] == threads[0]]
    width = 0.8 / len(variants)
    for ax, th in zip(axes[0], threads):
        for i, v in enumerate(variants):
            ys = [_ms(cells[(*g, th, v)]["times_s"]) for g in groups]
            ax.bar([j + (i - (len(variants) - 1) / 2) * width for j in range(len(groups))], ys, width, label=v)
        ax.set_xticks(range(len(groups)), [f"d={d}\n{L}/bag\n{dist}" for d, L, dist in groups], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"{th} thread{'s' if th > 1 else ''}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"ms per batch of {cfg['batch']:,} bags (median)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(variants), fontsize=8)
    fig.suptitle(f"Pooled lookup (sum) over {cfg['rows']:,} rows: float32 nn.EmbeddingBag vs packed tables")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, png_path)


__all__ = ["BARE", "LookupConfig", "REFERENCE", "build_variants", "make_bags", "max_errors", "measure",
           "num_threads", "other_cpu", "render", "run", "time_rounds"]
