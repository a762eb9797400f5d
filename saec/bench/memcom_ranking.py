"""MEmCom §5.2 on MovieLens-1M: relative nDCG@10 loss against the compression ratio for every embedding method.

Every run trains a fresh network (:mod:`saec.models.ranking`) whose input table is the method's table sized by
``make_embedding(budget_params = (num_items + 1) * dim / ratio)``; ratio 1 is the uncompressed ``nn.Embedding``.
The output (softmax) layer is never compressed, as in the paper, so the ratio over all model parameters is smaller
than the input-table ratio; both are reported.

:func:`run` is a resumable sweep (:class:`saec.bench.sweep.Sweep`); :func:`render` writes the page and its plot from
the record alone.
"""

from __future__ import annotations

import inspect
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from saec.bench.report import (and_list, checksums, group_by, header, markdown_table, mean, mean_std, peak_rss_text,
                               recorded_config, recorded_environment, relative_loss, save_figure)
from saec.bench.sweep import Sweep
from saec.errors import SaecError
from saec.io import write_text
from saec.nn.base import param_count
from saec.nn.registry import PAPER_VARIANTS

if TYPE_CHECKING:
    from saec.data.ranking import RankingTask

REFERENCE = "uncompressed"
VARIANTS = PAPER_VARIANTS  # name in the report -> (registry method, fixed hyperparameters)
LABELS = {"memcom": "MEmCom (no bias)", "memcom_bias": "MEmCom (with bias)", REFERENCE: "uncompressed"}
KNOBS = ("num_buckets", "num_kept", "low_dim", "hidden", "alpha", "base_dim", "rank", "num_frequent")
INIT_STD = 0.01
"""Standard deviation of the reference table's N(0, std^2) start, the registry's default for the others."""
PAPER_LOSS_16 = 4
"""MEmCom §5.2 / Fig. 2(a): MEmCom's relative nDCG loss at 16x on MovieLens, in %."""
PAPER_TRAIN = "655K"
"""MEmCom Table 2: training samples of its MovieLens set."""
PAPER_DIM = 256
"""MEmCom §5: the embedding width."""
LOSSES = ("softmax", "ranknet")
PAPER_NAMES = {"low_dim": '"reduce embedding dim"', "truncate": "truncate-rare", "hashing": "naive hashing"}
"""The paper's names of some methods."""


@dataclass(frozen=True)
class RankingConfig:
    """What :func:`run` does: the task (``min_count``, ``num_test``), the network width ``dim``, pointwise
    ``methods`` and RankNet ``ranknet_methods`` (``VARIANTS`` names) at each target ``ratios`` (1: the reference
    only), ``seeds`` seeds (``extra_seeds`` for the reference and ``extra_seed_methods``), the training, and TT
    tables whose budget needs a rank above ``tt_max_rank`` skipped."""

    dataset: str = "movielens-1m"
    dim: int = PAPER_DIM
    min_count: int = 20
    num_test: int = 3
    ratios: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    methods: tuple[str, ...] = tuple(VARIANTS)
    ranknet_methods: tuple[str, ...] = tuple(VARIANTS)
    seeds: int = 1
    extra_seeds: int = 2
    extra_seed_methods: tuple[str, ...] = ("memcom", "memcom_bias")
    lr: float = 0.2
    ranknet_lr: float = 0.2
    tt_max_rank: int = 128
    negatives: int = 16
    batch_size: int = 256
    epochs: int = 30
    patience: int = 2

    def __post_init__(self) -> None:
        for m in self.methods + self.ranknet_methods + self.extra_seed_methods:
            if m not in VARIANTS:
                raise SaecError(f"unknown method {m!r}; choose from {list(VARIANTS)}")


def reference_table(num_items: int, dim: int, seed: int) -> nn.Embedding:
    """The uncompressed input table, drawn like the compressed ones (N(0, INIT_STD^2), own generator)."""
    table = nn.Embedding(num_items + 1, dim)
    with torch.no_grad():
        table.weight.normal_(0.0, INIT_STD, generator=torch.Generator().manual_seed(seed))
    return table


