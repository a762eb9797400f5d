"""Saec on MovieLens-1M CTR: test AUC / log loss against the compression ratio for a sweep of k.

The full (uncompressed) model is trained once per architecture (static setting, early stopping on valid); every
compression starts from that same model, so the sweep differs only in what Saec does:

* for each k and seed: compress (field-aware k-means, k-means++, fast clustering), evaluate (before
  retraining), then retrain one epoch (:func:`saec.pipeline.flow.retrain`) with each gradient rule of
  ``grad_modes`` (``"mean"``: Saec §2.3's averaged gradient; ``"sum"``: plain autograd; ``"+full"``: toward the
  full model's predictions instead of the labels) and evaluate again;
* control: the uncompressed model trained one more epoch exactly as retraining does it (same fresh optimizer,
  same shuffles), since retraining is an extra epoch the reference did not get;
* gentler retraining recipes (lr/10, the codebooks only: ``retrain(..., trainable="codebooks")``);
* per-field ablation: one field clustered at a time, with the test log loss by how often the row's feature was
  seen in training (:func:`saec.train.metrics.frequency_buckets`).

:func:`run` returns the raw record; :func:`render` writes the page and its plot from the record alone.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from saec.bench.report import (and_list, checksums, count_word, environment, group_by, header, log, markdown_table,
                               mean, mean_std, peak_rss_mib, peak_rss_text, recorded_environment, save_figure, span)
from saec.cluster.saec import SaecConfig, compress_field, mask_dtype, size_report
from saec.compression import compress_model
from saec.data.vocab import OOV_ID
from saec.io import write_text
from saec.models import build_model
from saec.nn.clustered import ClusteredEmbedding
from saec.pipeline.flow import retrain
from saec.train.loop import TrainConfig, evaluate, fit, predict
from saec.train.metrics import frequency_bucket_labels, frequency_buckets

EDGES = (1, 10, 100, 1000)
"""Training-count buckets of the per-field ablation: 1-9, 10-99, 100-999, >= 1000 (OOV apart)."""
BUCKET_LABELS = ["OOV (unseen in train)", *frequency_bucket_labels(EDGES)[1:]]
TOLERANCE = 0.0015
"""The findings' bar: compression "keeps" accuracy when it costs at most this much test AUC."""
ONE_DIMENSIONAL = 0.85
"""A field's trained vectors count as close to one-dimensional from this share of variance on the first axis."""
GENTLER = ("lr/10", "codebooks only", "codebooks only, lr/10")
"""The retraining recipes compared with the paper's (all parameters, the sweep's learning rate)."""
PAPER_LR = 0.001
"""Saec §3.1's Adagrad learning rate."""


@dataclass(frozen=True)
class MovielensSaecConfig:
    """What :func:`run` does (the command line's options): the ``models``, the ``ks`` swept (DeepFM:
    ``deepfm_ks``), compression ``seeds``, the retraining rules, fields clustered iff they have >= ``min_field``
    features, the full model's training, the per-field ablation at ``ablation_k`` (0: none) and the gentler
    retraining recipes at ``variant_ks``."""

    dataset: str = "movielens-1m"
    models: tuple[str, ...] = ("dssm", "deepfm")
    ks: tuple[int, ...] = (5, 10, 20, 50, 100, 200, 500, 1000)
    deepfm_ks: tuple[int, ...] = (10, 50, 200, 1000)
    seeds: int = 3
    grad_modes: tuple[str, ...] = ("mean", "sum", "mean+full")
    deepfm_grad_modes: tuple[str, ...] = ("mean",)
    min_field: int = 1000
    epochs: int = 20
    patience: int = TrainConfig.patience
    lr: float = 0.01
    batch_size: int = 1024
    ablation_k: int = 20
    ablation_fields: tuple[str, ...] = ("user", "item", "zip")
    variant_ks: tuple[int, ...] = (20, 200)


# ---- measuring ------------------------------------------------------------------------------------------

def with_grad_mode(model: nn.Module, mode: str) -> nn.Module:
    """A copy of a compressed model whose clustered tables use gradient rule ``mode``."""
    out = copy.deepcopy(model)
    for table in out.embeddings.tables.values():
        if isinstance(table, ClusteredEmbedding):
            table.grad_mode = mode
    return out


def compress_only(model: nn.Module, fields: list[str], counts: dict[str, np.ndarray], cfg: SaecConfig
                  ) -> nn.Module:
    """A copy of ``model`` with only ``fields`` clustered (whatever their size)."""
    out = copy.deepcopy(model)
    for name in fields:
        r = compress_field(name, out.embeddings.tables[name].weight.detach().numpy(), counts[name],
                           SaecConfig(**{**cfg.__dict__, "eligibility": 1.0}))
        out.embeddings.replace(name, ClusteredEmbedding.from_codebook(r.codebook, r.mask, "mean"))
    return out


def distortion(weight: np.ndarray, codebook: np.ndarray, mask: np.ndarray, counts: np.ndarray) -> float:
    """Share of the field's (training-frequency-weighted) embedding variance that clustering removes:
    sum c_i |w_i - C[m_i]|^2 / sum c_i |w_i - mean|^2."""
    c = counts.astype(np.float64)
    err = ((weight - codebook[mask.astype(np.int64)]) ** 2).sum(1)
    centre = (c[:, None] * weight).sum(0) / c.sum()
    var = ((weight - centre) ** 2).sum(1)
    return float((c * err).sum() / (c * var).sum())


def pc1_share(weight: np.ndarray, counts: np.ndarray) -> float:
    """Share of the field's training-frequency-weighted embedding variance on its first principal axis."""
    w = weight.astype(np.float64)
    c = counts.astype(np.float64) / counts.sum()
    x = (w - (c[:, None] * w).sum(0)) * np.sqrt(c)[:, None]
    sv = np.linalg.svd(x, compute_uv=False) ** 2
    return float(sv[0] / sv.sum())


