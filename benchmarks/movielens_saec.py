"""Saec on MovieLens-1M CTR: test AUC / log loss vs compression ratio for a sweep of k.

Writes docs/results/movielens_saec.md and docs/results/movielens_saec.png. Run from the repository root
(on a shared machine, under the benchmark lock):

    flock /tmp/saec-bench.lock python benchmarks/movielens_saec.py

The full (uncompressed) model is trained once per architecture (static setting, early stopping on valid);
every compression starts from that same model, so the sweep differs only in what Saec does:

* for each k and seed: compress (field-aware k-means, k-means++, fast clustering on the 100 k most
  frequent features), evaluate (before retraining), then retrain one epoch with the averaged
  (``grad_mode="mean"``, Saec §2.3), with the plain summed gradient (``"sum"``) and, averaged, toward the
  full model's predictions instead of the labels (``"mean+full"``, distillation), and evaluate again;
* control: the uncompressed model trained one more epoch exactly as retraining does it (same fresh
  optimizer, same shuffles), since retraining is an extra epoch the reference did not get;
* per-field ablation: only one field clustered, to see which field costs accuracy, with test log loss
  by how often the test row's feature was seen in training.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
from torch import nn

from saec.bench.report import header, markdown_table, mean_std, peak_rss_mib
from saec.cluster.saec import SaecConfig, compress_field, mask_dtype, size_report
from saec.compression import compress_model
from saec.data import movielens
from saec.data.vocab import OOV_ID
from saec.io import write_text
from saec.models import build_model
from saec.nn.clustered import ClusteredEmbedding
from saec.pipeline.flow import retrain
from saec.train.loop import TrainConfig, evaluate, fit, predict
from saec.train.metrics import auc as auc_fn

BUCKETS = [(OOV_ID, OOV_ID, "OOV (unseen in train)"), (1, 9, "1-9"), (10, 99, "10-99"), (100, 999, "100-999"),
           (1000, 10**12, ">= 1000")]


def with_grad_mode(model: nn.Module, mode: str) -> nn.Module:
    """A copy of a compressed model whose clustered tables use ``mode``."""
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
    mean = (c[:, None] * weight).sum(0) / c.sum()
    var = ((weight - mean) ** 2).sum(1)
    return float((c * err).sum() / (c * var).sum())


def pc1_share(weight: np.ndarray, counts: np.ndarray) -> float:
    """Share of the field's training-frequency-weighted embedding variance on its first principal axis."""
    w = weight.astype(np.float64)
    c = counts.astype(np.float64) / counts.sum()
    x = (w - (c[:, None] * w).sum(0)) * np.sqrt(c)[:, None]
    sv = np.linalg.svd(x, compute_uv=False) ** 2
    return float(sv[0] / sv.sum())


def retrain_variant(model: nn.Module, task, cfg: TrainConfig, codebooks_only: bool) -> dict:
    """Retrain a copy of ``model`` one epoch (optionally only the clustered codebooks); test metrics."""
    m = copy.deepcopy(model)
    if codebooks_only:
        for name, p in m.named_parameters():
            p.requires_grad_(name.endswith(".codebook"))
    retrain(m, task.train, cfg)
    return evaluate(m, task.test)


def drift(before: nn.Module, after: nn.Module, fields: list[str]) -> dict[str, float]:
    """Relative change |T_after - T_before|_F / |T_before|_F of each field's table (codebook or full table)."""
    out = {}
    for f in fields:
        a, b = after.embeddings.tables[f], before.embeddings.tables[f]
        wa = a.codebook if isinstance(a, ClusteredEmbedding) else a.weight
        wb = b.codebook if isinstance(b, ClusteredEmbedding) else b.weight
        out[f] = float((wa.detach() - wb.detach()).norm() / wb.detach().norm())
    return out


def bucket_metrics(model: nn.Module, task, field: str) -> list[dict]:
    """Test log loss and AUC per bucket of the test row's ``field`` feature's training count."""
    p = predict(model, task.test).astype(np.float64)
    y = task.test.labels.astype(np.float64)
    ids = task.test.ids[field]
    counts = task.vocabs[field].counts
    cnt = np.where(ids == OOV_ID, OOV_ID, counts[np.clip(ids, 0, None)])
    out = []
    eps = np.finfo(np.float32).eps
    for lo, hi, _ in BUCKETS:
        sel = (cnt >= lo) & (cnt <= hi)
        if not sel.any():
            out.append({"n": 0, "logloss": float("nan"), "auc": float("nan")})
            continue
        pp = np.clip(p[sel], eps, 1 - eps)
        ll = float(-(y[sel] * np.log(pp) + (1 - y[sel]) * np.log(1 - pp)).mean())
        a = auc_fn(y[sel], p[sel]) if 0 < y[sel].sum() < sel.sum() else float("nan")
        out.append({"n": int(sel.sum()), "logloss": ll, "auc": a})
    return out


