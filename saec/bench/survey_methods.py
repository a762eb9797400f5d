"""Every registered method on MovieLens-1M at one budget: the sanity check of issue 12 before the full grid.

The survey (``../shared/papers/embedding-compression-survey.txt`` §6) calls for one benchmark across every family;
this is its first row. :func:`run` trains the DSSM once uncompressed; each post-training method
(:data:`saec.nn.registry.POST_TRAINING`) compresses that trained model with :func:`saec.compress` at
``1 / ratio`` of each large table's bytes, and each method trained compressed
(:data:`saec.nn.registry.FROM_SCRATCH`) is built at that budget by :func:`saec.models.build_compressed_model` and
trained the same epochs; a post-training method with a training form of its own
(:attr:`saec.nn.registry.Method.trained_with`: ``binary`` of ``binary_ste``) trains that form the same epochs, with the
structure its stored form gets at the budget (:func:`saec.nn.registry.training_structure`), then compresses it (and retrains the stored model as many epochs if the method does, as PEP; :attr:`~saec.nn.registry.Method.retrain`)
(the training forms of no size of their own, full-size tables, have no row of their own; MEmCom,
a method in its own right, has). Fields of fewer than 1,000 features stay full in both. A method whose size is fixed
(float16, row-wise integers) and cannot reach the budget is run at its own size and says so. The test split's AUC
and log loss, the large tables' bytes and the ratio are recorded; :func:`render` writes the page from the record.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saec.errors import SaecError


@dataclass(frozen=True)
class SurveyConfig:
    """``ratio``: each large table at most its full bytes / ratio; ``epochs`` of training (the uncompressed model
    and every from-scratch one); the DSSM's ``hidden`` widths; Saec's ``k`` comes from the budget."""

    dataset: str = "movielens-1m"
    ratio: float = 16.0
    epochs: int = 1
    hidden: tuple[int, ...] = (256, 128)
    seed: int = 0
    methods: tuple[str, ...] | None = None  # None: every registered method


def _large_bytes(model: Any, names: list[str]) -> int:
    return int(sum(v for n, v in model.embeddings.table_bytes().items() if n in names))


def _post_training(trained: Any, method: str, counts: dict[str, Any], ratio: float, large: list[str],
                   row: dict[str, Any]) -> Any:
    """``trained`` with its large tables compressed by ``method`` at 1/``ratio`` of their float bytes; a method of
    fixed size (float16, row-wise integers, binary) that cannot reach that runs at its own size, noted in ``row``."""
    import saec
    from saec.nn.registry import METHODS

    tables = [f"embeddings.tables.{n}" for n in large]
    # Saec clusters every large table here (eligibility 1: k at most its rows), as the budget asks
    hyper = {"eligibility": 1.0} if method.startswith("saec") else {}
    try:
        return saec.compress(trained, method, counts=counts, ratio=ratio, tables=tables, **hyper)[0]
    except SaecError as e:
        if METHODS[method].knobs:
            raise
        row["fixed_size"] = str(e)[:200]
        return saec.compress(trained, method, counts=counts, tables=tables)[0]


def run(cfg: SurveyConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Train and measure every method; the raw record as plain data."""
    import torch

    import saec
    from saec.bench.report import environment, peak_rss_mib
    from saec.data.movielens import movielens_ctr
    from saec.models import build_compressed_model, build_model, large_fields
    from saec.nn.registry import FROM_SCRATCH, METHODS, TRAINING_FORMS
    from saec.train.loop import TrainConfig, evaluate, make_optimizer, train_epoch

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    task = movielens_ctr(cfg.dataset)
    sizes = {n: len(v) for n, v in task.vocabs.items()}
    large = list(large_fields(task.schema, task.vocabs))
    record: dict[str, Any] = {"command": command, "config": asdict(cfg), "environment": environment(),
                              "large_fields": {n: sizes[n] for n in large}, "rows": []}

    def train(model: Any) -> float:
        t = time.perf_counter()
        opt = make_optimizer(model, TrainConfig())
        for epoch in range(cfg.epochs):
            train_epoch(model, task.train, opt, seed=cfg.seed + epoch, progress=False)
        model.eval()
        return time.perf_counter() - t

    full = build_model("dssm", task.schema, sizes, hidden=cfg.hidden, seed=cfg.seed)
    full_s = train(full)
    full_bytes = _large_bytes(full, large)
    counts = {f"embeddings.tables.{n}": v.counts for n, v in task.vocabs.items()}
    # a training form with no size of its own (binary_ste, pep_train, dpq_train) is trained in its stored method's row
    every = tuple(m for m in METHODS if not (m in TRAINING_FORMS and not METHODS[m].knobs))
    for method in cfg.methods or every:
        row: dict[str, Any] = {"method": method, "trained": "uncompressed" if method == "full" else
                               "compressed" if method in FROM_SCRATCH else "post-training"}
        t = time.perf_counter()
        try:
            if method == "full":
                model, row["train_s"] = full, full_s
            elif METHODS[method].trained_with:  # train its training form (binary_ste, ...), then store it
                row["trained"] = f"{METHODS[method].trained_with}, then post-training"
                form = build_compressed_model("dssm", task.schema, task.vocabs, method, ratio=cfg.ratio,
                                              budget="bytes", hidden=cfg.hidden, seed=cfg.seed)
                row["train_s"] = train(form)
                t = time.perf_counter()
                model = _post_training(form, method, counts, cfg.ratio, large, row)
                row["compress_s"] = time.perf_counter() - t
                if METHODS[method].retrain:  # PEP: the stored (pruned) model retrained, its mask fixed
                    row["trained"] += f", retrained {cfg.epochs} epoch(s)"
                    row["retrain_s"] = train(model)
            elif method in FROM_SCRATCH:
                model = build_compressed_model("dssm", task.schema, task.vocabs, method, ratio=cfg.ratio,
                                               budget="bytes", hidden=cfg.hidden, seed=cfg.seed)
                row["train_s"] = train(model)
            else:
                model = _post_training(full, method, counts, cfg.ratio, large, row)
                row["compress_s"] = time.perf_counter() - t
        except SaecError as e:
            row["error"] = str(e)[:300]
            record["rows"].append(row)
            if progress:
                print(f"{method:>20}: {row['error'][:100]}", flush=True)
            continue
        row.update(evaluate(model, task.test))
        row["table_bytes"] = _large_bytes(model, large)
        row["ratio"] = full_bytes / row["table_bytes"]
        record["rows"].append(row)
        if progress:
            print(f"{method:>20}: AUC {row['auc']:.4f}, {row['ratio']:.1f}x", flush=True)
    record["wall_s"] = time.perf_counter() - start
    record["peak_rss_mib"] = peak_rss_mib()
    return record


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page (and its plot) of a :func:`run` record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.bench.report import checksums, header, markdown_table, save_figure
    from saec.io import write_text

    cfg = record["config"]
    env = {**record["environment"], "peak RSS": f"{record['peak_rss_mib']:,.0f} MiB",
           "wall time": f"{record['wall_s'] / 60:.1f} min"}
    text = header(f"Every method at 1/{cfg['ratio']:g} of the embedding bytes ({cfg['dataset']})", record["command"],
                  env, checksums(record))
    fields = ", ".join(f"{n} ({v:,})" for n, v in record["large_fields"].items())
    text += (f"\nThe DSSM (MLP {tuple(cfg['hidden'])}) on {cfg['dataset']}; the large fields ({fields}; the others "
             f"stay full) take each method at most 1/{cfg['ratio']:g} of their float32 bytes. Post-training methods "
             f"compress the uncompressed model trained {cfg['epochs']} epoch(s) (`saec.compress`); the others are "
             f"trained compressed for the same epochs (`build_compressed_model`), and a post-training method with a "
             f"training form of its own (e.g. `binary` of `binary_ste`) compresses that form trained the same epochs "
             f"(its `trained` column names the form; seconds are its training's). `ratio` is the large tables' "
             f"full bytes over their bytes in the method. A method of fixed size that cannot reach the budget runs "
             f"at its own size (marked). Test AUC and log loss; one seed, one run each: a sanity check, not the "
             f"benchmark grid.\n\n")
    rows = [r for r in record["rows"] if "error" not in r]
    hashing = next((r for r in rows if r["method"] == "hashing"), None)
    table = [["method", "trained", "test AUC", "AUC - hashing", "log loss", "large tables", "ratio", "seconds"]]
    for r in sorted(rows, key=lambda r: -r["auc"]):
        table.append([r["method"] + (" (fixed size)" if "fixed_size" in r else ""), r["trained"], f"{r['auc']:.4f}",
                      f"{r['auc'] - hashing['auc']:+.4f}" if hashing else "-", f"{r['logloss']:.4f}",
                      f"{r['table_bytes'] / 2**10:,.1f} KiB", f"{r['ratio']:.1f}x",
                      f"{r.get('train_s', r.get('compress_s', 0.0)):.1f}"])
    text += markdown_table(table)
    failed = [r for r in record["rows"] if "error" in r]
    text += "\n## Findings\n\n"
    if hashing:
        at_budget = [r for r in rows if "fixed_size" not in r and r["method"] not in ("full", "hashing")]
        below = [r["method"] for r in at_budget if r["auc"] < hashing["auc"] - 0.005]
        text += (f"- At the budget, {len(at_budget) - len(below)} of {len(at_budget)} compressed methods are within "
                 f"0.005 AUC of Weinberger hashing or above it; clearly below it (by more than 0.005): "
                 f"{', '.join(below) if below else 'none'}.\n")
    for r in failed:
        text += f"- {r['method']} did not run at this budget: {r['error']}\n"
    text += "\n![AUC by method](" + Path(png_path).name + ")\n"
    fig, ax = plt.subplots(figsize=(9, 4))
    order = sorted(rows, key=lambda r: -r["auc"])
    ax.bar(range(len(order)), [r["auc"] for r in order],
           color=["tab:gray" if r["method"] == "full" else "tab:orange" if r["method"] == "hashing" else "tab:blue"
                  for r in order])
    ax.set_xticks(range(len(order)), [r["method"] for r in order], rotation=45, ha="right")
    lo = min(r["auc"] for r in order)
    ax.set_ylim(lo - 0.01, max(r["auc"] for r in order) + 0.005)
    ax.set_ylabel("test AUC")
    ax.set_title(f"1/{cfg['ratio']:g} of the embedding bytes ({cfg['dataset']})")
    fig.tight_layout()
    save_figure(fig, png_path)
    write_text(md_path, text)


__all__ = ["SurveyConfig", "render", "run"]