def drift(before: nn.Module, after: nn.Module, fields: list[str]) -> dict[str, float]:
    """Relative change |T_after - T_before|_F / |T_before|_F of each field's table (codebook or full table)."""
    out = {}
    for f in fields:
        a, b = after.embeddings.tables[f], before.embeddings.tables[f]
        wa = a.codebook if isinstance(a, ClusteredEmbedding) else a.weight
        wb = b.codebook if isinstance(b, ClusteredEmbedding) else b.weight
        out[f] = float((wa.detach() - wb.detach()).norm() / wb.detach().norm())
    return out


def bucket_metrics(model: nn.Module, task, field: str) -> list[dict[str, float]]:
    """Test log loss and AUC per bucket (:data:`EDGES`) of the test row's ``field`` feature's training count."""
    rows = frequency_buckets(task.test.labels, task.test.ids[field], task.vocabs[field].counts,
                             {"model": predict(model, task.test)}, EDGES)
    return [{"n": r["n"], **r["model"]} for r in rows]


def task_facts(task) -> dict[str, Any]:
    """What the page says about the data: the task's summary and, per field, its features, width, the training
    count of its median feature, the share of features seen fewer than 10 times and the test rows' OOV share."""
    fields = {}
    for f in task.schema.fields:
        c = task.vocabs[f.name].counts
        ids = task.test.ids[f.name]
        oov = (ids == OOV_ID).any(axis=-1).mean() if ids.ndim == 2 else (ids == OOV_ID).mean()
        fields[f.name] = {"features": int(len(c)), "dim": int(f.dim), "median_count": int(np.median(c)),
                          "rare_share": float((c < 10).mean()), "test_oov": float(oov)}
    return {"summary": task.summary(), "fields": fields}


def run_model(name: str, task, cfg: MovielensSaecConfig, say) -> dict[str, Any]:
    """Everything for one architecture; plain data."""
    counts = {n: v.counts for n, v in task.vocabs.items()}
    base = TrainConfig(lr=cfg.lr, epochs=cfg.epochs, patience=cfg.patience, batch_size=cfg.batch_size,
                       progress=False)

    def seeded(train_cfg: TrainConfig, seed: int) -> TrainConfig:
        return TrainConfig(**{**train_cfg.__dict__, "seed": seed})

    res: dict[str, Any] = {"model": name, "runs": [], "control": [], "ablation": [], "distortion": {},
                           "variants": []}
    t = time.perf_counter()
    full = build_model(name, task.schema, task.num_embeddings, seed=0)
    history = fit(full, task.train, task.valid, base)
    res["train_s"] = time.perf_counter() - t
    res["history"] = [{"epoch": e["epoch"], "valid_auc": e["valid_auc"], "seconds": e["seconds"]}
                      for e in history.epochs]
    res["best_epoch"] = history.best_epoch
    res["full"] = evaluate(full, task.test)
    res["full_valid"] = evaluate(full, task.valid)
    res["pc1"] = {f: pc1_share(full.embeddings.tables[f].weight.detach().numpy(), counts[f])
                  for f in task.schema.names if task.num_embeddings[f] >= cfg.min_field}
    say(f"[{name}] full: test AUC {res['full']['auc']:.4f} log loss {res['full']['logloss']:.4f} "
        f"(best epoch {history.best_epoch}, {res['train_s']:.0f} s)")

    seeds = list(range(cfg.seeds))
    big = list(res["pc1"])
    for seed in seeds:  # control: one more epoch of the uncompressed model, as retraining does it
        m = copy.deepcopy(full)
        s = retrain(m, task.train, seeded(base, seed))
        res["control"].append({"seed": seed, **evaluate(m, task.test), "retrain_s": s, "drift": drift(full, m, big)})
    say(f"[{name}] full + 1 epoch: AUC {mean_std([r['auc'] for r in res['control']])}")

    ks = cfg.ks if name == "dssm" else cfg.deepfm_ks
    modes = list(cfg.grad_modes if name == "dssm" else cfg.deepfm_grad_modes)
    res["modes"] = modes
    for k in ks:
        eligibility = max(1.0, cfg.min_field / k)
        for seed in seeds:
            scfg = SaecConfig(k=k, eligibility=eligibility, init="kmeans++", fast=True, seed=seed)
            t = time.perf_counter()
            compressed, fields = compress_model(full, counts, scfg, grad_mode="mean")
            compress_s = time.perf_counter() - t
            sizes = size_report(fields.values())
            row = {"k": k, "seed": seed, "eligibility": eligibility, "compress_s": compress_s,
                   "clustered": [f for f, r in fields.items() if r.size.clustered],
                   "trained_on": {f: r.trained_on for f, r in fields.items() if r.size.clustered},
                   "vectors_before": sizes.total("vectors_before"), "vectors_after": sizes.total("vectors_after"),
                   "bytes_before": sizes.total("bytes_before"), "bytes_after": sizes.total("bytes_after"),
                   "ratio": sizes.ratio, "before": evaluate(compressed, task.test)}
            if seed == 0:
                res["distortion"][str(k)] = {
                    f: distortion(full.embeddings.tables[f].weight.detach().numpy(), r.codebook, r.mask, counts[f])
                    for f, r in fields.items() if r.size.clustered}
            for mode in modes:  # "mean" / "sum": the gradient rule; "+full": fit the full model's predictions
                grad, _, target = mode.partition("+")
                m = with_grad_mode(compressed, grad)
                row[f"retrain_s_{mode}"] = retrain(m, task.train, seeded(base, seed),
                                                   full=full if target == "full" else None)
                row[mode] = evaluate(m, task.test)
                row[f"drift_{mode}"] = drift(compressed, m, row["clustered"])
            res["runs"].append(row)
        rs = [r for r in res["runs"] if r["k"] == k]
        say(f"[{name}] k={k}: ratio {rs[0]['ratio']:.1f}x  before {mean_std([r['before']['auc'] for r in rs])}  "
            + "  ".join(f"{mode} {mean_std([r[mode]['auc'] for r in rs])}" for mode in modes))

    if name == "dssm" and cfg.variant_ks:
        slow = TrainConfig(**{**base.__dict__, "lr": cfg.lr / 10})
        for seed in seeds:
            m = copy.deepcopy(full)
            retrain(m, task.train, seeded(slow, seed))
            res["variants"].append({"k": None, "variant": "lr/10", "seed": seed, **evaluate(m, task.test)})
        for k in cfg.variant_ks:
            for seed in seeds:
                compressed, _ = compress_model(full, counts, SaecConfig(k=k, eligibility=max(1.0, cfg.min_field / k),
                                                                        seed=seed), grad_mode="mean")
                for variant, rcfg, trainable in (("lr/10", slow, "all"), ("codebooks only", base, "codebooks"),
                                                 ("codebooks only, lr/10", slow, "codebooks")):
                    m = copy.deepcopy(compressed)
                    retrain(m, task.train, seeded(rcfg, seed), trainable=trainable)
                    res["variants"].append({"k": k, "variant": variant, "seed": seed, **evaluate(m, task.test)})
            say(f"[{name}] retraining variants k={k} done")

    if name == "dssm" and cfg.ablation_k:
        k = cfg.ablation_k
        for fields_ in [[f] for f in cfg.ablation_fields] + [list(cfg.ablation_fields)]:
            for seed in seeds:
                scfg = SaecConfig(k=k, init="kmeans++", fast=True, seed=seed)
                m = compress_only(full, fields_, counts, scfg)
                before = evaluate(m, task.test)
                single = len(fields_) == 1
                buckets_before = bucket_metrics(m, task, fields_[0]) if single else None
                vanilla = None
                if single:  # the same without fast clustering: k-means on every feature of the field
                    mv = compress_only(full, fields_, counts, SaecConfig(**{**scfg.__dict__, "fast": False}))
                    vanilla = {"before": evaluate(mv, task.test), "buckets": bucket_metrics(mv, task, fields_[0])}
                retrain(m, task.train, seeded(base, seed))
                row = {"fields": fields_, "seed": seed, "before": before, "mean": evaluate(m, task.test)}
                if single:
                    row.update(buckets_before=buckets_before, vanilla=vanilla, buckets=bucket_metrics(m, task, fields_[0]))
                res["ablation"].append(row)
            rs = [r for r in res["ablation"] if r["fields"] == fields_]
            say(f"[{name}] ablation k={k} {'+'.join(fields_)}: before {mean_std([r['before']['auc'] for r in rs])} "
                f"retrained {mean_std([r['mean']['auc'] for r in rs])}")
        # reference buckets: the full model, and the full model + 1 epoch (seed 0)
        ctl = copy.deepcopy(full)
        retrain(ctl, task.train, seeded(base, 0))
        res["ablation_buckets_ref"] = {f: {"full": bucket_metrics(full, task, f), "control": bucket_metrics(ctl, task, f)}
                                       for f in cfg.ablation_fields}
    return res