ms = mean_std  # mean ± std over seeds


def run_model(name: str, task, args, log) -> dict:
    """Everything for one architecture; returns plain data (JSON-able)."""
    counts = {n: v.counts for n, v in task.vocabs.items()}
    base = TrainConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, progress=False)
    res: dict = {"model": name, "runs": [], "control": [], "ablation": [], "distortion": {}, "variants": []}

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
                  for f in task.schema.names if task.num_embeddings[f] >= args.min_field}
    log(f"[{name}] full: test AUC {res['full']['auc']:.4f} log loss {res['full']['logloss']:.4f} "
        f"(best epoch {history.best_epoch}, {res['train_s']:.0f} s)")

    seeds = list(range(args.seeds))
    big = list(res["pc1"])
    for seed in seeds:  # control: one more epoch of the uncompressed model, as retraining does it
        m = copy.deepcopy(full)
        s = retrain(m, task.train, TrainConfig(**{**base.__dict__, "seed": seed}))
        res["control"].append({"seed": seed, **evaluate(m, task.test), "retrain_s": s,
                               "drift": drift(full, m, big)})
    log(f"[{name}] full + 1 epoch: AUC {ms([r['auc'] for r in res['control']])}")

    ks = args.ks if name == "dssm" else args.deepfm_ks
    modes = args.grad_modes if name == "dssm" else args.deepfm_grad_modes
    res["modes"] = modes
    for k in ks:
        eligibility = max(1.0, args.min_field / k)
        for seed in seeds:
            cfg = SaecConfig(k=k, eligibility=eligibility, init="kmeans++", fast=True, seed=seed)
            t = time.perf_counter()
            compressed, fields = compress_model(full, counts, cfg, grad_mode="mean")
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
            rcfg = TrainConfig(**{**base.__dict__, "seed": seed})
            for mode in modes:  # "mean" / "sum": the gradient rule; "+full": fit the full model's predictions
                grad, _, target = mode.partition("+")
                m = with_grad_mode(compressed, grad)
                row[f"retrain_s_{mode}"] = retrain(m, task.train, rcfg, full=full if target == "full" else None)
                row[mode] = evaluate(m, task.test)
                row[f"drift_{mode}"] = drift(compressed, m, row["clustered"])
            res["runs"].append(row)
        rs = [r for r in res["runs"] if r["k"] == k]
        log(f"[{name}] k={k}: ratio {rs[0]['ratio']:.1f}x  before {ms([r['before']['auc'] for r in rs])}  " +
            "  ".join(f"{mode} {ms([r[mode]['auc'] for r in rs])}" for mode in modes))

    if name == "dssm" and args.variant_ks:
        slow = TrainConfig(**{**base.__dict__, "lr": args.lr / 10})
        for seed in seeds:
            m = copy.deepcopy(full)
            retrain(m, task.train, TrainConfig(**{**slow.__dict__, "seed": seed}))
            res["variants"].append({"k": None, "variant": "lr/10", "seed": seed, **evaluate(m, task.test)})
        for k in args.variant_ks:
            for seed in seeds:
                cfg = SaecConfig(k=k, eligibility=max(1.0, args.min_field / k), seed=seed)
                compressed, _ = compress_model(full, counts, cfg, grad_mode="mean")
                for variant, rcfg, only in (("lr/10", slow, False), ("codebooks only", base, True),
                                            ("codebooks only, lr/10", slow, True)):
                    out = retrain_variant(compressed, task, TrainConfig(**{**rcfg.__dict__, "seed": seed}), only)
                    res["variants"].append({"k": k, "variant": variant, "seed": seed, **out})
            log(f"[{name}] retraining variants k={k} done")

    if name == "dssm" and args.ablation_k:
        k = args.ablation_k
        variants = [[f] for f in args.ablation_fields] + [list(args.ablation_fields)]
        buckets_of: dict[str, dict] = {}
        for fields_ in variants:
            for seed in seeds:
                cfg = SaecConfig(k=k, init="kmeans++", fast=True, seed=seed)
                m = compress_only(full, fields_, counts, cfg)
                before = evaluate(m, task.test)
                buckets_before = bucket_metrics(m, task, fields_[0]) if len(fields_) == 1 else None
                vanilla = None
                if len(fields_) == 1:  # the same without fast clustering: k-means on every feature of the field
                    mv = compress_only(full, fields_, counts, SaecConfig(**{**cfg.__dict__, "fast": False}))
                    vanilla = {"before": evaluate(mv, task.test), "buckets": bucket_metrics(mv, task, fields_[0])}
                retrain(m, task.train, TrainConfig(**{**base.__dict__, "seed": seed}))
                row = {"fields": fields_, "seed": seed, "before": before, "mean": evaluate(m, task.test)}
                if len(fields_) == 1:
                    row["buckets_before"] = buckets_before
                    row["vanilla"] = vanilla
                    row["buckets"] = bucket_metrics(m, task, fields_[0])
                res["ablation"].append(row)
            rs = [r for r in res["ablation"] if r["fields"] == fields_]
            log(f"[{name}] ablation k={k} {'+'.join(fields_)}: before {ms([r['before']['auc'] for r in rs])} "
                f"retrained {ms([r['mean']['auc'] for r in rs])}")
        # reference buckets: the full model, and the full model + 1 epoch (seed 0)
        ctl = copy.deepcopy(full)
        retrain(ctl, task.train, TrainConfig(**{**base.__dict__, "seed": 0}))
        for f in args.ablation_fields:
            buckets_of[f] = {"full": bucket_metrics(full, task, f), "control": bucket_metrics(ctl, task, f)}
        res["ablation_buckets_ref"] = buckets_of
    return res