def run_one(task, variant: str, ratio: int, seed: int, loss: str, cfg: RankingConfig) -> dict[str, Any]:
    """Train and test one (variant, ratio, seed, loss); a method that cannot meet the budget gives an error row."""
    from saec.models.ranking import PointwiseRanker, RankNet
    from saec.nn.registry import fit_hyperparameters, make_embedding
    from saec.train.ranking import RankingConfig as TrainRanking
    from saec.train.ranking import evaluate, fit

    v, d = task.num_items + 1, cfg.dim
    full = v * d
    row: dict[str, Any] = {"variant": variant, "ratio": ratio, "seed": seed, "loss": loss}
    if variant == REFERENCE:
        table = reference_table(task.num_items, d, seed)
    else:
        method, fixed = VARIANTS[variant]
        try:
            hyper = fit_hyperparameters(method, v, d, counts=task.counts, budget_params=full // ratio, **fixed)
        except ValueError as exc:
            return {**row, "error": str(exc)}
        row["hyper"] = {k: hyper[k] for k in KNOBS if k in hyper}
        if method == "tt" and hyper["rank"] > cfg.tt_max_rank:
            return {**row, "error": f"skipped: the budget needs TT rank {hyper['rank']} > --tt-max-rank "
                                    f"{cfg.tt_max_rank} (too slow on this machine)"}
        table = make_embedding(method, v, d, counts=task.counts, seed=seed, budget_params=full // ratio, **fixed)
    model = (RankNet if loss == "ranknet" else PointwiseRanker)(table, task.num_items, seed=seed)
    tcfg = TrainRanking(loss=loss, lr=cfg.lr if loss == "softmax" else cfg.ranknet_lr, epochs=cfg.epochs,
                        patience=cfg.patience, batch_size=cfg.batch_size, negatives=cfg.negatives, seed=seed,
                        progress=False)
    start = time.perf_counter()
    history = fit(model, task.train, task.valid, tcfg)
    emb_params = param_count(table)
    out_params = param_count(model) - emb_params
    return {**row, "emb_params": emb_params, "model_params": emb_params + out_params,
            "emb_ratio": full / emb_params, "model_ratio": (full + out_params) / (emb_params + out_params),
            "best_epoch": history.best_epoch, "epochs": len(history.epochs), "seconds": time.perf_counter() - start,
            "valid_ndcg": max(e["valid_ndcg"] for e in history.epochs), **evaluate(model, task.test, 10)}


class Popularity(nn.Module):
    """Scores every item by its training count, whatever the history (a floor for the learned models)."""

    def __init__(self, counts: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("counts", torch.tensor(np.asarray(counts), dtype=torch.float32))

    def scores(self, history: torch.Tensor) -> torch.Tensor:
        """The same scores (training counts) for every row of ``history``."""
        return self.counts.expand(len(history), -1)


def ranking_task(cfg: RankingConfig, cache: Path | None = None) -> RankingTask:
    """The :class:`saec.data.ranking.RankingTask` of ``cfg``'s data set (fetched into the data cache once), with its
    popularity threshold and held-out test interactions per user."""
    from saec.data import movielens
    from saec.data.ranking import movielens_ranking

    movielens.fetch(cfg.dataset, cache)
    return movielens_ranking(cfg.dataset, cache, min_count=cfg.min_count, num_test=cfg.num_test)


def task_facts(task) -> dict[str, Any]:
    """What the page says about the data: the summary, the kept items, history length, training examples and the
    test nDCG@10 of ranking by training popularity (history excluded, ties against, as for the models)."""
    from saec.train.ranking import evaluate

    return {"summary": task.summary(), "num_items": int(task.num_items), "history_len": int(task.history_len),
            "train_examples": len(task.train.labels),
            "popularity_ndcg": float(evaluate(Popularity(task.vocab.counts), task.test, 10)["ndcg"])}


def plan(cfg: RankingConfig) -> list[tuple[str, str, int, int]]:
    """(loss, variant, ratio, seed) of every run, reference first."""
    runs = []
    for loss, variants in zip(LOSSES, (cfg.methods, cfg.ranknet_methods)):
        if not variants:
            continue
        for seed in range(max(cfg.seeds, cfg.extra_seeds)):
            runs.append((loss, REFERENCE, 1, seed))
        for variant in variants:
            seeds = cfg.extra_seeds if variant in cfg.extra_seed_methods else cfg.seeds
            for ratio in [r for r in cfg.ratios if r > 1]:
                runs += [(loss, variant, ratio, s) for s in range(seeds)]
    return runs


def run(cfg: RankingConfig, pass_command: list[str], json_path: str | Path, resume: bool = False, rerun=(),
        progress: bool = True) -> dict[str, Any]:
    """Run every cell of :func:`plan` not yet in the record at ``json_path`` (all of them unless ``resume`` or
    ``rerun``), writing the record after each; returns it."""
    task = ranking_task(cfg)
    if progress:
        print(task.summary(), flush=True)
    sweep = Sweep(json_path, {"argv": pass_command, "config": asdict(cfg), "task": task_facts(task)}, pass_command,
                  rows="rows", wall="elapsed", method_key="variant", resume=resume, rerun=rerun)
    done = {(r["loss"], r["variant"], r["ratio"], r["seed"]) for r in sweep.rows}
    cells = [c for c in plan(cfg) if c not in done]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process on one thread, whatever else shares the machine
    try:
        for i, (loss, variant, ratio, seed) in enumerate(cells):
            r = run_one(task, variant, ratio, seed, loss, cfg)
            sweep.add(r)
            if progress:
                msg = r.get("error") or (f"nDCG@10 {r['ndcg']:.4f}  model ratio {r['model_ratio']:.2f}x  "
                                         f"{r['epochs']} epochs  {r['seconds']:.0f} s")
                print(f"{time.perf_counter() - sweep.start:6.0f}s [{i + 1}/{len(cells)}] {loss} {variant} {ratio}x "
                      f"seed {seed}: {msg}", flush=True)
        return sweep.save()  # while the cells' one thread is set: the record's environment is theirs
    finally:
        torch.set_num_threads(threads)


def complete(record: dict[str, Any], cfg: RankingConfig) -> dict[str, Any]:
    """A record written before its config and the task's facts were stored, with them filled in: ``cfg`` (as its
    commands state it) and the facts of the data set it read (computed again: the data's, not the run's)."""
    if "config" in record and "task" in record:
        return record
    return {"config": asdict(cfg), "task": task_facts(ranking_task(cfg)), **record}


# ---- the page ---------------------------------------------------------------------------------------------

def grouped(rows: list[dict], loss: str) -> dict[tuple[str, int], list[dict]]:
    """(variant, ratio) -> the rows of ``loss``."""
    return group_by([r for r in rows if r["loss"] == loss], "variant", "ratio")


def ref_ndcg(rows: list[dict], loss: str) -> float:
    """The reference's mean test nDCG@10 for ``loss``."""
    return mean([r["ndcg"] for r in rows if r["loss"] == loss and r["variant"] == REFERENCE])


def summary_table(rows: list[dict], loss: str, ratios: list[int]) -> str:
    """method x input-table ratio: nDCG@10 (mean ± std) and relative loss."""
    g, ref = grouped(rows, loss), ref_ndcg(rows, loss)
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["loss"] == loss and r["variant"] != REFERENCE))
    out = [["method"] + [f"{q}x" for q in ratios if q > 1]]
    for v in variants:
        cells = []
        for q in [q for q in ratios if q > 1]:
            rs = g.get((v, q), [])
            if not rs:
                cells.append("")
            elif "error" in rs[0]:
                cells.append("skipped (TT rank cap)" if rs[0]["error"].startswith("skipped") else "cannot reach")
            else:
                x = [r["ndcg"] for r in rs]
                cells.append(f"{mean_std(x)} ({relative_loss(mean(x), ref):+.1f}%)")
        out.append([LABELS.get(v, v)] + cells)
    return markdown_table(out)


def detail_table(rows: list[dict], loss: str) -> str:
    """Every (method, ratio) cell with its hyperparameters, sizes and metrics."""
    g, ref = grouped(rows, loss), ref_ndcg(rows, loss)
    out = [["method", "target ratio", "hyperparameters", "input-table params", "input-table ratio",
            "whole-model ratio", "seeds", "test nDCG@10", "rel. nDCG loss", "test HR@10", "valid nDCG@10",
            "best epoch", "seconds / run"]]
    for (v, q), rs in g.items():
        if "error" in rs[0]:
            out.append([LABELS.get(v, v), f"{q}x", *["—"] * 5, rs[0]["error"], *[""] * 5])
            continue
        r0 = rs[0]
        hyper = ", ".join(f"{k}={x:g}" if isinstance(x, float) else f"{k}={x}" for k, x in r0.get("hyper", {}).items())
        out.append([LABELS.get(v, v), f"{q}x", hyper, f"{r0['emb_params']:,}", f"{r0['emb_ratio']:.1f}x",
                    f"{r0['model_ratio']:.2f}x", str(len(rs)), mean_std([r["ndcg"] for r in rs]),
                    f"{relative_loss(mean([r['ndcg'] for r in rs]), ref):+.1f}%", mean_std([r["hit"] for r in rs]),
                    mean_std([r["valid_ndcg"] for r in rs]), ",".join(str(r["best_epoch"]) for r in rs),
                    f"{np.mean([r['seconds'] for r in rs]):.0f}"])
    return markdown_table(out)


def mean_loss(rows: list[dict], loss: str) -> dict[tuple[str, int], tuple[float, float, float]]:
    """(variant, ratio) -> (mean relative loss %, its std over seeds, mean whole-model ratio), reached only."""
    ref = ref_ndcg(rows, loss)
    out = {}
    for key, rs in grouped(rows, loss).items():
        if key[0] != REFERENCE and "error" not in rs[0]:
            losses = [relative_loss(r["ndcg"], ref) for r in rs]
            out[key] = (mean(losses), float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0,
                        mean([r["model_ratio"] for r in rs]))
    return out


STYLE = {"memcom": ("tab:red", "o"), "memcom_bias": ("darkred", "s"), "hashing": ("tab:blue", "v"),
         "double_hashing": ("tab:cyan", "^"), "freq_double_hashing": ("navy", "<"), "qr_mult": ("tab:green", ">"),
         "qr_concat": ("olive", "D"), "truncate": ("tab:gray", "x"), "low_dim": ("tab:orange", "P"),
         "factorized": ("tab:purple", "*"), "mixed_dim": ("tab:pink", "h"), "tt": ("tab:brown", "d")}


def plot(rows: list[dict], losses: list[str], path: str | Path) -> None:
    """Per loss: relative nDCG loss vs whole-model ratio (the paper's axis) and vs input-table ratio."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(losses), 2, figsize=(14, 5.5 * len(losses)), squeeze=False)
    variants = list(dict.fromkeys(r["variant"] for r in rows if r["variant"] != REFERENCE))
    for row, loss in zip(axes, losses):
        ml = mean_loss(rows, loss)
        for ax, x, xlabel in zip(row, ("model_ratio", "emb_ratio"), ("compression ratio over all model parameters",
                                                                     "compression ratio of the input embedding table")):
            for v in variants:
                cells = sorted((q, rs) for (w, q), rs in grouped(rows, loss).items() if w == v and (w, q) in ml)
                xs = [mean([r[x] for r in rs]) for _, rs in cells]
                ys = [ml[v, q][0] for q, _ in cells]
                es = [ml[v, q][1] for q, _ in cells]
                if cells and cells[0][0] == 2:  # a line that starts at 2x starts from the reference (1x, 0%)
                    xs, ys, es = [1.0] + xs, [0.0] + ys, [0.0] + es
                if xs:
                    color, marker = STYLE.get(v, ("black", "o"))
                    bold = v.startswith("memcom")
                    ax.errorbar(xs, ys, yerr=es, label=LABELS.get(v, v), color=color,
                                marker=marker, ms=5 if bold else 4, lw=2.2 if bold else 1, capsize=2)
            ax.axhline(0, color="black", lw=1)
            ax.axhline(PAPER_LOSS_16, color="gray", lw=0.8, ls="--",
                       label=f"{PAPER_LOSS_16}% (the paper's MEmCom loss at 16x)")
            if x == "emb_ratio":
                ax.set_xscale("log", base=2)
                ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([1, 2, 4, 8, 16, 32, 64]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda q, _: f"{q:g}x"))
            ax.set_xlabel(xlabel)
            ax.set_ylabel("relative nDCG@10 loss vs uncompressed (%)")
            name = "pointwise (softmax)" if loss == "softmax" else "pairwise (RankNet)"
            ax.set_title(f"MovieLens-1M, {name}; uncompressed nDCG@10 {ref_ndcg(rows, loss):.4f}")
            ax.grid(alpha=0.3, which="both")
        row[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def findings(rows: list[dict], loss: str, ratios: list[int]) -> str:
    """Computed statements: MEmCom at 16x against the paper's loss, and MEmCom's place among the methods."""
    ml = mean_loss(rows, loss)
    refs = [r["ndcg"] for r in rows if r["loss"] == loss and r["variant"] == REFERENCE]
    lines = [f"- Uncompressed: nDCG@10 {mean_std(refs)} ({len(refs)} seeds; the seed spread is "
             f"{100 * np.std(refs, ddof=1) / np.mean(refs):.1f}% of the mean)." if len(refs) > 1 else
             f"- Uncompressed: nDCG@10 {refs[0]:.4f} (1 seed)."]
    for v in ("memcom", "memcom_bias"):
        if (v, 16) in ml:
            m, sd, q = ml[v, 16]
            lines.append(f"- {LABELS[v]} at 16x on the input table ({q:.2f}x over the whole model): "
                         f"{m:+.1f}% ± {sd:.1f}% relative nDCG@10 loss (the paper: ~{PAPER_LOSS_16}% at 16x on "
                         "MovieLens).")
    for q in [q for q in ratios if q > 1]:
        here = {v: x for (v, r), x in ml.items() if r == q}
        if not here or "memcom" not in here:
            continue
        order = sorted(here, key=lambda v: here[v][0])
        best = order[0]
        mem = min(("memcom", "memcom_bias"), key=lambda v: here.get(v, (np.inf,))[0])
        better = [v for v in order if not v.startswith("memcom") and here[v][0] < here[mem][0]]
        missing = [v for (v, r), rs in grouped(rows, loss).items() if r == q and "error" in rs[0]]
        text = (f"- {q}x: best {LABELS.get(best, best)} ({here[best][0]:+.1f}%); best MEmCom variant "
                f"{here[mem][0]:+.1f}% ± {here[mem][1]:.1f}%, place {order.index(mem) + 1} of {len(order)}")
        text += (f"; ahead of it: " + ", ".join(f"{LABELS.get(v, v)} ({here[v][0]:+.1f}%)" for v in better)
                 if better else "; no other method ahead of it")
        if missing:
            text += f"; not run at {q}x (cannot reach it, or TT rank cap): " + ", ".join(missing)
        lines.append(text + ".")
    return "\n".join(lines) + "\n"


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _ratio_bound(cfg: RankingConfig, task: dict[str, Any]) -> float:
    """The whole-model ratio of an input table of no parameters: (input + output layer) / output layer."""
    n = task["num_items"]
    return 1 + (n + 1) * cfg.dim / (cfg.dim * n + n)


def _protocol(cfg: RankingConfig, task: dict[str, Any]) -> str:
    from saec.data.ranking import EXAMPLES_PER_USER

    n, v, d = task["num_items"], task["num_items"] + 1, cfg.dim
    words = {5: "five"}
    bound = _ratio_bound(cfg, task)
    return f"""**Task** (`saec.data.ranking`, MEmCom §5.2). Every MovieLens-1M rating is an interaction. Per user,
sorted by time (ties keep the file order): the last {cfg.num_test} interactions are test labels, the one before is the validation
label, and the last {EXAMPLES_PER_USER} interactions before that are training labels ("up to {words.get(EXAMPLES_PER_USER, EXAMPLES_PER_USER)} training examples per
user"). Each example's input is the {task['history_len']} most recent kept items the user rated strictly before the label
(left-padded with a pad id). Items with fewer than {cfg.min_count} ratings in the training parts (everything before a
user's validation label) are dropped from inputs and labels; the {n:,} kept items are both the input
vocabulary (+1 pad id) and the softmax output, frequency-ranked (id 0 = most rated), so `i mod m` keeps the
popular items in their own rows. No example contains its own label or anything after it, and no training
example contains a validation or test interaction; across users it is leave-last-out, not a global time
cut.

**Network** (`saec.models.ranking`, §5 Code 1 without the Dense layer after pooling, as §5.2 says):
embedding (dim {d}{', as the paper' if d == PAPER_DIM else ''}) -> mean over the non-pad positions -> linear layer to {n:,} logits. The
input table is `nn.Embedding` for the reference and `make_embedding(method, {v}, {d}, counts=training
counts, budget_params={v} * {d} // ratio, ...)` otherwise (the registry sets the method's size knob to
the largest table within the budget); everything else is identical. Tables start at N(0, {INIT_STD:g}^2) (the
registry's default; the reference is drawn the same way). **Pointwise**: softmax cross-entropy.
**Pairwise (RankNet)**: the same network used as a siamese scorer `s(h, i) = u(h) . W_i + b_i`; each
training example gives {cfg.negatives} pairs (label item, an item drawn uniformly from the others) and the RankNet loss
`-log sigmoid(s_pos - s_neg)`; ranking uses the scores of all items, as for the pointwise model.

**Training and evaluation** (`saec.train.ranking`): Adagrad (lr {cfg.lr:g}{f' pointwise, {cfg.ranknet_lr:g} RankNet' if cfg.ranknet_lr != cfg.lr else ''}, picked on the reference's validation
nDCG@10 in a one-seed check that is not part of this record), batch {cfg.batch_size}, up to {cfg.epochs} epochs, early stopping on validation nDCG@10 with
patience {cfg.patience} (the best epoch is kept). The same settings for every method. nDCG@10 of the single held-out
item over the full ranking of all {n:,} items, with the items of the example's input history removed
(a user rates a movie once); ties count against the model. The seed sets the table's and the output
layer's initialisation, the shuffles and the negatives.

**Ratios.** *Input-table ratio* = {v} x {d} / the method's input-table parameters (the budget's target is
the nominal ratio; the realised one is in the tables). *Whole-model ratio* = all parameters of the
uncompressed network / all parameters of the compressed one (the output layer, {d} x {n:,} + {n:,}, is never
compressed), which is the paper's x axis. Because our output layer is as large as the input table, the
whole-model ratio can never exceed {bound:.2g}x here.
"""


LEGACY_HISTORY = """The passes (listed above): the first stopped at `double_hashing` on a bug in this script (it passed the
registry's pinned `num_frequent` back to `make_embedding`; tables are now built from the budget directly,
which builds the same tables for the methods already run); the second resumed it without the benchmark
lock, which another benchmark held; the third added a second seed pointwise; the later passes added TT after
TT's row computation got faster (shared prefixes): the rows the first passes had written as "skipped (TT rank
cap)" were removed from the JSON by hand, since `--resume` counts a skipped row as done, and the new rows were
put in their place (`--rerun` now re-runs chosen cells without editing the JSON).
"""
"""How the committed record was made, from before records carried their environment and cells could be re-run."""


def _reading(rows: list[dict], losses: list[str], cfg: RankingConfig, task: dict[str, Any]) -> str:
    """What the sweep shows, every number from the record."""
    out = []
    ml = {loss: mean_loss(rows, loss) for loss in losses}
    p = ml.get("softmax", {})
    two = [s for loss in losses for (v, q), (m, s, _) in ml[loss].items() if len(grouped(rows, loss)[v, q]) == 2]
    lead = ("The bullets below are computed from the record" + (f"; the seed spread (std) of the two-seed cells "
                                                                 f"is up to {max(two):.1f} points of relative loss"
                                                                 if two else "") + ".\n")
    if "memcom" in {v for v, _ in p} and ("memcom", 16) in p:
        m16 = {loss: ml[loss].get(("memcom", 16)) for loss in losses}
        at16 = {v: x for (v, q), x in p.items() if q == 16}
        best16 = min(at16, key=lambda v: at16[v][0])
        first = min(q for v, q in p if v == "memcom")
        text = (f"- **The paper's ~{PAPER_LOSS_16}% loss at 16x {'does not hold' if m16['softmax'][0] > 2 * PAPER_LOSS_16 else 'holds'} "
                f"here.** MEmCom loses about {m16['softmax'][0]:.0f}% of the uncompressed nDCG@10 at\n  16x on the input "
                f"table ({m16['softmax'][2]:.2f}x over the whole model) pointwise"
                + (f", about {m16['ranknet'][0]:.0f}% with RankNet" if m16.get("ranknet") else "")
                + (f". No method comes near\n  {PAPER_LOSS_16}% at 16x; the smallest loss there is"
                   if at16[best16][0] > 2 * PAPER_LOSS_16 else ". The smallest loss at 16x is")
                + f" {PAPER_NAMES[best16] + ' ' if best16 in PAPER_NAMES else ''}(`{best16}`) at about "
                f"{at16[best16][0]:.0f}%. Even at {first}x MEmCom\n  loses about {p['memcom', first][0]:.0f}%.\n")
        out.append(text)
        places, vs_hash, beaten = [], [], {}
        for q in sorted({q for _, q in p}):
            here = {v: x[0] for (v, r), x in p.items() if r == q}
            if "memcom" not in here:
                continue
            mem = min(here.get("memcom", np.inf), here.get("memcom_bias", np.inf))
            order = sorted(here.values())
            places.append((order.index(mem) + 1, len(order)))
            if "hashing" in here:
                vs_hash.append(f"{q}x {here['memcom']:+.1f}% vs {here['hashing']:+.1f}%")
            for v, x in here.items():
                if not v.startswith("memcom"):
                    beaten.setdefault(v, []).append(mem - x)
        always = {v: d for v, d in beaten.items() if min(d) > 0}
        lower = all(pl > n / 2 for pl, n in places)
        text = (f"- **\"MEmCom ahead of the others at every ratio\" does not hold here.** Pointwise, MEmCom places "
                f"{min(pl for pl, _ in places)}-{max(pl for pl, _ in places)} of {max(n for _, n in places)}"
                + (" (the lower half at every ratio)" if lower else "") + ". Against naive hashing (MEmCom vs hashing): "
                + ", ".join(vs_hash) + ".")
        if always:
            gaps = [x for d in always.values() for x in d]
            text += (f" {and_list(f'`{v}`' for v in always)} beat it at every ratio they reach, by "
                     f"{min(gaps):.0f} to {max(gaps):.0f} points.")
        top = max(q for v, q in p if v == "memcom")
        bucket = next((r["hyper"]["num_buckets"] for r in rows if r["loss"] == "softmax" and r["variant"] == "memcom"
                       and r["ratio"] == top and "hyper" in r and "num_buckets" in r["hyper"]), None)
        if bucket:
            text += f" At {top}x, ~{task['num_items'] / bucket:.0f} items share a row of MEmCom's `U`."
        if "ranknet" in ml and ml["ranknet"]:
            rn = ml["ranknet"]
            rplaces = []
            for q in sorted({q for _, q in rn}):
                here = {v: x[0] for (v, r), x in rn.items() if r == q}
                if "memcom" in here:
                    mem = min(here.get("memcom", np.inf), here.get("memcom_bias", np.inf))
                    rplaces.append(sorted(here.values()).index(mem) + 1)
            methods = len({v for v, _ in rn})
            text += (f" With RankNet ({methods} methods) MEmCom places {_ordinal(min(rplaces))} to "
                     f"{_ordinal(max(rplaces))}.")
        out.append(text + "\n")
        diffs = [(loss, q, ml[loss]["memcom", q][0] - ml[loss]["memcom_bias", q][0]) for loss in losses
                 for q in sorted({q for _, q in ml[loss]}) if ("memcom", q) in ml[loss] and ("memcom_bias", q) in ml[loss]]
        if diffs:
            signs = {d > 0 for _, _, d in diffs}
            out.append(f"- **With and without bias**: the two variants differ by at most "
                       f"{max(abs(d) for _, _, d in diffs):.1f} points of relative loss, "
                       + ("with no consistent sign across ratios or losses.\n" if len(signs) > 1 else
                          f"always {'with' if signs == {True} else 'without'} bias ahead.\n"))
    two_x = {v: p[v, 2][0] for v in ("factorized", "mixed_dim") if (v, 2) in p}
    if two_x:
        worse = [v for v in two_x if (v, 4) in p and p[v, 2][0] > p[v, 4][0]]
        out.append(f"- **{and_list(f'`{v}`' for v in two_x)} lose {min(two_x.values()):.0f}-{max(two_x.values()):.0f}% "
                   "already at 2x**" + (f"; {and_list(f'`{v}`' for v in worse)} {'is' if len(worse) == 1 else 'are'} "
                                         "worse at 2x than at 4x: that is not a capacity limit but the product "
                                         "parameterisation training worse under the shared learning rate (tuned on "
                                         "the uncompressed model)" if worse else "") + ".")
        tt = {q: x[0] for (v, q), x in p.items() if v == "tt"}
        if tt:
            rank = {q: sorted({v: x[0] for (v, r), x in p.items() if r == q}.values()) for q in tt}
            worst = [q for q in tt if tt[q] == rank[q][-1]]
            best = [q for q in tt if tt[q] == rank[q][0]]
            epochs = [r["best_epoch"] for r in rows if r["loss"] == "softmax" and r["variant"] == "tt" and "error" not in r]
            out[-1] += (f" TT loses {min(tt.values()):.0f}-{max(tt.values()):.0f}% from {min(tt)}x to {max(tt)}x"
                        + (f": the worst method at {and_list(f'{q}x' for q in sorted(worst))}" if worst else "")
                        + (f", the best at {and_list(f'{q}x' for q in sorted(best))}" if best else "")
                        + f" (its best epoch is {min(epochs)}-{max(epochs)}).")
        out[-1] += "\n"
    refs = [r["best_epoch"] for r in rows if r["variant"] == REFERENCE]
    out.append(f"- **Why it may differ from the paper** (hypotheses, not tested here): (1) scale: "
               f"{task['train_examples']:,} training examples\n  against the paper's {PAPER_TRAIN}; the uncompressed "
               f"model's best epoch is {min(refs)}-{max(refs)}, so the rare items' rows are barely trained\n"
               "  in any method. (2) MEmCom starts every multiplier at 1, so a rare item starts as an exact copy of its\n"
               "  popular bucket-mate (`i mod m`); with a handful of training examples its multiplier moves little, "
               "and the\n  average-pooled history then carries the popular item's signal. Truncate-rare maps all rare "
               "items to one\n  shared row, which carries no item-specific (and so no misleading) signal; that would "
               "explain why the\n  \"dumb\" baseline wins and why MEmCom behaves like naive hashing until few rows "
               f"remain. (3) Our output\n  layer is as large as the input table, so whole-model ratios stay below "
               f"{_ratio_bound(cfg, task):.2g}x, and the paper's plots are\n  against that axis. (4) One learning rate "
               "for all methods.\n")
    out.append(f"- `low_dim` keeps its {cfg.dim}-wide output layer, whose weights on the zero-padded inputs are dead "
               "but counted; its\n  whole-model ratio is therefore understated (the paper's variant shrinks the "
               "output layer too).\n")
    return lead + "\n" + "".join(out)


def _deviations(rows: list[dict], cfg: RankingConfig, task: dict[str, Any]) -> str:
    from saec.nn.mixed_dim import MixedDimEmbedding

    refs = [r for r in rows if r["variant"] == REFERENCE]
    blocks = inspect.signature(MixedDimEmbedding.__init__).parameters["num_blocks"].default
    return f"""- **Data set and scale.** MovieLens-1M ({task['train_examples']:,} training examples, {task['num_items']:,} items) instead of the paper's
  MovieLens (Table 2: "25M ratings", {PAPER_TRAIN} training samples, a 10K input and 5K output vocabulary). With {task['train_examples']:,} examples
  the {refs[0]['model_params'] / 1e6:.2f}M-parameter reference has its best epoch at {min(r['best_epoch'] for r in refs)}-{max(r['best_epoch'] for r in refs)}, and compression acts partly as a regulariser;
  numbers are not comparable one to one with Fig. 2(a).
- **Held-out protocol and popularity threshold** are ours (the paper does not give them): leave-last-out,
  >= {cfg.min_count} training ratings, one vocabulary for input and output.
- **Sizing.** The paper picks `m` from {{vocabulary, 100K, 50K, 25K, 10K, 5K, 1K}} and dimensions 128 ... 4;
  here every method is sized to the same parameter budget per ratio by the registry, so all methods are
  compared at (nearly) the same input-table size. Methods whose smallest table exceeds a budget are marked
  "cannot reach".
- **"Reduce embedding dim"** is `low_dim` with `projection="pad"`: the table stores r < {cfg.dim} numbers per item
  and is zero-padded to {cfg.dim}, so the output layer keeps its {cfg.dim} x {task['num_items']:,} weights (the paper's variant shrinks
  the whole network's dimension, which also shrinks its output layer and gives it larger whole-model ratios).
- **Mixed dimensions** use the registry's default {blocks} popularity blocks (budget sets alpha); the paper used 1
  block, which equals "factorized".
- **Optimizer**: Adagrad lr {cfg.lr:g} (the library's default optimizer; the paper's Keras optimizer is not given).
- **RankNet** is run on MovieLens (the paper's Fig. 3 uses the proprietary Arcade data), with uniform
  negatives, and on a subset of the methods (see its table) to fit the time budget.
"""


def seed_note(rows: list[dict], loss: str) -> str:
    """How many seeds each method's cells have."""
    parts = []
    for v in dict.fromkeys(r["variant"] for r in rows if r["loss"] == loss):
        counts: dict[int, list[str]] = {}
        for (w, q), rs in grouped(rows, loss).items():
            if w == v and "error" not in rs[0]:
                counts.setdefault(len(rs), []).append(f"{q}x")
        parts.append(f"{LABELS.get(v, v)} " + ", ".join(f"{n} at {' '.join(qs)}" for n, qs in sorted(counts.items(),
                                                                                                 reverse=True)))
    return "\nSeeds: " + "; ".join(parts) + ".\n"


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page of a :func:`run` record (one that holds its config and task facts: see :func:`complete`) and its
    plot."""
    cfg, task, rows = recorded_config(RankingConfig, record["config"]), record["task"], record["rows"]
    commands = record.get("commands") or [record["argv"]]
    losses = [loss for loss in LOSSES if any(r["loss"] == loss for r in rows)]
    plot(rows, losses, png_path)
    out = [header("MEmCom §5.2 on MovieLens-1M: nDCG@10 vs compression ratio", commands[-1],
                  recorded_environment(record.get("environment")), checksums(record))]
    if len(commands) > 1:
        out.append("The runs were made in passes (the last one resumes from the JSON the earlier ones wrote):\n")
        out.append("```\n" + "\n".join("(a pass made before passes were logged)" if c is None else shlex.join(c)
                                       for c in commands) + "\n```\n")
    out.append(f"Total run time {record['elapsed'] / 60:.1f} min (one process, `torch.set_num_threads(1)`, on a machine "
               f"shared with other jobs), peak RSS {peak_rss_text(record.get('peak_rss_mib'))}. Only nDCG is reported, "
               "which does not depend on the load.\n")
    out.append("```\n" + task["summary"] + "\n```\n")
    out.append(_protocol(cfg, task))
    ref_rows = {loss: [r for r in rows if r["loss"] == loss and r["variant"] == REFERENCE] for loss in losses}
    out.append("Reference (uncompressed) test nDCG@10: " + "; ".join(
        f"{loss} {mean_std([r['ndcg'] for r in rs])} over {len(rs)} seed(s) ({rs[0]['model_params']:,} parameters, "
        f"{rs[0]['emb_params']:,} in the input table)" for loss, rs in ref_rows.items())
               + f". Ranking by training popularity (no model, history removed): {task['popularity_ndcg']:.4f}.\n")
    out.append(f"![relative nDCG loss vs compression ratio]({Path(png_path).name})\n")
    out.append("Left: against the ratio over all parameters (the paper's axis); right: against the input-table "
               "ratio. Error bars: std over seeds where there are two.\n")
    for loss in losses:
        name = "Pointwise (softmax), MEmCom Fig. 2" if loss == "softmax" else "Pairwise (RankNet), MEmCom Fig. 3"
        out.append(f"## {name}\n")
        ratios = sorted({r["ratio"] for r in rows if r["loss"] == loss})
        out.append(findings(rows, loss, ratios))
        out.append("Test nDCG@10 (mean ± std over seeds) and relative loss vs the uncompressed reference, by "
                   "input-table compression ratio:\n")
        out.append(summary_table(rows, loss, ratios))
        out.append(seed_note(rows, loss))
        out.append("\nEvery run:\n")
        out.append(detail_table(rows, loss))
    out.append("## Reading of the run\n")
    if record.get("predates_logging", "environment" not in record):  # made before records carried their environment
        out.append(LEGACY_HISTORY)
    out.append(_reading(rows, losses, cfg, task))
    out.append("## Deviations from the paper\n")
    out.append(_deviations(rows, cfg, task))
    write_text(md_path, "\n".join(out))


__all__ = ["RankingConfig", "VARIANTS", "complete", "detail_table", "findings", "mean_loss", "plan", "plot",
           "ranking_task", "reference_table", "render", "run", "run_one", "summary_table", "task_facts"]