def run(cfg: MovielensSaecConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Train and measure every architecture of ``cfg``; the raw record as plain data."""
    from saec.data import movielens

    movielens.fetch(cfg.dataset)
    task = movielens.movielens_ctr(cfg.dataset)
    start = time.perf_counter()
    results = [run_model(name, task, cfg, log if progress else lambda _: None) for name in cfg.models]
    return {"argv": command, "config": asdict(cfg), "environment": environment(), "task": task_facts(task),
            "results": results, "elapsed": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def complete(record: dict[str, Any], cfg: MovielensSaecConfig) -> dict[str, Any]:
    """A record written before the config and the task's facts were stored, with them filled in: ``cfg`` (as
    the record's command states it) and the facts of the data set it read (computed again: they are the data's,
    not the run's). Its environment stays unrecorded. Records that hold both are returned as they are."""
    if "config" in record and "task" in record:
        return record
    from saec.data import movielens

    movielens.fetch(cfg.dataset)
    return {"config": asdict(cfg), "task": task_facts(movielens.movielens_ctr(cfg.dataset)), **record}


# ---- the page ---------------------------------------------------------------------------------------------

SIGNED = "{:+.4f}"  # differences, with their sign


def _signed(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}f}"


def _by_k(res: dict[str, Any], fn) -> dict[int, list[float]]:
    """{k: [fn(run) for each seed]}."""
    return {k: [fn(r) for r in rs] for k, rs in group_by(res["runs"], "k").items()}


def field_table(task: dict[str, Any]) -> str:
    """The per-field facts of the data."""
    rows = [["field", "features", "dim", "train occurrences of the median feature", "features seen < 10 times",
             "test OOV"]]
    for name, f in task["fields"].items():
        rows.append([name, f"{f['features']:,}", str(f["dim"]), f"{f['median_count']:,}", f"{f['rare_share']:.1%}",
                     f"{f['test_oov']:.1%}"])
    return markdown_table(rows)


