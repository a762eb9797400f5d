"""MEmCom and the other embedding methods on MovieLens-1M CTR (MEmCom §5.1 shape, App. A.2 and A.4).

For every method and target ratio r, a DSSM is built with :func:`saec.models.build_compressed_model`: each large
field (>= :data:`saec.models.SMALL_FIELD_ROWS` features: user, item, zip) gets the method's largest table with at
most 1/r of the full table's parameters; the small fields stay full. Each model is trained from scratch (Adagrad,
early stopping on valid AUC as :func:`saec.train.loop.fit` does) and evaluated on test. The reference is the same
DSSM with full tables (the ``"full"`` method).

Trained MEmCom models are also analysed: how many features sharing a ``U`` row still have distinct multipliers
(App. A.4, :func:`saec.nn.memcom.unique_embeddings`), and their accuracy at float16 and at 8, 4, 2-bit row-wise
integers (App. A.2, :func:`saec.nn.quantize.simulate_quantization`).

:func:`run` is a resumable sweep (:class:`saec.bench.sweep.Sweep`): its record is written after every cell, a
later pass continues it and ``rerun`` runs chosen cells again. :func:`render` writes the page and its two plots
from the record alone.
"""

from __future__ import annotations

import inspect
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from saec.bench.baseline import BaselineConfig
from saec.bench.report import (and_list, checksums, count_word, group_by, header, markdown_table, mean, mean_std,
                               peak_rss_text, recorded_config, recorded_environment, relative_loss, save_figure)
from saec.bench.sweep import Sweep
from saec.errors import SaecError
from saec.io import write_text
from saec.nn.base import param_count
from saec.nn.registry import PAPER_VARIANTS

VARIANTS = {"full": ("full", {}), **PAPER_VARIANTS}
"""Label -> (registry method, hyperparameters): the reference, then MEmCom §5's comparators."""
MEMCOM = ("memcom", "memcom_bias")
BITS = (32, 16, 8, 4, 2)
UNIQUE_TOL = 1e-5
"""Two multipliers differ when they differ by more than this (App. A.4)."""
UNIQUE_TOL_TEXT = f"{UNIQUE_TOL:.0e}".replace("e-0", "e-")
PAPER_UNIQUE = (99.98, 40)
"""MEmCom App. A.4: % of row-sharing pairs with distinct multipliers, at this compression ratio (Arcade)."""
PAPER_INT8_LOSS = (0, 0.13)
"""MEmCom App. A.2: the range of relative accuracy loss (%) at 8 bits."""
PAPER_DIM = 256
"""MEmCom §5.1's embedding width."""
SCRIPT = "benchmarks/memcom_classification.py"


@dataclass(frozen=True)
class ClassificationConfig:
    """What :func:`run` does: the ``methods`` (:data:`VARIANTS` labels; ``full`` is the reference) at each target
    ``ratios``, ``seeds`` seeds for the ``seeded`` methods (one for the others), the large fields ``dim`` wide, the
    training, TT tables of higher rank than ``tt_max_rank`` skipped, and the MEmCom ratio whose App. A.2 analysis
    also quantizes the dense layers."""

    dataset: str = "movielens-1m"
    methods: tuple[str, ...] = tuple(VARIANTS)
    ratios: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    seeds: int = 2
    seeded: tuple[str, ...] = ("full", "memcom")
    dim: int = 64
    epochs: int = 8
    patience: int = 1
    lr: float = 0.01
    batch_size: int = 1024
    tt_max_rank: int = 128
    all_scope_ratio: float = 16.0

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in VARIANTS]
        if unknown or "full" not in self.methods:
            raise SaecError(f"methods must include full and name only {list(VARIANTS)}; unknown: {unknown}")


def command(cfg: ClassificationConfig) -> list[str]:
    """The command line that runs ``cfg`` in one pass: the script with every setting that differs from its default."""
    out = ["flock", "/tmp/saec-bench.lock", "python", SCRIPT]
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value != f.default:
            text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) \
                if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)
            out += [f"--{f.name.replace('_', '-')}", text]
    return out


def _movielens_task(cfg: ClassificationConfig):
    from saec.data import movielens

    movielens.fetch(cfg.dataset)
    return movielens.movielens_ctr(cfg.dataset, dims={"user": cfg.dim, "item": cfg.dim, "zip": cfg.dim})


def task_facts(task) -> dict[str, Any]:
    """What the page says about the data: the task's summary, every field's features and width, the large ones."""
    from saec.models import large_fields

    return {"summary": task.summary(), "large": list(large_fields(task.schema, task.vocabs)),
            "fields": {f.name: {"features": len(task.vocabs[f.name]), "dim": f.dim} for f in task.schema.fields}}