# ---- report -------------------------------------------------------------------------------------------

def field_table(task) -> str:
    rows = [["field", "features", "dim", "train occurrences of the median feature", "features seen < 10 times",
             "test OOV"]]
    for f in task.schema.fields:
        c = task.vocabs[f.name].counts
        ids = task.test.ids[f.name]
        oov = (ids == OOV_ID).any(axis=-1).mean() if ids.ndim == 2 else (ids == OOV_ID).mean()
        rows.append([f.name, f"{len(c):,}", str(f.dim), f"{int(np.median(c)):,}", f"{(c < 10).mean():.1%}",
                     f"{oov:.1%}"])
    return markdown_table(rows)


def sweep_table(res: dict, modes: list[str]) -> str:
    ref, ctl = res["full"], res["control"]
    head = ["k", "vectors before → after", "bytes before → after", "ratio", "AUC before retraining"]
    head += [f"AUC retrained ({m})" for m in modes]
    head += ["log loss before retraining"] + [f"log loss retrained ({m})" for m in modes]
    rows = [head]
    rows.append(["full (reference)", "", "", "1.0x", f"{ref['auc']:.4f}", *[""] * len(modes),
                 f"{ref['logloss']:.4f}", *[""] * len(modes)])
    rows.append(["full + 1 epoch (control)", "", "", "1.0x", "", ms([r["auc"] for r in ctl]), *[""] * (len(modes) - 1),
                 "", ms([r["logloss"] for r in ctl]), *[""] * (len(modes) - 1)])
    for k in dict.fromkeys(r["k"] for r in res["runs"]):
        rs = [r for r in res["runs"] if r["k"] == k]
        r0 = rs[0]
        rows.append([str(k), f"{r0['vectors_before']:,} → {r0['vectors_after']:,}",
                     f"{r0['bytes_before'] / 1024:,.0f} KiB → {r0['bytes_after'] / 1024:,.1f} KiB",
                     f"{r0['ratio']:.1f}x", ms([r["before"]["auc"] for r in rs]),
                     *[ms([r[m]["auc"] for r in rs]) for m in modes],
                     ms([r["before"]["logloss"] for r in rs]), *[ms([r[m]["logloss"] for r in rs]) for m in modes]])
    return markdown_table(rows)


def delta_table(res: dict, modes: list[str]) -> str:
    """Retrained minus control, per seed (same shuffles), mean ± std: the fair comparison."""
    ctl = {r["seed"]: r for r in res["control"]}
    rows = [["k", "ratio", *[f"ΔAUC vs full ({m})" for m in modes], *[f"ΔAUC vs full+1 epoch ({m})" for m in modes],
             *[f"Δlog loss vs full+1 epoch ({m})" for m in modes]]]
    for k in dict.fromkeys(r["k"] for r in res["runs"]):
        rs = [r for r in res["runs"] if r["k"] == k]
        rows.append([str(k), f"{rs[0]['ratio']:.1f}x",
                     *[ms([r[m]["auc"] - res["full"]["auc"] for r in rs]) for m in modes],
                     *[ms([r[m]["auc"] - ctl[r["seed"]]["auc"] for r in rs]) for m in modes],
                     *[ms([r[m]["logloss"] - ctl[r["seed"]]["logloss"] for r in rs]) for m in modes]])
    return markdown_table(rows)