def sweep_table(res: dict[str, Any], modes: list[str]) -> str:
    """Per k: sizes and test AUC / log loss before and after each retraining rule."""
    ref, ctl = res["full"], res["control"]
    head = ["k", "vectors before → after", "bytes before → after", "ratio", "AUC before retraining"]
    head += [f"AUC retrained ({m})" for m in modes]
    head += ["log loss before retraining"] + [f"log loss retrained ({m})" for m in modes]
    rows = [head]
    rows.append(["full (reference)", "", "", "1.0x", f"{ref['auc']:.4f}", *[""] * len(modes),
                 f"{ref['logloss']:.4f}", *[""] * len(modes)])
    rows.append(["full + 1 epoch (control)", "", "", "1.0x", "", mean_std([r["auc"] for r in ctl]),
                 *[""] * (len(modes) - 1), "", mean_std([r["logloss"] for r in ctl]), *[""] * (len(modes) - 1)])
    for k, rs in group_by(res["runs"], "k").items():
        r0 = rs[0]
        rows.append([str(k), f"{r0['vectors_before']:,} → {r0['vectors_after']:,}",
                     f"{r0['bytes_before'] / 1024:,.0f} KiB → {r0['bytes_after'] / 1024:,.1f} KiB",
                     f"{r0['ratio']:.1f}x", mean_std([r["before"]["auc"] for r in rs]),
                     *[mean_std([r[m]["auc"] for r in rs]) for m in modes],
                     mean_std([r["before"]["logloss"] for r in rs]),
                     *[mean_std([r[m]["logloss"] for r in rs]) for m in modes]])
    return markdown_table(rows)


def delta_table(res: dict[str, Any], modes: list[str]) -> str:
    """Retrained minus reference and minus the control of the same seed (same shuffles): the fair comparison."""
    ctl = {r["seed"]: r for r in res["control"]}
    rows = [["k", "ratio", *[f"ΔAUC vs full ({m})" for m in modes], *[f"ΔAUC vs full+1 epoch ({m})" for m in modes],
             *[f"Δlog loss vs full+1 epoch ({m})" for m in modes]]]
    for k, rs in group_by(res["runs"], "k").items():
        rows.append([str(k), f"{rs[0]['ratio']:.1f}x",
                     *[mean_std([r[m]["auc"] - res["full"]["auc"] for r in rs]) for m in modes],
                     *[mean_std([r[m]["auc"] - ctl[r["seed"]]["auc"] for r in rs]) for m in modes],
                     *[mean_std([r[m]["logloss"] - ctl[r["seed"]]["logloss"] for r in rs]) for m in modes]])
    return markdown_table(rows)