def precision(model, task, with_dense: bool) -> list[dict[str, Any]]:
    """Test metrics and true bytes at every precision (embeddings only; also dense layers if asked)."""
    from saec.nn.quantize import simulate_quantization
    from saec.train.loop import evaluate

    rows = []
    for scope in ("embeddings", "all") if with_dense else ("embeddings",):
        for bits in BITS:
            q, size = simulate_quantization(model, bits, scope)
            rows.append({"scope": scope, "bits": bits, **evaluate(q, task.test), "nbytes": size.nbytes,
                         "embedding_nbytes": size.embedding_nbytes})
    return rows


def run_one(task, label: str, ratio: float, seed: int, cfg: ClassificationConfig) -> dict[str, Any]:
    """Train and evaluate one (method, ratio, seed); plain data."""
    from saec.models import build_compressed_model, large_fields
    from saec.nn.memcom import unique_embeddings
    from saec.train.loop import TrainConfig, evaluate, fit

    method, hyper = VARIANTS[label]
    out: dict[str, Any] = {"label": label, "ratio": ratio, "seed": seed}
    try:
        model = build_compressed_model("dssm", task.schema, task.vocabs, method, ratio, hyper=dict(hyper), seed=seed)
    except ValueError as e:
        return {**out, "skipped": str(e)}
    large = large_fields(task.schema, task.vocabs)
    tables = model.embeddings.tables
    if label == "tt" and getattr(tables[large[0]], "rank", 0) > cfg.tt_max_rank:
        return {**out, "skipped": f"TT rank {tables[large[0]].rank} > --tt-max-rank {cfg.tt_max_rank} (too slow)"}
    tcfg = TrainConfig(lr=cfg.lr, epochs=cfg.epochs, patience=cfg.patience, batch_size=cfg.batch_size, seed=seed,
                       progress=False)
    t = time.perf_counter()
    history = fit(model, task.train, task.valid, tcfg)
    out["train_s"] = time.perf_counter() - t
    out["epochs"], out["best_epoch"] = len(history.epochs), history.best_epoch
    out.update(evaluate(model, task.test))
    out["field_params"] = sum(param_count(tables[f]) for f in large)
    out["embedding_params"] = param_count(model.embeddings)
    out["model_params"] = param_count(model)
    out["embedding_bytes"] = sum(model.embeddings.table_bytes().values())
    out["hyper"] = {f: repr(tables[f].extra_repr()) if hasattr(tables[f], "extra_repr") else "" for f in large}
    if label in MEMCOM or label == "full":
        out["precision"] = precision(model, task, ratio == cfg.all_scope_ratio or label == "full")
    if label in MEMCOM:
        out["unique"] = {}
        for f in large:
            seen = np.flatnonzero(task.vocabs[f].counts > 0)
            u = unique_embeddings(tables[f], tol=UNIQUE_TOL, ids=seen)
            out["unique"][f] = {**u._asdict(), "pair_fraction": u.pair_fraction, "feature_fraction": u.feature_fraction,
                                "num_buckets": tables[f].num_buckets, "features_total": len(seen)}
    return out


def plan(cfg: ClassificationConfig) -> list[tuple[str, float, int]]:
    """(method, ratio, seed) of every cell; the most telling ratios first, each with all its seeds, so a cut-short
    sweep has the most to show."""
    order = sorted(cfg.ratios, key=lambda r: (r != 16, r != 4, r != 64, r == 1, r))
    cells = [("full", 1.0, s) for s in range(cfg.seeds if "full" in cfg.seeded else 1)]
    for r in order:
        cells += [(m, r, 0) for m in cfg.methods if m != "full"]
        cells += [(m, r, s) for s in range(1, cfg.seeds) for m in cfg.seeded if m != "full"]
    return cells