def plot(results: list[dict], path: Path) -> None:
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
        ks = list(dict.fromkeys(r["k"] for r in res["runs"]))
        ratio = [next(r["ratio"] for r in res["runs"] if r["k"] == k) for k in ks]
        for ax, metric in zip(row, ("auc", "logloss")):
            for i, stage in enumerate(["before", *modes]):
                label, color, marker = style[stage]
                vals = [[r[stage][metric] for r in res["runs"] if r["k"] == k] for k in ks]
                mean = [np.mean(v) for v in vals]
                std = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
                x = [q * (1 + 0.02 * (i - 1)) for q in ratio]  # tiny offset so error bars do not overlap
                ax.errorbar(x, mean, yerr=std, label=label, color=color, marker=marker, capsize=3, ms=4, lw=1)
            ax.axhline(res["full"][metric], color="black", lw=1.2, label="uncompressed (reference)")
            c = [r[metric] for r in res["control"]]
            ax.axhspan(np.mean(c) - np.std(c, ddof=1), np.mean(c) + np.std(c, ddof=1), color="green", alpha=0.2,
                       label="uncompressed + 1 epoch (±1 std)")
            for q, k, v in zip(ratio, ks, [np.mean([r[modes[0]][metric] for r in res["runs"] if r["k"] == k])
                                           for k in ks]):
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _by_k(res: dict, fn) -> dict[int, list[float]]:
    """{k: [fn(run) for each seed]}."""
    out: dict[int, list[float]] = {}
    for r in res["runs"]:
        out.setdefault(r["k"], []).append(fn(r))
    return out


def _m(xs: list[float]) -> float:
    return float(np.mean(xs))


def _f(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}f}"


def _span(xs: list[float], digits: int = 4) -> str:
    lo, hi = min(xs), max(xs)
    return _f(lo, digits) if f"{lo:.{digits}f}" == f"{hi:.{digits}f}" else f"{_f(lo, digits)} to {_f(hi, digits)}"