def plot(results: list[dict[str, Any]], path: str | Path) -> None:
    """Test AUC and log loss against the compression ratio, one row of panels per architecture."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4.2 * len(results)), squeeze=False)
    style = {"before": ("before retraining", "tab:gray", "s"), "mean": ("retrained, mean grad", "tab:blue", "o"),
             "sum": ("retrained, sum grad", "tab:orange", "^"),
             "mean+full": ("retrained on the full model's predictions", "tab:green", "D"),
             "sum+full": ("retrained on the full model's predictions, sum grad", "tab:olive", "v")}
    for row, res in zip(axes, results):
        modes = res["modes"]
        by_k = group_by(res["runs"], "k")
        ks = list(by_k)
        ratio = [by_k[k][0]["ratio"] for k in ks]
        for ax, metric in zip(row, ("auc", "logloss")):
            for i, stage in enumerate(["before", *modes]):
                label, color, marker = style[stage]
                vals = [[r[stage][metric] for r in by_k[k]] for k in ks]
                means = [np.mean(v) for v in vals]
                std = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
                x = [q * (1 + 0.02 * (i - 1)) for q in ratio]  # tiny offset so error bars do not overlap
                ax.errorbar(x, means, yerr=std, label=label, color=color, marker=marker, capsize=3, ms=4, lw=1)
            ax.axhline(res["full"][metric], color="black", lw=1.2, label="uncompressed (reference)")
            c = [r[metric] for r in res["control"]]
            ax.axhspan(np.mean(c) - np.std(c, ddof=1), np.mean(c) + np.std(c, ddof=1), color="green", alpha=0.2,
                       label="uncompressed + 1 epoch (±1 std)")
            for q, k in zip(ratio, ks):
                v = np.mean([r[modes[0]][metric] for r in by_k[k]])
                ax.annotate(f"k={k}", (q, v), textcoords="offset points", xytext=(0, 7), fontsize=7, ha="center")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([3, 5, 10, 20, 30, 40, 50]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("compression ratio of the embedding tables (bytes before / after)")
            ax.set_ylabel("test AUC" if metric == "auc" else "test log loss")
            ax.set_title(f"{res['model'].upper()} on MovieLens-1M: test {'AUC' if metric == 'auc' else 'log loss'}")
            ax.grid(alpha=0.3, which="both")
            if metric == "auc":
                lo = min(min(r["before"]["auc"] for r in res["runs"]), res["full"]["auc"])
                ax.set_ylim(max(lo - 0.005, 0.5), None)
            else:
                hi = max(max(r["before"]["logloss"] for r in res["runs"]), res["full"]["logloss"])
                ax.set_ylim(None, hi + 0.005)
        row[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)


def _losing_ks(res: dict[str, Any]) -> list[int]:
    """The k whose compression alone (before retraining) costs more than :data:`TOLERANCE` AUC, mean over seeds."""
    before = _by_k(res, lambda r: r["before"]["auc"] - res["full"]["auc"])
    return [k for k in sorted(before) if mean(before[k]) < -TOLERANCE]


def findings(task: dict[str, Any], results: list[dict[str, Any]], cfg: dict[str, Any]) -> str:
    """The discussion, with every number computed from the record."""
    text = "## Findings\n\n"
    by_model = {r["model"]: r for r in results}
    facts = task["fields"]
    big = [n for n, f in facts.items() if f["features"] >= cfg["min_field"]]
    for res in results:
        name, modes = res["model"].upper(), res["modes"]
        full, ctl = res["full"], res["control"]
        ctl_auc = mean([r["auc"] for r in ctl])
        ctl_by_seed = {r["seed"]: r for r in ctl}
        before = {k: mean(v) for k, v in _by_k(res, lambda r: r["before"]["auc"] - full["auc"]).items()}
        before_ll = {k: mean(v) for k, v in _by_k(res, lambda r: r["before"]["logloss"] - full["logloss"]).items()}
        ratio = {k: v[0] for k, v in _by_k(res, lambda r: r["ratio"]).items()}
        gain = {k: mean(v) for k, v in _by_k(res, lambda r: r[modes[0]]["auc"] - r["before"]["auc"]).items()}
        vs_ctl = {k: mean(v) for k, v in
                  _by_k(res, lambda r: r[modes[0]]["auc"] - ctl_by_seed[r["seed"]]["auc"]).items()}
        vs_ctl_ll = {k: mean(v) for k, v in
                     _by_k(res, lambda r: r[modes[0]]["logloss"] - ctl_by_seed[r["seed"]]["logloss"]).items()}
        std = max(np.std(v, ddof=1) for v in _by_k(res, lambda r: r["before"]["auc"]).values())
        ks = sorted(before)
        pc1 = ", ".join(f"{f} {res['pc1'][f]:.2f}" for f in res["pc1"])
        text += f"**{name}** (uncompressed: test AUC {full['auc']:.4f}, log loss {full['logloss']:.4f}; ratios " \
                f"{min(ratio.values()):.1f}x-{max(ratio.values()):.1f}x)\n\n"
        good = [k for k in ks if before[k] >= -TOLERANCE]
        bad = _losing_ks(res)
        text += (f"- *Compression alone* (before retraining) changes test AUC by "
                 + ", ".join(f"{_signed(before[k])} at k={k} ({ratio[k]:.1f}x)" for k in ks)
                 + f" (largest seed std {std:.4f}); log loss by {span([before_ll[k] for k in ks], SIGNED)}. ")
        if good:
            text += (f"Within {TOLERANCE} AUC of the reference: k in {good}, i.e. up to "
                     f"{max(ratio[k] for k in good):.1f}x. ")
        if bad:
            text += f"**It loses more than {TOLERANCE} AUC at k in {bad}.** "
        one_dim = [f for f in res["pc1"] if res["pc1"][f] >= ONE_DIMENSIONAL]
        if one_dim:
            text += (f"The trained {' and '.join(one_dim)} vectors are close to one-dimensional (share of their "
                     f"frequency-weighted variance on the first principal axis: {pc1}), so a few centroids along that "
                     f"axis keep most of what the model reads from them; the distortion table shows how much is "
                     f"left out.\n")
        else:
            text += (f"Its trained vectors are less one-dimensional (share of the frequency-weighted variance on the "
                     f"first principal axis: {pc1}) and the same k leaves more of their variance out (distortion "
                     f"table).\n")
        text += (f"- *Retraining on the labels* (the paper's recipe: one epoch, fresh Adagrad lr {cfg['lr']:g}, all "
                 f"parameters, `{modes[0]}` rule) changes AUC relative to not retraining by "
                 + ", ".join(f"{_signed(gain[k])} (k={k})" for k in ks) + ". "
                 f"The same extra epoch moves the *uncompressed* model from {full['auc']:.4f} to {ctl_auc:.4f} "
                 f"({_signed(ctl_auc - full['auc'])}). Against that control (same seeds, same shuffles), Saec + "
                 f"retraining is at " + ", ".join(f"{_signed(vs_ctl[k])} (k={k})" for k in ks)
                 + f" AUC and {span([vs_ctl_ll[k] for k in ks], SIGNED)} log loss.\n")
        if len(modes) > 1:
            diff = [abs(mean(a) - mean(b)) for a, b in zip(_by_k(res, lambda r: r[modes[0]]["auc"]).values(),
                                                            _by_k(res, lambda r: r[modes[1]]["auc"]).values())]
            text += (f"- *`mean` vs `sum` gradient*: the two rules' mean AUC differ by at most {max(diff):.4f} over all "
                     f"k, less than the seed-to-seed spread. That is what Adagrad predicts: it divides every "
                     f"coordinate's gradient by the root of that coordinate's own accumulated squares, so dividing a "
                     f"centroid's gradient by its number of distinct members in the batch (a factor that varies "
                     f"little from batch to batch for a given centroid) nearly cancels. The averaging rule of §2.3 "
                     f"can only matter with an optimizer that is not per-coordinate scale-free (e.g. SGD); with "
                     f"Adagrad the cheaper `sum` backward ([lookup_cost.md](lookup_cost.md)) loses nothing.\n")
        for mode in (m for m in modes if m.endswith("+full")):
            d = {k: mean(v) for k, v in _by_k(res, lambda r: r[mode]["auc"] - full["auc"]).items()}
            dl = {k: mean(v) for k, v in _by_k(res, lambda r: r[mode]["logloss"] - full["logloss"]).items()}
            text += (f"- *Retraining on the full model's predictions* (`{mode}`: same epoch, targets = the full "
                     f"model's click probabilities instead of the labels, `retrain(..., full=model)`): ΔAUC vs the "
                     f"reference " + ", ".join(f"{_signed(d[k])} (k={k})" for k in ks) + f"; Δlog loss "
                     f"{span(list(dl.values()), SIGNED)}.\n")
        if res.get("variants"):
            v = res["variants"]
            cells = []
            for k in dict.fromkeys(r["k"] for r in v if r["k"] is not None):
                best = max(GENTLER, key=lambda n: mean([r["auc"] for r in v if r["k"] == k and r["variant"] == n]))
                best_auc = mean([r["auc"] for r in v if r["k"] == k and r["variant"] == best])
                cells.append(f"k={k}: best gentler recipe `{best}` {best_auc:.4f} vs label retraining "
                             f"{mean([r[modes[0]]['auc'] for r in res['runs'] if r['k'] == k]):.4f} vs no retraining "
                             f"{mean([r['before']['auc'] for r in res['runs'] if r['k'] == k]):.4f}")
            text += (f"- *Gentler retraining* (lr/10, codebooks only): " + "; ".join(cells) + ". A smaller step "
                     f"narrows the loss from retraining; on this static task no recipe that fits the labels "
                     f"beats not retraining at all (fitting the full model's predictions, above, matches or "
                     f"beats it).\n")
        if res.get("ablation"):
            text += _ablation_findings(res, facts, cfg)
        text += "\n"
    small_k = _losing_ks(by_model["dssm"]) if "dssm" in by_model else []
    if "deepfm" in by_model and small_k:
        text += ("**Where and why Saec loses.** (1) Too small a k: with "
                 + (f"{small_k[0]}-{small_k[-1]}" if len(small_k) > 1 else f"{small_k[0]}")
                 + " centroids a field is reduced to as many "
                 "levels and both models lose clearly. (2) DeepFM loses at every ratio tried, more than DSSM at the "
                 "same k: its vectors are less one-dimensional (see the principal-axis shares), presumably because its "
                 "FM term reads inner products between field vectors, which a few centroids along one axis cannot "
                 "keep. (3) Retraining as implemented (a full extra epoch over the same static data with a restarted "
                 "Adagrad) does not recover the loss; on DSSM the extra epoch costs accuracy even for the uncompressed "
                 "model, and on DeepFM the uncompressed model gains from it while the compressed one does not, which "
                 "widens the gap against the control. (4) What the paper reports "
                 "(Saec above the baseline) rests on many rare, under-trained features and on retraining with "
                 "fresh hourly data (§2.1, §3.2). MovieLens-1M has neither: a median "
                 + " / ".join(big) + " has "
                 + " / ".join(f"{facts[f]['median_count']:,}" for f in big) + " training rows and "
                 + " / ".join(f"{facts[f]['rare_share']:.1%}" for f in big)
                 + " of them fewer than 10. The streaming benchmark on the synthetic trace is where that claim can "
                 "be tested.\n\n")
    return text


def _ablation_findings(res: dict[str, Any], facts: dict[str, Any], cfg: dict[str, Any]) -> str:
    """Which field costs accuracy, and inside the item field by how often the item was seen in training."""
    k, full = cfg["ablation_k"], res["full"]
    ab: dict[tuple[str, ...], list[float]] = {}
    for r in res["ablation"]:
        ab.setdefault(tuple(r["fields"]), []).append(r["before"]["auc"] - full["auc"])
    parts = ", ".join(f"{'+'.join(f)} {_signed(mean(x))}" for f, x in ab.items())
    text = f"- *Which field* (k={k}, one field clustered, before retraining, ΔAUC vs full): {parts}.\n"
    if "item" not in cfg["ablation_fields"]:
        return text
    rs = [r for r in res["ablation"] if r["fields"] == ["item"]]
    ref = res["ablation_buckets_ref"]["item"]
    rows = []
    for i, label in enumerate(BUCKET_LABELS):
        if ref["full"][i]["n"] == 0 or i == 0:
            continue
        db = mean([r["buckets_before"][i]["logloss"] for r in rs]) - ref["full"][i]["logloss"]
        da = mean([r["buckets"][i]["logloss"] for r in rs]) - ref["control"][i]["logloss"]
        dv = mean([r["vanilla"]["buckets"][i]["logloss"] for r in rs]) - ref["full"][i]["logloss"]
        rows.append((label, ref["full"][i]["n"], db, da, dv))
    auc_fast = mean([r["before"]["auc"] for r in rs]) - full["auc"]
    auc_van = mean([r["vanilla"]["before"]["auc"] for r in rs]) - full["auc"]
    rare_fast, rare_van = rows[0][2], rows[0][4]
    lead = ("Rarely seen items lose most (a small bucket, so a noisy number)." if
            rare_fast == max(r[2] for r in rows) else "The loss is not concentrated on rare items.")
    verdict = ("is not what costs it" if rare_van >= 0.5 * rare_fast else
               "accounts for part of it" if rare_van > 0 else "is what costs it")
    items = facts["item"]["features"]
    return text + ("  Inside the item field, the log loss added by compression (before retraining) by how often "
                   "the test row's item was seen in training: "
                   + ", ".join(f"{lab}: {_signed(db)} ({n:,} rows)" for lab, n, db, _, _ in rows)
                   + f". {lead} Fast clustering (k-means on the "
                   f"{min(SaecConfig(k=k).train_size, items):,} most frequent of {items:,} items, the rest only "
                   f"assigned) {verdict}: with vanilla k-means on all items the same buckets move by "
                   + ", ".join(f"{lab}: {_signed(dv)}" for lab, _, _, _, dv in rows)
                   + f" (item-only ΔAUC {_signed(auc_fast)} fast, {_signed(auc_van)} vanilla). After retraining, the "
                   f"rarest items do better than in the retrained uncompressed control ("
                   + ", ".join(f"{lab}: {_signed(da)}" for lab, _, _, da, _ in rows[:2])
                   + "), which fits the paper's argument that a shared, retrained centroid serves a rarely "
                   "seen feature better than its own vector (§3.2); here it concerns few test rows.\n")


def _protocol(task: dict[str, Any], cfg: dict[str, Any]) -> str:
    facts = task["fields"]
    big = [n for n, f in facts.items() if f["features"] >= cfg["min_field"]]
    small = [n for n in facts if n not in big]
    largest = max(f["features"] for f in facts.values())
    paper = SaecConfig(k=1)  # the paper's rules per centroid: eligibility and fast clustering's top_n
    per_k = paper.train_size
    selects = and_list(f"{n} ({facts[n]['features']:,})" for n in big)
    return (
        f"\n**Protocol.** The full model is trained once per architecture (Adagrad lr {cfg['lr']}, batch "
        f"{cfg['batch_size']}, up to {cfg['epochs']} epochs, early stopping on valid AUC with patience "
        f"{cfg['patience']}, best epoch kept); every compression below starts from that same model. Saec: "
        f"`SaecConfig(k, eligibility = max(1, {cfg['min_field']}/k), init=\"kmeans++\", fast=True, top_n=None)`, i.e. "
        f"**a field is clustered iff it has >= {cfg['min_field']} features** for every k, which selects {selects} "
        f"and leaves the {count_word(len(small))} small fields (<= {max(facts[n]['features'] for n in small):,} "
        f"features) full. (The paper's rule, eligibility {paper.eligibility:g}, needs >= {paper.eligibility:g} k "
        f"features: on MovieLens it clusters nothing above k = {int(largest // paper.eligibility)}, so it is scaled "
        f"to the data here.) Fast clustering trains k-means on the {per_k} k most frequent features of a field, "
        f"which for k >= {-(-largest // per_k)} is the whole field (vanilla k-means). Retraining = "
        f"`saec.pipeline.flow.retrain`: one epoch over the training "
        f"split with a fresh Adagrad, fitting the labels (`mean`, `sum`) or the full model's predictions "
        f"(`mean+full`, the library's default since this run). Each (k, seed) is compressed once and retrained with "
        f"each gradient rule (`mean`: Saec's averaged gradient, §2.3; `sum`: plain autograd). Seeds "
        f"{list(range(cfg['seeds']))} set both "
        f"the k-means initialisation and the retraining shuffle; cells are mean ± sample std over the seeds. "
        f"**Control** = the uncompressed model given the same extra epoch (`retrain` on a copy, same seeds), "
        f"because retraining is one more epoch than the reference had. Sizes count embedding tables only, float32 "
        f"vectors plus one mask entry per feature of a clustered field (uint8 for k <= 256, uint16 above), as the "
        f"paper does (§3.2); the per-field OOV vectors and the MLP are not counted.\n\n")


def _model_section(res: dict[str, Any], task: dict[str, Any], cfg: dict[str, Any]) -> str:
    modes = res["modes"]
    text = f"## {res['model'].upper()}\n\n"
    text += (f"Full model: best epoch {res['best_epoch']} of {len(res['history'])} "
             f"({res['train_s']:.0f} s); test AUC {res['full']['auc']:.4f}, log loss {res['full']['logloss']:.4f} "
             f"(valid AUC {res['full_valid']['auc']:.4f}). Valid AUC per epoch: "
             + ", ".join(f"{e['valid_auc']:.4f}" for e in res["history"]) + ".\n\n")
    text += sweep_table(res, modes)
    text += ("\nDifferences (retrained minus reference, and retrained minus the control of the same seed, "
             "mean ± std over seeds):\n\n")
    text += delta_table(res, modes)
    if res["distortion"]:
        fields = list(next(iter(res["distortion"].values())))
        text += ("\nClustering distortion (seed 0): share of each field's training-frequency-weighted embedding "
                 "variance that clustering removes, Σ c_i |w_i − C[m_i]|² / Σ c_i |w_i − w̄|². The last row is "
                 "the share of that variance on the field's first principal axis in the full model: the "
                 "trained vectors are close to one-dimensional, so a few centroids along that axis keep most "
                 "of what the model uses.\n\n")
        rows = [["k", *fields]]
        for k, d in res["distortion"].items():
            rows.append([k, *[f"{d[f]:.3f}" for f in fields]])
        rows.append(["variance on the 1st principal axis", *[f"{res['pc1'][f]:.3f}" for f in fields]])
        text += markdown_table(rows)
        text += ("\nHow far the retraining epoch moves the tables: |T_after − T_before|_F / |T_before|_F, mean over "
                 "seeds (`mean` rule for the codebooks). One epoch with a fresh Adagrad is a large move for "
                 "either kind of table, not a small correction.\n\n")
        rows = [["k", *fields]]
        rows.append(["full table (control epoch)", *[f"{np.mean([r['drift'][f] for r in res['control']]):.3f}"
                                                     for f in fields]])
        for k, rs in group_by(res["runs"], "k").items():
            rows.append([f"codebook, k={k}", *[f"{np.mean([r[f'drift_{modes[0]}'][f] for r in rs]):.3f}"
                                               for f in fields]])
        text += markdown_table(rows)
    secs = [r["compress_s"] for r in res["runs"]]
    rt = [r[f"retrain_s_{m}"] for r in res["runs"] for m in modes]
    text += (f"\nCompression took {np.median(secs):.2f} s (median; max {max(secs):.2f} s) per model; retraining "
             f"{np.median(rt):.1f} s per epoch (median); the control epoch "
             f"{np.median([r['retrain_s'] for r in res['control']]):.1f} s.\n\n")
    if res.get("variants"):
        text += _variants_section(res, cfg)
    if res["ablation"]:
        text += _ablation_section(res, task, cfg)
    return text + "\n"


def _variants_section(res: dict[str, Any], cfg: dict[str, Any]) -> str:
    text = ("### Is it the compression or the extra epoch? Retraining recipes (`mean` rule)\n\n"
            f"`lr/10` = Adagrad lr {cfg['lr'] / 10:g} (the paper's {PAPER_LR:g}) for the retraining epoch; `codebooks "
            "only` = the MLP, the small fields and the OOV vectors frozen, only the clustered codebooks "
            "retrained. Label retraining with all parameters at lr "
            f"{cfg['lr']:g} is the sweep above (`mean`). All recipes here fit the labels. Mean ± std over seeds.\n\n")
    ctl_slow = [r for r in res["variants"] if r["k"] is None]
    for metric, title, end in (("auc", "Test AUC", ""), ("logloss", "\nTest log loss", "\n")):
        rows = [["k", "no retraining", "retrain (labels)", "retrain lr/10", "codebooks only", "codebooks only, lr/10"]]
        rows.append(["uncompressed", f"{res['full'][metric]:.4f}", mean_std([r[metric] for r in res["control"]]),
                     mean_std([r[metric] for r in ctl_slow]), "", ""])
        for k in dict.fromkeys(r["k"] for r in res["variants"] if r["k"] is not None):
            sweep = [r for r in res["runs"] if r["k"] == k]
            cells = [mean_std([r[metric] for r in res["variants"] if r["k"] == k and r["variant"] == v])
                     for v in GENTLER]
            rows.append([f"k={k}", mean_std([r["before"][metric] for r in sweep]),
                         mean_std([r["mean"][metric] for r in sweep]), *cells])
        text += f"{title}:\n\n" + markdown_table(rows) + end
    return text


def _ablation_section(res: dict[str, Any], task: dict[str, Any], cfg: dict[str, Any]) -> str:
    k, facts = cfg["ablation_k"], task["fields"]
    text = f"### Which field costs accuracy (k = {k}, only the listed field clustered, `mean` rule)\n\n"
    rows = [["clustered", "ratio of that field", "AUC before retraining", "ΔAUC before vs full",
             "AUC retrained", "ΔAUC retrained vs full+1 epoch", "log loss before", "Δlog loss before vs full",
             "log loss retrained", "Δlog loss retrained vs full+1 epoch"]]
    ctl, full = {r["seed"]: r for r in res["control"]}, res["full"]
    for fields_, rs in group_by([{**r, "key": tuple(r["fields"])} for r in res["ablation"]], "key").items():
        n = sum(facts[f]["features"] for f in fields_)
        before_b = sum(facts[f]["features"] * facts[f]["dim"] * 4 for f in fields_)
        after_b = sum(k * facts[f]["dim"] * 4 + facts[f]["features"] * mask_dtype(k).itemsize for f in fields_)
        rows.append(["+".join(fields_), f"{before_b / after_b:.1f}x ({n:,} → {k * len(fields_)} vectors)",
                     mean_std([r["before"]["auc"] for r in rs]), mean_std([r["before"]["auc"] - full["auc"] for r in rs]),
                     mean_std([r["mean"]["auc"] for r in rs]),
                     mean_std([r["mean"]["auc"] - ctl[r["seed"]]["auc"] for r in rs]),
                     mean_std([r["before"]["logloss"] for r in rs]),
                     mean_std([r["before"]["logloss"] - full["logloss"] for r in rs]),
                     mean_std([r["mean"]["logloss"] for r in rs]),
                     mean_std([r["mean"]["logloss"] - ctl[r["seed"]]["logloss"] for r in rs])])
    text += markdown_table(rows)
    text += (f"\nTest log loss by how often the row's feature of the clustered field occurs in the training "
             "split (the same k, that field alone clustered; Saec columns are the mean over seeds, the "
             "full + 1 epoch control is seed 0; *vanilla k-means* = the same compression with `fast=False`, "
             f"k-means on every feature of the field instead of the {SaecConfig(k=1).train_size} k most frequent). "
             "Rows with an OOV feature use the field's own OOV vector, "
             "which is never clustered, so they change only through the shared layers.\n\n")
    rows = [["field", "train count of the feature", "test rows", "full", "Saec before retraining",
             "Δ before − full", "Δ before − full, vanilla k-means", "full + 1 epoch", "Saec retrained",
             "Δ retrained − (full + 1 epoch)"]]
    for f in cfg["ablation_fields"]:
        rs = [r for r in res["ablation"] if r["fields"] == [f]]
        ref = res["ablation_buckets_ref"][f]
        for i, label in enumerate(BUCKET_LABELS):
            n = ref["full"][i]["n"]
            if n == 0:
                continue
            sb = np.mean([r["buckets_before"][i]["logloss"] for r in rs])
            sa = np.mean([r["buckets"][i]["logloss"] for r in rs])
            sv = np.mean([r["vanilla"]["buckets"][i]["logloss"] for r in rs])
            rows.append([f, label, f"{n:,}", f"{ref['full'][i]['logloss']:.4f}", f"{sb:.4f}",
                         f"{sb - ref['full'][i]['logloss']:+.4f}", f"{sv - ref['full'][i]['logloss']:+.4f}",
                         f"{ref['control'][i]['logloss']:.4f}", f"{sa:.4f}", f"{sa - ref['control'][i]['logloss']:+.4f}"])
    return text + markdown_table(rows)


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page and its plot of a :func:`run` record (one that holds its config and task facts: see
    :func:`complete`)."""
    cfg, task, results = record["config"], record["task"], record["results"]
    plot(results, png_path)
    text = header("Saec on MovieLens-1M CTR: accuracy vs compression ratio", record["argv"],
                  recorded_environment(record.get("environment")), checksums(record))
    text += (
        f"\nTask (as in [baseline.md](baseline.md)): label = rating >= 4, split by timestamp 80/10/10, vocabularies "
        f"from the training split only. Total run time {record['elapsed'] / 60:.1f} min, peak RSS "
        f"{peak_rss_text(record.get('peak_rss_mib'))}.\n\n```\n{task['summary']}\n```\n\n")
    text += field_table(task)
    text += _protocol(task, cfg)
    text += f"![AUC and log loss vs compression ratio]({Path(png_path).name})\n\n"
    text += findings(task, results, cfg)
    for res in results:
        text += _model_section(res, task, cfg)
    write_text(md_path, text)


__all__ = ["MovielensSaecConfig", "bucket_metrics", "complete", "compress_only", "distortion", "drift", "findings",
           "pc1_share", "plot", "render", "run", "run_model", "task_facts", "with_grad_mode"]