def run(cfg: ClassificationConfig, pass_command: list[str], json_path: str | Path, resume: bool = False,
        rerun=(), progress: bool = True) -> dict[str, Any]:
    """Run every cell of :func:`plan` not yet in the record at ``json_path`` (all of them unless ``resume`` or
    ``rerun``, :class:`~saec.bench.sweep.Sweep`), writing the record after each; returns it."""
    import torch

    task = _movielens_task(cfg)
    sweep = Sweep(json_path, {"args": asdict(cfg), "task": task_facts(task)}, pass_command, rows="runs",
                  wall="wall_s", method_key="label", resume=resume, rerun=rerun)
    done = {(r["label"], r["ratio"], r["seed"]) for r in sweep.rows}
    cells = plan(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the timings of one process on one thread, whatever else shares the machine
    try:
        for i, (label, ratio, seed) in enumerate(cells):
            if (label, ratio, seed) in done:
                continue
            r = run_one(task, label, ratio, seed, cfg)
            sweep.add(r)
            if progress:
                msg = r.get("skipped") or (f"AUC {r['auc']:.4f} logloss {r['logloss']:.4f} epochs {r['epochs']} "
                                           f"({r['train_s']:.0f} s)")
                print(f"[{i + 1}/{len(cells)} {time.perf_counter() - sweep.start:6.0f} s] {label} x{ratio:g} "
                      f"seed {seed}: {msg}", flush=True)
        return sweep.save()  # while the cells' one thread is set: the record's environment is theirs
    finally:
        torch.set_num_threads(threads)


def complete(record: dict[str, Any]) -> dict[str, Any]:
    """A record written before the task's facts were stored, with the facts of the data set it read (computed
    again: they are the data's, not the run's). Records that hold them are returned as they are."""
    if "task" in record:
        return record
    return {**record, "task": task_facts(_movielens_task(recorded_config(ClassificationConfig, record["args"])))}


# ---- the page ---------------------------------------------------------------------------------------------

LEGACY_HISTORY = (
    "; the sweep was stopped once and continued\nwith `--resume`, which skips the runs already in the JSON dump; a "
    "third pass added the TT rows the first passes\nhad written as skipped (TT rank cap) after TT's row computation "
    "got faster: those rows\nwere removed from the JSON by hand, since `--resume` counts a skipped row as done; a "
    "fourth pass re-ran\n`low_dim` with `projection=\"pad\"` (MEmCom §5's \"reduce embedding dim\", as in "
    "`saec.nn.registry.PAPER_VARIANTS`;\nthe earlier passes had used the default linear projection, the same model as "
    "`factorized`): its {low} removed from the JSON by hand and the sweep resumed with the command above,\n"
    "which trained only those; this page was re-rendered from the dump with `--from-json`")
"""How the committed record was made, from before passes were logged and cells could be re-run with ``--rerun``
(its counts come from the record)."""


def _history(record: dict[str, Any]) -> str:
    """For a record begun before passes were logged, its history (inside the wall-time sentence's parenthesis)."""
    if not record.get("predates_logging", "environment" not in record):
        return ""
    low = [r for r in record["runs"] if r["label"] == "low_dim"]
    skipped = [f"{r['ratio']:g}x" for r in low if "skipped" in r]
    rows = f"{count_word(len(low))} row{'s' if len(low) != 1 else ''}" + (
        f"\n({count_word(len(low) - len(skipped))} trained, {and_list(skipped)} skipped)" if skipped else "") + (
        " were" if len(low) != 1 else " was")
    return LEGACY_HISTORY.format(low=rows)


def _passes(record: dict[str, Any]) -> str:
    """The logged passes of a record made in several."""
    import shlex

    commands = record.get("commands") or []
    if len(commands) < 2:
        return ""
    return ("\nThe record was made in passes, each continuing the JSON the earlier ones wrote:\n\n```\n"
            + "\n".join("(a pass made before passes were logged)" if c is None else shlex.join(c) for c in commands)
            + "\n```\n")


def _ranks(hyper: dict[str, str]) -> list[int]:
    return [int(m.group(1)) for h in hyper.values() if (m := re.search(r"rank=(\d+)", h))]


def _capped(g: dict, labels: list[str], ratios: list[float], epochs: int) -> str:
    """The methods (with their ratios) whose runs stopped at the epoch cap with their best epoch the last."""
    parts = []
    for m in labels:
        at = [r for r in ratios if any(x["epochs"] == x["best_epoch"] == epochs for x in g.get((m, r), []))]
        if at:
            parts.append(f"{m} at {', '.join(f'{r:g}x' for r in at)}")
    return "; ".join(parts) or "none"


def _reading(g: dict, skipped: set, labels: list[str], ratios: list[float], ref: list[dict],
             cfg: ClassificationConfig, auc_loss) -> str:
    """What the low-dimensional and factorized tables show, every number from the record."""
    def auc_of(m: str, r: float) -> float | None:
        return mean([x["auc"] for x in g[(m, r)]]) if (m, r) in g else None

    losses = [auc_loss(x) for m in ("low_dim", "factorized") for r in ratios for x in g.get((m, r), [])]
    both = [r for r in ratios if auc_of("low_dim", r) is not None and auc_of("factorized", r) is not None]
    gap = [auc_of("factorized", r) - auc_of("low_dim", r) for r in both]
    ref_gap = abs(ref[0]["auc"] - ref[1]["auc"]) if len(ref) > 1 else None
    text = ""
    if losses:  # the low-dimensional and factorized tables were run
        text = (f"- `low_dim` is MEmCom §5's \"reduce embedding dim\": `projection=\"pad\"`, so a large field stores r = "
                f"{cfg.dim} / target\n  numbers per feature and the MLP sees them zero-padded to {cfg.dim}, the same as an "
                "MLP with a narrower input\n  layer (its weights on the padded inputs are dead, but counted in \"ratio "
                f"model\"). `factorized` (ALBERT)\n  stores a v x r table times a learned r x {cfg.dim} matrix: a smaller r "
                "for the same budget, but a learned\n  projection (`low_dim` with its default linear projection would be "
                "the same model). Both keep a vector\n  per feature, and a DSSM over MovieLens needs few dimensions per "
                "field, which is why both stay within\n  "
                f"{max(losses):.2f}% AUC of the reference through the sweep.")
        if gap and min(gap) > 0:
            text += (f" `low_dim` is {min(gap):.4f}-{max(gap):.4f} AUC below `factorized` at\n  {both[0]:g}x-{both[-1]:g}x "
                     "(one seed each" + (f"; the two reference seeds differ by {ref_gap:.4f})" if ref_gap is not None
                                         else ")"))
        elif gap:
            text += " `low_dim` minus `factorized`: " + ", ".join(f"{r:g}x {-d:+.4f}" for r, d in zip(both, gap)) + \
                " (one seed each)"
        top = max(ratios)
        best_top = max((m for m in labels if (m, top) in g), key=lambda m: auc_of(m, top), default=None)
        if ("factorized", top) in skipped and best_top == "low_dim":
            text += (f"; at {top:g}x, where `factorized`'s\n  smallest table (v + {cfg.dim} parameters) exceeds the budget "
                     "of v, `low_dim` with one number per feature is the\n  best method run.")
        else:
            text += "."
        ahead = [(r, auc_of("memcom_bias", r), auc_of("low_dim", r)) for r in ratios
                 if auc_of("memcom_bias", r) is not None and auc_of("low_dim", r) is not None]
        over = [(r, a, b) for r, a, b in ahead if a > b]
        under = [(r, a, b) for r, a, b in ahead if a <= b]
        if over or under:
            text += " MEmCom with bias is"
            if over:
                text += " ahead of `low_dim` at " + ", ".join(f"{r:g}x ({a:.4f} vs {b:.4f})" for r, a, b in over)
            if under:
                text += (" and" if over else "") + (f" behind it at {under[0][0]:g}x-{under[-1][0]:g}x, by "
                                                    f"{min(b - a for _, a, b in under):.4f}-{max(b - a for _, a, b in under):.4f}")
            text += "."
        text += "\n"
    text += ("- MEmCom's `W` (with bias) adds one learned number per feature to every coordinate of its vector: a\n"
             "  per-user, per-item, per-zip offset, which is much of what a rating-derived CTR label depends on. "
             "Without\n  bias, every feature sharing a `U` row is confined to the line through `U[j]`, and the model "
             "learns slowly\n  (watch the epochs column: runs that stop at the cap were still improving).\n")
    fac = g.get(("factorized", 16.0)) or next((g[("factorized", r)] for r in ratios if ("factorized", r) in g), None)
    ref_field = ref[0]["field_params"]
    example = (f", e.g. {ref_field / fac[0]['field_params']:.0f}x at the {fac[0]['ratio']:g}x target" if fac else "")
    divisible = all(cfg.dim % r == 0 for r in ratios)
    text += ("- `factorized` and `mixed_dim` move in coarse steps (an integer width per feature), so the largest "
             "table\n  within the budget is often well below it: their achieved ratio (column \"ratio field\") is "
             f"higher than the\n  target{example}. They are ahead even so. `low_dim` with padding spends exactly v x r,\n"
             + (f"  and {cfg.dim} is divisible by every target, so it meets the targets exactly.\n" if divisible else
                f"  so it meets a target exactly where {cfg.dim} is divisible by it.\n"))
    text += ("- Frequency matters: ids are frequency-ranked, so `i mod m` gives the m most frequent features rows of\n"
             "  their own (hashing, MEmCom, QR's remainder), and truncate / frequency double hashing / mixed dimensions\n"
             "  use the training counts directly.\n")
    return "\n## Reading the numbers\n\n" + text


def _deviations(record: dict[str, Any], g: dict, labels: list[str], ratios: list[float], cfg: ClassificationConfig
                ) -> str:
    """How this run departs from MEmCom §5.1, every number from the record (or the paper, cited)."""
    from saec.data.movielens import movielens_schema

    task = record["task"]
    default_dims: dict[int, list[str]] = {}
    for f in movielens_schema().fields:
        if f.name in task["large"]:
            default_dims.setdefault(f.dim, []).append(f.name)
    narrow = sorted(default_dims)
    widths = ", ".join(f"{d} for {and_list(default_dims[d])}" for d in sorted(default_dims, reverse=True))
    cannot = " and ".join(f"{d}x{' on' if d == narrow[0] and len(narrow) > 1 else ''} ({', '.join(default_dims[d])})"
                          for d in narrow)
    skipped = {m: min((r["ratio"] for r in record["runs"] if r["label"] == m and "skipped" in r), default=None)
               for m in MEMCOM}
    short = [(m, r) for m, r in skipped.items() if r]
    stops = " and ".join(("MEmCom then stops short of" if m == "memcom" and i == 0 else
                          "MEmCom" if m == "memcom" else "MEmCom with bias" + (" of" if i else " stops short of"))
                         + f" {r:g}x" for i, (m, r) in enumerate(short))
    tt = {r: _ranks(g[("tt", r)][0]["hyper"]) for r in ratios if ("tt", r) in g}
    per_epoch = {r: mean([x["train_s"] / x["epochs"] for x in g[("tt", r)]]) for r in tt}
    full_epoch = mean([x["train_s"] / x["epochs"] for x in g[("full", 1.0)]])
    base = BaselineConfig()
    seeded = ["the reference" if m == "full" else "MEmCom (no bias)" if m == "memcom" else m for m in cfg.seeded]
    text = (
        "\n## Deviations from the paper's §5.1\n\n"
        "- Data and model: the paper's classification sets are 20 Newsgroups, Games and Arcade (inputs of 100K+\n"
        "  ids, 127 purchased apps per example, softmax over classes, accuracy); here the repository's MovieLens-1M\n"
        f"  CTR task ({len(task['fields'])} fields, binary label, AUC and log loss) with the DSSM of `saec.models`. "
        "MovieLens is in the\n  paper only as a *ranking* set (§5.2, issue 4's other half).\n"
        f"- Embedding width: the paper uses e = {PAPER_DIM}. MEmCom spends ``v`` parameters on `V` (and ``v`` more on "
        "`W`\n  with bias) whatever the ratio, so on a v x e field it cannot go below about e x (e/2 x with bias). At "
        f"the\n  task's default widths ({widths}) MEmCom could not be built from {cannot} at all, so\n"
        f"  the large fields are {cfg.dim} wide here" + (f": {stops} (listed\n  as not run)" if stops else "")
        + ". The reference is retrained at this width.\n"
        f"- Training: at most {cfg.epochs} epochs, early stopping with patience {cfg.patience} (the library's `fit`; "
        f"the\n  baseline page uses {base.epochs} and {base.patience}) to keep the sweep near the hour on a machine "
        f"shared with other\n  jobs. Runs that stop at the cap (epochs column \"{cfg.epochs} ({cfg.epochs})\": "
        f"{_capped(g, labels, ratios, cfg.epochs)}) were still improving, so they are understated.\n"
        "- Ratio 1x: only the reference is trained; at 1x every method's table is (nearly) the full one.\n")
    if tt:
        text += ("- TT-Rec: ranks of the large fields' TT cores by target: "
                 + ", ".join(f"{r:g}x {min(k)}-{max(k)}" for r, k in tt.items() if k)
                 + "; seconds per training epoch " + ", ".join(f"{r:g}x {s:.0f}" for r, s in per_epoch.items())
                 + f" (the full model: {full_epoch:.0f}). TT tables of rank above `--tt-max-rank` ({cfg.tt_max_rank}) "
                 "are skipped. TT's \"train s\" column compares across ratios only within a pass.\n")
    text += (f"- Seeds: {count_word(cfg.seeds)} for {and_list(seeded)}, one for the others; the sweep does not report\n"
             "  spreads for the other methods, so differences of a few 0.001 AUC between them are within noise (the\n"
             "  two reference seeds differ by the amount shown above).\n"
             "- Lower precision: the paper converts with CoreML (\"linear\" quantization mode) and measures accuracy;\n"
             "  here torch's row-wise affine quantization and test AUC, embeddings only unless the scope says "
             "\"all\".\n")
    return text


def claims(g: dict, labels: list[str], ratios: list[float], prec_models) -> str:
    """The paper's claims held against this run's numbers."""
    out = ["\n## The paper's claims on this data\n"]
    ahead, behind = [], []
    for r in ratios:
        aucs = {m: mean([x["auc"] for x in g[(m, r)]]) for m in labels if (m, r) in g}
        mem = {m: a for m, a in aucs.items() if m in MEMCOM}
        other = {m: a for m, a in aucs.items() if m not in MEMCOM}
        if not mem or not other:
            continue
        best_mem, best_other = max(mem, key=mem.get), max(other, key=other.get)
        item = (f"{r:g}x ({best_mem} {mem[best_mem]:.4f} vs {best_other} {other[best_other]:.4f}, "
                f"{mem[best_mem] - other[best_other]:+.4f})")
        (ahead if mem[best_mem] > other[best_other] else behind).append(item)
    out.append("- *MEmCom has lower accuracy loss than every other method at every ratio (§5.1).* "
               f"Best MEmCom variant ahead of the best other method at: {'; '.join(ahead) or 'no ratio'}. "
               f"Behind at: {'; '.join(behind) or 'no ratio'}.")
    fp16, int8, low = [], [], []
    for m, r in prec_models:
        for x in [y for y in g.get((m, r), []) if y["seed"] == 0 and "precision" in y]:
            p = {q["bits"]: q["auc"] for q in x["precision"] if q["scope"] == "embeddings"}
            fp16.append(relative_loss(p[16], p[32]))
            int8.append(relative_loss(p[8], p[32]))
            low.append((f"{m} {r:g}x", relative_loss(p[4], p[32]), relative_loss(p[2], p[32])))
    if fp16:
        out.append(f"- *No loss at float16 (App. A.2).* Relative AUC loss at float16 over {len(fp16)} trained models: "
                   f"{min(fp16):+.3f}% to {max(fp16):+.3f}%.")
        out.append(f"- *~No loss at 8 bits ({PAPER_INT8_LOSS[0]:g}-{PAPER_INT8_LOSS[1]:g}% in the paper).* Row-wise "
                   f"int8: {min(int8):+.3f}% to {max(int8):+.3f}%.")
        worst = max(low, key=lambda t: t[2])
        out.append(f"- *Accuracy drops below 8 bits.* 4 bits: {min(t[1] for t in low):+.2f}% to "
                   f"{max(t[1] for t in low):+.2f}%; 2 bits: {min(t[2] for t in low):+.2f}% to "
                   f"{max(t[2] for t in low):+.2f}% (worst: {worst[0]}).")
    fr = [(f"{m} {r:g}x {f}", u["pair_fraction"]) for m in MEMCOM for r in ratios
          for x in g.get((m, r), []) if x["seed"] == 0 and "unique" in x for f, u in x["unique"].items() if u["pairs"]]
    if fr:
        lo = min(fr, key=lambda t: t[1])
        out.append(f"- *Row-sharing features keep distinct multipliers in > {PAPER_UNIQUE[0]:g}% of pairs (App. A.4).* "
                   f"Here {100 * min(f for _, f in fr):.3f}% (lowest, {lo[0]}) to {100 * max(f for _, f in fr):.3f}% "
                   "of pairs.")
    return "\n".join(out) + "\n"


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page of a :func:`run` record (one that holds its task's facts: see :func:`complete`), its loss plot at
    ``png_path`` and its precision plot beside it (``_precision.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.data.movielens import movielens_schema
    from saec.models import SMALL_FIELD_ROWS, build_model

    cfg = recorded_config(ClassificationConfig, record["args"])
    png_path = Path(png_path)
    png_bits = png_path.with_name(png_path.stem + "_precision.png")
    task = record["task"]
    g = group_by([r for r in record["runs"] if "skipped" not in r], "label", "ratio")  # the cells that trained
    ref = g[("full", 1.0)]
    ref_auc, ref_ll = mean([r["auc"] for r in ref]), mean([r["logloss"] for r in ref])
    ref_field, ref_emb, ref_model = ref[0]["field_params"], ref[0]["embedding_params"], ref[0]["model_params"]
    labels = [m for m in cfg.methods if m != "full"]
    ratios = list(cfg.ratios)
    large = task["large"]
    small = [n for n in task["fields"] if n not in large]
    large_desc = ", ".join(f"{n} {task['fields'][n]['features']:,} x {task['fields'][n]['dim']}" for n in large)
    small_desc = f"{', '.join(small)}: {sum(task['fields'][n]['features'] for n in small):,} features"
    hidden = "-".join(map(str, inspect.signature(build_model).parameters["hidden"].default))
    default_widths = "/".join(str(f.dim) for f in movielens_schema().fields if f.name in large)

    def auc_loss(r):  # relative AUC loss vs the reference, %
        return relative_loss(r["auc"], ref_auc)

    def ll_loss(r):  # relative log-loss increase vs the reference, %
        return -relative_loss(r["logloss"], ref_ll)

    text = header("MEmCom and other embedding compression methods on MovieLens-1M CTR", command(cfg),
                  recorded_environment(record.get("environment")), checksums(record))
    text += f"""
Benchmark wall time: {record.get('wall_s', float('nan')) / 60:.1f} min (training and analysis, one process,
`torch.set_num_threads(1)`, on a machine shared with other jobs{_history(record)}). Peak RSS {peak_rss_text(record.get('peak_rss_mib'))}.
{_passes(record)}
Task (the repository's MovieLens CTR task, label = rating >= 4, split by time 80/10/10):

```
{task['summary']}
```

Setup. DSSM (embeddings -> concatenation -> MLP {hidden} -> logit), Adagrad lr {cfg.lr}, batch
{cfg.batch_size}, up to {cfg.epochs} epochs with early stopping on validation AUC (patience
{cfg.patience}, best epoch kept), as `saec.train.loop.fit` does. Every model is trained from scratch. The
fields with at least {SMALL_FIELD_ROWS} features ({large_desc}: {ref_field:,} of the
{ref_emb:,} embedding parameters) get the method's largest table with at most 1/r of the full table's
parameters (`saec.models.build_compressed_model`, `make_embedding(..., budget_params=v*e // r)`,
frequency counts from the training vocabularies); the small fields ({small_desc}) and the per-field OOV
vectors stay full float32. The large fields are {cfg.dim} wide here, not the task's default {default_widths}:
see the deviations below. Seeds: {cfg.seeds} for {', '.join(['full'] + [s for s in cfg.seeded if s != 'full'])}, 1 for the
other methods (seed = model and table initialisation and shuffling).

Three compression ratios are reported for every run, from the actual parameter counts (`saec.nn.param_count`):
**field** = full / compressed parameters of the {count_word(len(large))} large fields (the target r, up to rounding);
**emb** = over all embedding parameters; **model** = over all model parameters (the paper's x-axis in
§5.1, "we measure the number of parameters of all the layers"). The MLP ({ref_model - ref_emb:,} parameters)
is not compressed, so the whole-model ratio saturates at {ref_model / (ref_model - ref_emb + ref_emb - ref_field):.1f}x here.

## Reference (uncompressed)

Test AUC {mean_std([r['auc'] for r in ref])}, log loss {mean_std([r['logloss'] for r in ref])} ({len(ref)} seed{'s' if len(ref) > 1 else ''};
{ref_model:,} parameters, {ref_emb:,} in embeddings). docs/results/baseline.md trains the same DSSM at the task's
default widths.

## Test AUC by method and target ratio of the large fields

Mean ± sample std over seeds where more than one ran. "n/a": not run (see the list below the table).

"""
    rows = [["method", *[f"{r:g}x" for r in ratios]]]
    if 1.0 in ratios:
        rows.append(["full (reference)", *[mean_std([x["auc"] for x in ref]) if r == 1 else "" for r in ratios]])
    for m in labels:
        rows.append([m, *[mean_std([x["auc"] for x in g.get((m, r), [])]) for r in ratios]])
    text += markdown_table(rows)
    skipped = list({(r["label"], r["ratio"]): r for r in record["runs"] if "skipped" in r}.values())
    if skipped:
        text += "\nNot run:\n\n" + "\n".join(f"- {r['label']} at {r['ratio']:g}x: {r['skipped']}" for r in skipped) + "\n"

    text += "\n## Relative loss vs the reference, and the achieved ratios\n\n"
    text += ("AUC loss = (AUC_ref - AUC) / AUC_ref; log-loss increase = (LL - LL_ref) / LL_ref; both in %, "
             "means over seeds. Negative = better than the reference.\n\n")
    rows = [["method", "target", "AUC loss %", "log-loss increase %", "ratio field", "ratio emb", "ratio model",
             "epochs (best)", "train s"]]
    for m in labels:
        for r in ratios:
            runs = g.get((m, r), [])
            if not runs:
                continue
            x = runs[0]
            rows.append([m, f"{r:g}x", f"{mean([auc_loss(y) for y in runs]):+.2f}",
                         f"{mean([ll_loss(y) for y in runs]):+.2f}", f"{ref_field / x['field_params']:.1f}",
                         f"{ref_emb / x['embedding_params']:.1f}", f"{ref_model / x['model_params']:.2f}",
                         f"{x['epochs']} ({x['best_epoch']})", f"{mean([y['train_s'] for y in runs]):.0f}"])
    text += markdown_table(rows)

    text += "\n## Best method per ratio (by mean test AUC)\n\n"
    rows = [["target", "best", "AUC", "memcom", "memcom_bias", "memcom rank"]]
    for r in ratios:
        cand = sorted(((mean([x["auc"] for x in g[(m, r)]]), m) for m in labels if (m, r) in g), reverse=True)
        if not cand:
            continue
        order = [m for _, m in cand]
        rank = next((i + 1 for i, m in enumerate(order) if m in MEMCOM), None)
        rows.append([f"{r:g}x", cand[0][1], f"{cand[0][0]:.4f}",
                     *[f"{mean([x['auc'] for x in g[(m, r)]]):.4f}" if (m, r) in g else "n/a" for m in MEMCOM],
                     f"{rank} of {len(cand)}" if rank else "n/a"])
    text += markdown_table(rows)

    text += "\n## Unique embeddings (App. A.4)\n\n"
    text += ("For every trained MEmCom table: among the pairs of features (seen in training) that share a `U` row, "
             f"the share whose multipliers differ by more than {UNIQUE_TOL_TEXT} (`V`, and `W` with bias; the paper's "
             f"measure, {PAPER_UNIQUE[0]:g}% at {PAPER_UNIQUE[1]}x on Arcade), and the share of row-sharing features "
             "whose multipliers differ from every row-mate's (a unique embedding). Seed 0. "
             "`saec.nn.memcom.unique_embeddings`.\n\n")
    rows = [["method", "target", "field", "m (rows of U)", "features", "row-sharing pairs", "pairs differing",
             "features with a unique embedding"]]
    for m in MEMCOM:
        for r in ratios:
            for x in [x for x in g.get((m, r), []) if x["seed"] == 0 and "unique" in x]:
                for f, u in x["unique"].items():
                    rows.append([m, f"{r:g}x", f, f"{u['num_buckets']:,}", f"{u['features_total']:,}",
                                 f"{u['pairs']:,}", f"{100 * u['pair_fraction']:.3f}%",
                                 f"{100 * u['feature_fraction']:.2f}% of {u['features']:,}"])
    text += markdown_table(rows)

    text += "\n## Lower precision (App. A.2)\n\n"
    text += ("Trained models (seed 0) with their embedding collection (tables and OOV vectors) at float16 or "
             "row-wise linear integers (`saec.nn.quantize.simulate_quantization`: torch's "
             "`quantize_per_channel` with float scale/offset per row, quint8 / quint4x2 / quint2x4; one-column "
             "tensors such as MEmCom's `V` and `W` get one scale for the whole column). The dense layers stay "
             "float32 unless the scope says \"all\" (then every Linear weight is quantized per output row, "
             "biases per tensor). Bytes are the true sizes: packed codes + float32 scale and offset per row "
             "(+ float32 for what is not quantized); \"emb. bytes\" are those of the embedding collection. "
             "AUC loss is relative to the same model at float32.\n\n")
    rows = [["model", "scope", "bits", "test AUC", "AUC loss %", "log loss", "emb. bytes", "model bytes"]]
    prec_models = [("full", 1.0)] + [(m, r) for m in MEMCOM for r in ratios]
    for m, r in prec_models:
        for x in [y for y in g.get((m, r), []) if y["seed"] == 0 and "precision" in y]:
            base = {p["scope"]: p for p in x["precision"] if p["bits"] == 32}
            for p in x["precision"]:
                rows.append([f"{m} {r:g}x", p["scope"], str(p["bits"]), f"{p['auc']:.4f}",
                             f"{relative_loss(p['auc'], base[p['scope']]['auc']):+.2f}", f"{p['logloss']:.4f}",
                             f"{p['embedding_nbytes']:,}", f"{p['nbytes']:,}"])
    text += markdown_table(rows)
    text += "\n![AUC vs bits](" + png_bits.name + ")\n"
    text += "\n![Loss vs compression ratio](" + png_path.name + ")\n"
    text += claims(g, labels, ratios, prec_models)
    text += _reading(g, {(r["label"], r["ratio"]) for r in record["runs"] if "skipped" in r}, labels, ratios, ref,
                     cfg, auc_loss)
    text += _deviations(record, g, labels, ratios, cfg)
    write_text(md_path, text)

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for i, m in enumerate(labels):
        pts = [g[(m, r)] for r in ratios if (m, r) in g]
        if not pts:
            continue
        style = dict(marker="o", lw=2.2 if m in MEMCOM else 1.2, ls="-" if m in MEMCOM else "--",
                     color=colors[(2 * i) % 20 + (2 * i) // 20])
        fr = [ref_field / runs[0]["field_params"] for runs in pts]
        mr = [ref_model / runs[0]["model_params"] for runs in pts]
        al = [mean([auc_loss(y) for y in runs]) for runs in pts]
        ll = [mean([ll_loss(y) for y in runs]) for runs in pts]
        axes[0].plot(fr, al, label=m, **style)
        axes[1].plot(mr, al, label=m, **style)
        axes[2].plot(fr, ll, label=m, **style)
    for ax, xl, yl in zip(axes, ["compression ratio of the large fields' tables",
                                 "compression ratio of all model parameters",
                                 "compression ratio of the large fields' tables"],
                          ["relative test AUC loss (%)", "relative test AUC loss (%)",
                           "relative test log-loss increase (%)"]):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.axhline(0, color="k", lw=0.6)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle(f"DSSM on MovieLens-1M CTR, loss vs the uncompressed reference (AUC {ref_auc:.4f})")
    fig.tight_layout()
    save_figure(fig, png_path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, r in prec_models:
        for x in [y for y in g.get((m, r), []) if y["seed"] == 0 and "precision" in y]:
            p = [q for q in x["precision"] if q["scope"] == "embeddings"]
            if m == "full" or r in (4.0, 16.0, 64.0):
                ax.plot([q["bits"] for q in p], [q["auc"] for q in p], marker="o", label=f"{m} {r:g}x")
    ax.set_xscale("log", base=2)
    ax.set_xticks(BITS, [str(b) for b in BITS])
    ax.set_xlabel("bits per embedding number (float32, float16, int8, int4, int2)")
    ax.set_ylabel("test AUC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_bits)


__all__ = ["ClassificationConfig", "VARIANTS", "claims", "command", "complete", "plan", "precision", "render", "run",
           "run_one", "task_facts"]