def findings(task, results: list[dict], args) -> str:
    """The discussion, with every number computed from the results."""
    text = "## Findings\n\n"
    by_model = {r["model"]: r for r in results}
    ml = {n: task.vocabs[n].counts for n in task.schema.names}
    big = [n for n in task.schema.names if len(ml[n]) >= args.min_field]
    for res in results:
        name, modes = res["model"].upper(), res["modes"]
        full, ctl = res["full"], res["control"]
        ctl_auc = _m([r["auc"] for r in ctl])
        ctl_by_seed = {r["seed"]: r for r in ctl}
        before = {k: _m(v) for k, v in _by_k(res, lambda r: r["before"]["auc"] - full["auc"]).items()}
        before_ll = {k: _m(v) for k, v in _by_k(res, lambda r: r["before"]["logloss"] - full["logloss"]).items()}
        ratio = {k: v[0] for k, v in _by_k(res, lambda r: r["ratio"]).items()}
        gain = {k: _m(v) for k, v in _by_k(res, lambda r: r[modes[0]]["auc"] - r["before"]["auc"]).items()}
        vs_ctl = {k: _m(v) for k, v in _by_k(res, lambda r: r[modes[0]]["auc"] - ctl_by_seed[r["seed"]]["auc"]).items()}
        vs_ctl_ll = {k: _m(v) for k, v in
                     _by_k(res, lambda r: r[modes[0]]["logloss"] - ctl_by_seed[r["seed"]]["logloss"]).items()}
        std = max(np.std(v, ddof=1) for v in _by_k(res, lambda r: r["before"]["auc"]).values())
        ks = sorted(before)
        pc1 = ", ".join(f"{f} {res['pc1'][f]:.2f}" for f in res["pc1"])
        text += f"**{name}** (uncompressed: test AUC {full['auc']:.4f}, log loss {full['logloss']:.4f}; ratios " \
                f"{min(ratio.values()):.1f}x-{max(ratio.values()):.1f}x)\n\n"
        good = [k for k in ks if before[k] >= -0.0015]
        bad = [k for k in ks if before[k] < -0.0015]
        text += (f"- *Compression alone* (before retraining) changes test AUC by "
                 + ", ".join(f"{_f(before[k])} at k={k} ({ratio[k]:.1f}x)" for k in ks)
                 + f" (largest seed std {std:.4f}); log loss by {_span([before_ll[k] for k in ks])}. ")
        if good:
            text += (f"Within 0.0015 AUC of the reference: k in {good}, i.e. up to {max(ratio[k] for k in good):.1f}x. ")
        if bad:
            text += f"**It loses more than 0.0015 AUC at k in {bad}.** "
        if min(res["pc1"][f] for f in res["pc1"] if f != "zip") >= 0.85:
            text += (f"The trained user and item vectors are close to one-dimensional (share of their "
                     f"frequency-weighted variance on the first principal axis: {pc1}), so a few centroids along that "
                     f"axis keep most of what the model reads from them; the distortion table shows how much is "
                     f"left out.\n")
        else:
            text += (f"Its trained vectors are less one-dimensional (share of the frequency-weighted variance on the "
                     f"first principal axis: {pc1}) and the same k leaves more of their variance out (distortion "
                     f"table).\n")
        text += (f"- *Retraining on the labels* (the paper's recipe: one epoch, fresh Adagrad lr {args.lr:g}, all parameters, "
                 f"`{modes[0]}` rule) changes AUC relative to not retraining by "
                 + ", ".join(f"{_f(gain[k])} (k={k})" for k in ks) + ". "
                 f"The same extra epoch moves the *uncompressed* model from {full['auc']:.4f} to {ctl_auc:.4f} "
                 f"({_f(ctl_auc - full['auc'])}). Against that control (same seeds, same shuffles), Saec + retraining "
                 f"is at " + ", ".join(f"{_f(vs_ctl[k])} (k={k})" for k in ks)
                 + f" AUC and {_span([vs_ctl_ll[k] for k in ks])} log loss.\n")
        if len(modes) > 1:
            diff = [abs(_m(a) - _m(b)) for a, b in zip(_by_k(res, lambda r: r[modes[0]]["auc"]).values(),
                                                        _by_k(res, lambda r: r[modes[1]]["auc"]).values())]
            text += (f"- *`mean` vs `sum` gradient*: the two rules' mean AUC differ by at most {max(diff):.4f} over all "
                     f"k, less than the seed-to-seed spread. That is what Adagrad predicts: it divides every "
                     f"coordinate's gradient by the root of that coordinate's own accumulated squares, so dividing a "
                     f"centroid's gradient by its number of distinct members in the batch (a factor that varies "
                     f"little from batch to batch for a given centroid) nearly cancels. The averaging rule of §2.3 "
                     f"can only matter with an optimizer that is not per-coordinate scale-free (e.g. SGD); with "
                     f"Adagrad the cheaper `sum` backward ([lookup_cost.md](lookup_cost.md)) loses nothing.\n")
        for mode in (m for m in modes if m.endswith("+full")):
            d = {k: _m(v) for k, v in _by_k(res, lambda r: r[mode]["auc"] - full["auc"]).items()}
            dl = {k: _m(v) for k, v in _by_k(res, lambda r: r[mode]["logloss"] - full["logloss"]).items()}
            text += (f"- *Retraining on the full model's predictions* (`{mode}`: same epoch, targets = the full "
                     f"model's click probabilities instead of the labels, `retrain(..., full=model)`): ΔAUC vs the "
                     f"reference " + ", ".join(f"{_f(d[k])} (k={k})" for k in ks) + f"; Δlog loss "
                     f"{_span(list(dl.values()))}.\n")
        if res.get("variants"):
            v = res["variants"]
            cells = []
            for k in dict.fromkeys(r["k"] for r in v if r["k"] is not None):
                best = max(("lr/10", "codebooks only", "codebooks only, lr/10"),
                           key=lambda n: _m([r["auc"] for r in v if r["k"] == k and r["variant"] == n]))
                best_auc = _m([r["auc"] for r in v if r["k"] == k and r["variant"] == best])
                cells.append(f"k={k}: best gentler recipe `{best}` {best_auc:.4f} vs label retraining "
                             f"{_m([r[modes[0]]['auc'] for r in res['runs'] if r['k'] == k]):.4f} vs no retraining "
                             f"{_m([r['before']['auc'] for r in res['runs'] if r['k'] == k]):.4f}")
            text += (f"- *Gentler retraining* (lr/10, codebooks only): " + "; ".join(cells) + ". A smaller step "
                     f"narrows the loss from retraining; on this static task no recipe that fits the labels "
                     f"beats not retraining at all (fitting the full model's predictions, above, matches or "
                     f"beats it).\n")
        if res.get("ablation"):
            k = args.ablation_k
            ab = {tuple(r["fields"]): [] for r in res["ablation"]}
            for r in res["ablation"]:
                ab[tuple(r["fields"])].append(r["before"]["auc"] - full["auc"])
            parts = ", ".join(f"{'+'.join(f)} {_f(_m(x))}" for f, x in ab.items())
            text += f"- *Which field* (k={k}, one field clustered, before retraining, ΔAUC vs full): {parts}.\n"
            if "item" in args.ablation_fields:
                rs = [r for r in res["ablation"] if r["fields"] == ["item"]]
                ref = res["ablation_buckets_ref"]["item"]
                rows = []
                for i, (_, _, label) in enumerate(BUCKETS):
                    if ref["full"][i]["n"] == 0 or i == 0:
                        continue
                    db = _m([r["buckets_before"][i]["logloss"] for r in rs]) - ref["full"][i]["logloss"]
                    da = _m([r["buckets"][i]["logloss"] for r in rs]) - ref["control"][i]["logloss"]
                    dv = _m([r["vanilla"]["buckets"][i]["logloss"] for r in rs]) - ref["full"][i]["logloss"]
                    rows.append((label, ref["full"][i]["n"], db, da, dv))
                auc_fast = _m([r["before"]["auc"] for r in rs]) - full["auc"]
                auc_van = _m([r["vanilla"]["before"]["auc"] for r in rs]) - full["auc"]
                rare_fast, rare_van = rows[0][2], rows[0][4]
                lead = ("Rarely seen items lose most (a small bucket, so a noisy number)." if
                        rare_fast == max(r[2] for r in rows) else "The loss is not concentrated on rare items.")
                verdict = ("is not what costs it" if rare_van >= 0.5 * rare_fast else
                           "accounts for part of it" if rare_van > 0 else "is what costs it")
                text += ("  Inside the item field, the log loss added by compression (before retraining) by how often "
                         "the test row's item was seen in training: "
                         + ", ".join(f"{lab}: {_f(db)} ({n:,} rows)" for lab, n, db, _, _ in rows)
                         + f". {lead} Fast clustering (k-means on the "
                         f"{min(100 * k, len(ml['item'])):,} most frequent of {len(ml['item']):,} items, the rest only "
                         f"assigned) {verdict}: with vanilla k-means on all items the same buckets move by "
                         + ", ".join(f"{lab}: {_f(dv)}" for lab, _, _, _, dv in rows)
                         + f" (item-only ΔAUC {_f(auc_fast)} fast, {_f(auc_van)} vanilla). After retraining, the "
                         f"rarest items do better than in the retrained uncompressed control ("
                         + ", ".join(f"{lab}: {_f(da)}" for lab, _, _, da, _ in rows[:2])
                         + "), which fits the paper's argument that a shared, retrained centroid serves a rarely "
                         "seen feature better than its own vector (§3.2); here it concerns few test rows.\n")
        text += "\n"
    if len(by_model) > 1 and "dssm" in by_model and "deepfm" in by_model:
        text += ("**Where and why Saec loses.** (1) Too small a k: with 5-10 centroids a field is reduced to as many "
                 "levels and both models lose clearly. (2) DeepFM loses at every ratio tried, more than DSSM at the "
                 "same k: its vectors are less one-dimensional (see the principal-axis shares), presumably because its "
                 "FM term reads inner products between field vectors, which a few centroids along one axis cannot "
                 "keep. (3) Retraining as implemented (a full extra epoch over the same static data with a restarted "
                 "Adagrad) does not recover the loss; on DSSM the extra epoch costs accuracy even for the uncompressed "
                 "model, and on DeepFM the uncompressed model gains from it while the compressed one does not, which "
                 "widens the gap against the control. (4) What the paper reports "
                 "(Saec above the baseline) rests on many rare, under-trained features and on retraining with "
                 "fresh hourly data (§2.1, §3.2). MovieLens-1M has neither: a median user / item / zip has "
                 + " / ".join(f"{int(np.median(ml[f])):,}" for f in big) + " training rows and "
                 + " / ".join(f"{(ml[f] < 10).mean():.1%}" for f in big)
                 + " of them fewer than 10. The streaming benchmark on the synthetic trace is where that claim can "
                 "be tested.\n\n")
    return text


def report(task, results: list[dict], args, argv: list[str], elapsed: float, peak_mib: float) -> str:
    text = header("Saec on MovieLens-1M CTR: accuracy vs compression ratio", argv)
    text += (
        f"\nTask (as in [baseline.md](baseline.md)): label = rating >= 4, split by timestamp 80/10/10, vocabularies "
        f"from the training split only. Total run time {elapsed / 60:.1f} min, peak RSS {peak_mib:,.0f} MiB.\n\n"
        f"```\n{task.summary()}\n```\n\n")
    text += field_table(task)
    text += (
        f"\n**Protocol.** The full model is trained once per architecture (Adagrad lr {args.lr}, batch "
        f"{args.batch_size}, up to {args.epochs} epochs, early stopping on valid AUC with patience 2, best epoch "
        f"kept); every compression below starts from that same model. Saec: `SaecConfig(k, eligibility = "
        f"max(1, {args.min_field}/k), init=\"kmeans++\", fast=True, top_n=None)`, i.e. **a field is clustered iff it "
        f"has >= {args.min_field} features** for every k, which selects user (5,400), item (3,662) and zip (3,200) "
        f"and leaves the five small fields (<= 81 features) full. (The paper's rule, eligibility 100, needs "
        f">= 100 k features: on MovieLens it clusters nothing above k = 54, so it is scaled to the data here.) "
        f"Fast clustering trains k-means on the 100 k most frequent features of a field, which for k >= 55 is the "
        f"whole field (vanilla k-means). Retraining = `saec.pipeline.flow.retrain`: one epoch over the training "
        f"split with a fresh Adagrad, fitting the labels (`mean`, `sum`) or the full model's predictions "
        f"(`mean+full`, the library's default since this run). Each (k, seed) is compressed once and retrained with each gradient rule "
        f"(`mean`: Saec's averaged gradient, §2.3; `sum`: plain autograd). Seeds {list(range(args.seeds))} set both "
        f"the k-means initialisation and the retraining shuffle; cells are mean ± sample std over the seeds. "
        f"**Control** = the uncompressed model given the same extra epoch (`retrain` on a copy, same seeds), "
        f"because retraining is one more epoch than the reference had. Sizes count embedding tables only, float32 "
        f"vectors plus one mask entry per feature of a clustered field (uint8 for k <= 256, uint16 above), as the "
        f"paper does (§3.2); the per-field OOV vectors and the MLP are not counted.\n\n")
    text += "![AUC and log loss vs compression ratio](movielens_saec.png)\n\n"
    text += findings(task, results, args)
    for res in results:
        modes = res["modes"]
        text += f"## {res['model'].upper()}\n\n"
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
            mode0 = modes[0]
            rows = [["k", *fields]]
            rows.append(["full table (control epoch)",
                         *[f"{np.mean([r['drift'][f] for r in res['control']]):.3f}" for f in fields]])
            for k in dict.fromkeys(r["k"] for r in res["runs"]):
                rs = [r for r in res["runs"] if r["k"] == k]
                rows.append([f"codebook, k={k}", *[f"{np.mean([r[f'drift_{mode0}'][f] for r in rs]):.3f}"
                                                   for f in fields]])
            text += markdown_table(rows)
        secs = [r["compress_s"] for r in res["runs"]]
        rt = [r[f"retrain_s_{m}"] for r in res["runs"] for m in modes]
        text += (f"\nCompression took {np.median(secs):.2f} s (median; max {max(secs):.2f} s) per model; retraining "
                 f"{np.median(rt):.1f} s per epoch (median); the control epoch "
                 f"{np.median([r['retrain_s'] for r in res['control']]):.1f} s.\n\n")
        if res.get("variants"):
            text += ("### Is it the compression or the extra epoch? Retraining recipes (`mean` rule)\n\n"
                     f"`lr/10` = Adagrad lr {args.lr / 10:g} (the paper's 0.001) for the retraining epoch; `codebooks "
                     "only` = the MLP, the small fields and the OOV vectors frozen, only the clustered codebooks "
                     "retrained. Label retraining with all parameters at lr "
                     f"{args.lr:g} is the sweep above (`mean`). All recipes here fit the labels. Mean ± std over seeds.\n\n")
            ctl_slow = [r for r in res["variants"] if r["k"] is None]
            for metric, title, end in (("auc", "Test AUC", ""), ("logloss", "\nTest log loss", "\n")):
                rows = [["k", "no retraining", "retrain (labels)", "retrain lr/10", "codebooks only",
                         "codebooks only, lr/10"]]
                rows.append(["uncompressed", f"{res['full'][metric]:.4f}", ms([r[metric] for r in res["control"]]),
                             ms([r[metric] for r in ctl_slow]), "", ""])
                for k in dict.fromkeys(r["k"] for r in res["variants"] if r["k"] is not None):
                    sweep = [r for r in res["runs"] if r["k"] == k]
                    cells = [ms([r[metric] for r in res["variants"] if r["k"] == k and r["variant"] == v])
                             for v in ("lr/10", "codebooks only", "codebooks only, lr/10")]
                    rows.append([f"k={k}", ms([r["before"][metric] for r in sweep]),
                                 ms([r["mean"][metric] for r in sweep]), *cells])
                text += f"{title}:\n\n" + markdown_table(rows) + end
        if res["ablation"]:
            k = args.ablation_k
            text += (f"### Which field costs accuracy (k = {k}, only the listed field clustered, `mean` rule)\n\n")
            rows = [["clustered", "ratio of that field", "AUC before retraining", "ΔAUC before vs full",
                     "AUC retrained", "ΔAUC retrained vs full+1 epoch", "log loss before", "Δlog loss before vs full",
                     "log loss retrained", "Δlog loss retrained vs full+1 epoch"]]
            ctl = {r["seed"]: r for r in res["control"]}
            for fields_ in dict.fromkeys(tuple(r["fields"]) for r in res["ablation"]):
                rs = [r for r in res["ablation"] if tuple(r["fields"]) == fields_]
                n = sum(task.num_embeddings[f] for f in fields_)
                dims = {f: task.schema[f].dim for f in fields_}
                before_b = sum(task.num_embeddings[f] * dims[f] * 4 for f in fields_)
                after_b = sum(k * dims[f] * 4 + task.num_embeddings[f] * mask_dtype(k).itemsize for f in fields_)
                rows.append(["+".join(fields_), f"{before_b / after_b:.1f}x ({n:,} → {k * len(fields_)} vectors)",
                             ms([r["before"]["auc"] for r in rs]),
                             ms([r["before"]["auc"] - res["full"]["auc"] for r in rs]),
                             ms([r["mean"]["auc"] for r in rs]),
                             ms([r["mean"]["auc"] - ctl[r["seed"]]["auc"] for r in rs]),
                             ms([r["before"]["logloss"] for r in rs]),
                             ms([r["before"]["logloss"] - res["full"]["logloss"] for r in rs]),
                             ms([r["mean"]["logloss"] for r in rs]),
                             ms([r["mean"]["logloss"] - ctl[r["seed"]]["logloss"] for r in rs])])
            text += markdown_table(rows)
            text += ("\nTest log loss by how often the row's feature of the clustered field occurs in the training "
                     "split (the same k, that field alone clustered; Saec columns are the mean over seeds, the "
                     "full + 1 epoch control is seed 0; *vanilla k-means* = the same compression with `fast=False`, "
                     "k-means on every feature of the field instead of the 100 k most frequent). Rows with an OOV "
                     "feature use the field's own OOV vector, "
                     "which is never clustered, so they change only through the shared layers.\n\n")
            rows = [["field", "train count of the feature", "test rows", "full", "Saec before retraining",
                     "Δ before − full", "Δ before − full, vanilla k-means", "full + 1 epoch", "Saec retrained",
                     "Δ retrained − (full + 1 epoch)"]]
            for f in args.ablation_fields:
                rs = [r for r in res["ablation"] if r["fields"] == [f]]
                ref = res["ablation_buckets_ref"][f]
                for i, (_, _, label) in enumerate(BUCKETS):
                    n = ref["full"][i]["n"]
                    if n == 0:
                        continue
                    sb = np.mean([r["buckets_before"][i]["logloss"] for r in rs])
                    sa = np.mean([r["buckets"][i]["logloss"] for r in rs])
                    sv = np.mean([r["vanilla"]["buckets"][i]["logloss"] for r in rs])
                    rows.append([f, label, f"{n:,}", f"{ref['full'][i]['logloss']:.4f}", f"{sb:.4f}",
                                 f"{sb - ref['full'][i]['logloss']:+.4f}", f"{sv - ref['full'][i]['logloss']:+.4f}",
                                 f"{ref['control'][i]['logloss']:.4f}",
                                 f"{sa:.4f}", f"{sa - ref['control'][i]['logloss']:+.4f}"])
            text += markdown_table(rows)
        text += "\n"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="movielens-1m", choices=sorted(movielens.SOURCES))
    ap.add_argument("--models", default="dssm,deepfm")
    ap.add_argument("--ks", default="5,10,20,50,100,200,500,1000")
    ap.add_argument("--deepfm-ks", default="10,50,200,1000", help="DeepFM sweeps fewer k to keep the run short")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grad-modes", default="mean,sum,mean+full",
                    help="retraining rules: mean / sum gradient; +full = fit the full model's predictions")
    ap.add_argument("--deepfm-grad-modes", default="mean", help="DeepFM retrains with fewer rules to keep the run short")
    ap.add_argument("--min-field", type=int, default=1000,
                    help="eligibility = max(1, MIN_FIELD / k): fields with >= MIN_FIELD features are clustered")
    ap.add_argument("--epochs", type=int, default=20, help="cap of the full model's training (early stopping)")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--ablation-k", type=int, default=20, help="0 skips the per-field ablation")
    ap.add_argument("--ablation-fields", default="user,item,zip")
    ap.add_argument("--variant-ks", default="20,200", help="k of the retraining-recipe comparison ('' skips it)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/movielens_saec.md"))
    ap.add_argument("--png", type=Path, default=None, help="default: OUT with .png")
    ap.add_argument("--json", type=Path, default=None, help="also dump the raw results here")
    ap.add_argument("--from-json", type=Path, default=None, help="only re-render the report from a --json dump")
    args = ap.parse_args()
    args.ks = [int(k) for k in args.ks.split(",")]
    args.deepfm_ks = [int(k) for k in args.deepfm_ks.split(",")]
    args.grad_modes = args.grad_modes.split(",")
    args.deepfm_grad_modes = args.deepfm_grad_modes.split(",")
    args.ablation_fields = args.ablation_fields.split(",")
    args.variant_ks = [int(k) for k in args.variant_ks.split(",") if k]
    png = args.png or args.out.with_suffix(".png")
    argv = ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/movielens_saec.py", *sys.argv[1:]]

    movielens.fetch(args.dataset)
    task = movielens.movielens_ctr(args.dataset)
    if args.from_json:
        dump = json.loads(args.from_json.read_text())
        results, elapsed, argv, peak = dump["results"], dump["elapsed"], dump["argv"], dump.get("peak_rss_mib", 0.0)
    else:
        start = time.perf_counter()
        results = []
        for name in args.models.split(","):
            results.append(run_model(name, task, args, lambda s: print(f"{time.perf_counter() - start:6.0f}s {s}",
                                                                       flush=True)))
        elapsed = time.perf_counter() - start
        peak = peak_rss_mib()
        if args.json:
            write_text(args.json, json.dumps({"results": results, "elapsed": elapsed, "argv": argv,
                                              "peak_rss_mib": peak}, indent=1))
    plot(results, png)
    write_text(args.out, report(task, results, args, argv, elapsed, peak))
    print(f"wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
