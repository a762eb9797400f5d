"""How Saec's retraining epoch should work on the synthetic trace: targets, optimizer state, k.

Issue 3's quality target is ">= 27x with test AUC >= the full model's - 0.001" (:data:`TARGET_RATIO`,
:data:`TARGET_DAUC`). Retraining on the hour just trained on (the paper's §2.1 step, fitting the labels again)
can overfit that hour; :func:`run` compares, at several hours of the periodic loop and several learning rates,
with several compression seeds:

* retraining targets: the labels (the paper) or the full model's predicted probabilities
  (:func:`saec.pipeline.flow.retrain` with ``full=model``; knowledge distillation, not in the paper);
* optimizer: a fresh Adagrad, or the full model's accumulators carried over
  (:func:`saec.pipeline.flow.carry_optimizer`);
* Saec settings: the paper's k = 100 with fields of >= 100 k features, and k = 256 (still one-byte masks)
  with the eligibility threshold lowered so that the same fields are clustered;

and a control: the full model given the same extra epoch. :func:`merge` joins records of runs made apart (one
per learning rate, in parallel); :func:`render` writes the page and one plot per learning rate from a record.
"""

from __future__ import annotations

import copy
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

TARGET_RATIO, TARGET_DAUC = 27.0, -0.001  # issue 3's quality target: the page's criterion, not a measurement
PAPER_ELIGIBILITY = 100.0  # Saec §2.2.1: a field is clustered from 100 k features
HIDDEN = (256, 128)
VARIANTS = {  # name -> (targets, carried optimizer state); None = not retrained
    "not retrained": None,
    "labels, fresh Adagrad (paper)": ("labels", False),
    "labels, carried Adagrad": ("labels", True),
    "full model's predictions, fresh Adagrad (library default)": ("full", False),
    "full model's predictions, carried Adagrad": ("full", True),
}
PAPER_VARIANT = "labels, fresh Adagrad (paper)"
DISTILLED_VARIANT = "full model's predictions, fresh Adagrad (library default)"


@dataclass(frozen=True)
class RetrainStudyConfig:
    """``lrs``: the full model's (and the retraining's) learning rates; ``at``: hours compressed; ``seeds``:
    compression seeds per setting; ``threads``: torch threads while it runs; ``quick``: a tiny trace and
    settings, for a smoke run."""

    lrs: tuple[float, ...] = (0.001, 0.01)
    at: tuple[int, ...] = (17, 20, 23)
    seeds: int = 2
    threads: int = 2
    quick: bool = False


def _trace_and_settings(cfg: RetrainStudyConfig) -> tuple[Any, list[int], list[tuple[int, float]]]:
    from saec.data.synthetic import TraceConfig

    if cfg.quick:
        tc = TraceConfig(n_fields=6, final_features=200_000, hours=6, samples_per_hour=20_000, field_sigma=1.5)
        return tc, [3, 4], [(10, 100.0), (25, 40.0)]
    tc = TraceConfig(n_fields=32, final_features=20_000_000, hours=25, samples_per_hour=300_000, field_sigma=3.5)
    return tc, list(cfg.at), [(100, PAPER_ELIGIBILITY), (256, 39.0)]


def _auc_logloss(model: Any, data: Any) -> dict[str, float]:
    from saec.train.loop import evaluate

    m = evaluate(model, data)
    return {"auc": float(m["auc"]), "logloss": float(m["logloss"])}


def run_lr(trace: Any, lr: float, at: list[int], settings: list[tuple[int, float]], seeds: int,
           progress: bool = True) -> dict[str, Any]:
    """The streaming loop at learning rate ``lr`` up to ``max(at) + 2`` hours; at each hour of ``at`` the control
    and every (setting, seed, variant). One learning rate's entry of the record's ``runs``."""
    from saec.cluster.saec import SaecConfig, size_report
    from saec.compression import compress_model
    from saec.pipeline.flow import carry_optimizer, retrain
    from saec.train.loop import TrainConfig
    from saec.train.stream import StreamingRun

    tcfg = TrainConfig(lr=lr, progress=False)
    stream = StreamingRun(trace, "dssm", tcfg, HIDDEN)
    rows = []
    for row in stream.run(max(at) + 2):
        h = row["hour"]
        if h not in at:
            continue
        model, opt, train, test = stream.model, stream.optimizer, stream.train_data, stream.test_data
        counts = {n: v.counts for n, v in stream.vocabs.items()}
        out: dict[str, Any] = {"hour": h, "full": {"auc": row["auc"], "logloss": row["logloss"]},
                               "features": row["features"], "settings": []}
        extra = copy.deepcopy(model)
        retrain(extra, train, tcfg)  # budget-matched control: the full model gets the same extra epoch
        out["full_extra_epoch"] = _auc_logloss(extra, test)
        del extra
        for k, eligibility in settings:
            for seed in range(seeds):
                comp, fields = compress_model(model, counts, SaecConfig(k=k, eligibility=eligibility, seed=seed))
                sizes = size_report(fields.values())
                res = {"k": k, "eligibility": eligibility, "seed": seed, "ratio": sizes.ratio,
                       "clustered": sum(f.size.clustered for f in fields.values()), "variants": {}}
                for name, how in VARIANTS.items():
                    c = comp if how is None else copy.deepcopy(comp)
                    if how is not None:
                        targets, carried = how
                        retrain(c, train, tcfg, carry_optimizer(model, opt, c, tcfg) if carried else None,
                                model if targets == "full" else None)
                    res["variants"][name] = _auc_logloss(c, test)
                    del c
                out["settings"].append(res)
                if progress:
                    d = {n: round(v["auc"] - row["auc"], 4) for n, v in res["variants"].items()}
                    print(f"lr {lr} hour {h} k={k} elig={eligibility} seed {seed} ratio {sizes.ratio:.1f}: {d}",
                          flush=True)
        rows.append(out)
    return {"lr": lr, "hours": rows}


def run(cfg: RetrainStudyConfig, command: list[str], progress: bool = True,
        checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every learning rate of ``cfg``; the raw record as plain data (``checkpoint``, if given, gets the record so
    far after each learning rate)."""
    from saec.bench.lookup import num_threads
    from saec.bench.report import environment, peak_rss_mib
    from saec.data.synthetic import SyntheticTrace
    from saec.train.loop import TrainConfig

    start = time.perf_counter()
    tc, at, settings = _trace_and_settings(cfg)
    train = asdict(TrainConfig(progress=False))
    del train["lr"], train["progress"]  # lr: per run; progress: not a setting of the model
    with num_threads(cfg.threads):
        record: dict[str, Any] = {
            "command": command, "config": asdict(cfg), "environment": environment(),
            "trace": f"TraceConfig(n_fields={tc.n_fields}, final_features={tc.final_features}, hours={tc.hours}, "
                     f"samples_per_hour={tc.samples_per_hour}, field_sigma={tc.field_sigma})",
            "at": at, "seeds": cfg.seeds, "hidden": list(HIDDEN), "train": train, "runs": []}
        trace = SyntheticTrace(tc)
        for lr in cfg.lrs:
            record["runs"].append(run_lr(trace, lr, at, settings, cfg.seeds, progress))
            if checkpoint is not None:
                checkpoint(record)
    record["wall_s"] = time.perf_counter() - start
    record["peak_rss_mib"] = peak_rss_mib()
    return record


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record of several runs made apart (e.g. one per learning rate, in parallel): their runs, the longest
    wall time and the largest peak RSS that they recorded, every command, and the environment if all recorded
    the same one (dates aside); their verified checksums under ``checksums`` (the page's checksum line)."""
    from saec.bench.report import checksums
    from saec.io import CHECKSUM

    envs = [r.get("environment") for r in records]
    same = all(e is not None for e in envs) and all(
        {k: v for k, v in e.items() if k != "date"} == {k: v for k, v in envs[0].items() if k != "date"} for e in envs)
    env = None
    if same:
        env = {**envs[0], "date": ", ".join(dict.fromkeys(e["date"] for e in envs if "date" in e))}
    merged = {**{k: v for k, v in records[0].items() if k != CHECKSUM}, "checksums": checksums(*records),
              "runs": [r for rec in records for r in rec["runs"]],
              "commands": [c for rec in records for c in _commands(rec)], "environment": env,
              "wall_s": max((rec["wall_s"] for rec in records if "wall_s" in rec), default=None),
              "peak_rss_mib": max((rec["peak_rss_mib"] for rec in records if "peak_rss_mib" in rec), default=None)}
    for key in ("hidden", "train"):  # the model's settings, if every run recorded the same ones
        values = [rec.get(key) for rec in records]
        merged[key] = values[0] if all(v is not None and v == values[0] for v in values) else None
    return merged


def _commands(record: dict[str, Any]) -> list[str]:
    if "commands" in record:  # a merged record, or one written before records carried "command"
        return list(record["commands"])
    return [shlex.join(record["command"])] if "command" in record else []


# -- the page ---------------------------------------------------------------------------------------
def summarise(r: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (setting, variant) of one learning rate's run: ΔAUC per hour (mean, std over seeds), the
    mean byte ratio, and in how many hours the target holds (``met``) of the hours that reach the ratio."""
    out = []
    settings = sorted({(s["k"], s["eligibility"]) for h in r["hours"] for s in h["settings"]})
    for k, el in settings:
        for name in VARIANTS:
            per_hour, ok = [], 0
            for h in r["hours"]:
                ss = [s for s in h["settings"] if (s["k"], s["eligibility"]) == (k, el)]
                d = np.array([s["variants"][name]["auc"] - h["full"]["auc"] for s in ss])
                ratio = float(np.mean([s["ratio"] for s in ss]))
                per_hour.append((h["hour"], float(d.mean()), float(d.std()), ratio))
                ok += bool(ratio >= TARGET_RATIO and d.mean() >= TARGET_DAUC)
            out.append({"k": k, "eligibility": el, "variant": name, "per_hour": per_hour, "met": ok,
                        "reach": sum(p[3] >= TARGET_RATIO for p in per_hour)})
    return out


def _control(r: dict[str, Any]) -> list[float]:
    return [h["full_extra_epoch"]["auc"] - h["full"]["auc"] for h in r["hours"]]


def render(record: dict[str, Any], md_path: str | Path, argv: list[str] | None = None) -> None:
    """The page of a :func:`run` (or :func:`merge`) record, and beside it one plot per learning rate. ``argv`` is
    the command shown at the top (default: the record's own)."""
    from saec.bench.report import checksums, header, markdown_table, recorded_environment
    from saec.io import write_text

    md_path = Path(md_path)
    pngs = {}
    for r in record["runs"]:
        png = md_path.with_name(f"{md_path.stem}_lr{r['lr']:g}.png")
        _plot(png, r)
        pngs[r["lr"]] = png.name
    commands = _commands(record)
    env = recorded_environment(record.get("environment"))
    parts = [header("Saec retraining on the synthetic trace: targets, optimizer state, k",
                    argv if argv is not None else record["command"], env, checksums(record))]
    several = len(commands) > 1
    peak = "not recorded" if record.get("peak_rss_mib") is None else f"{record['peak_rss_mib']:,.0f} MiB"
    wall = "not recorded" if record.get("wall_s") is None else f"{record['wall_s'] / 60:.1f} min"
    parts.append(f"- peak RSS: {peak}; wall time {wall}"
                 f"{' (the longest of the runs below that recorded them)' if several else ''}\n")
    if several:
        parts.append("\nThe numbers come from these runs (in parallel, one per learning rate), rendered by the command "
                     "above:\n\n```\n" + "\n".join(commands) + "\n```\n")
    parts.append(_setup(record))
    for r in record["runs"]:
        parts.append(f"\n## Learning rate {r['lr']:g}\n\n")
        head = ["setting", "variant"] + [f"hour {h['hour']}" for h in r["hours"]] + ["hours meeting the target"]
        rows = [head, ["full model + same extra epoch (control)", "labels, fresh Adagrad"]
                + [f"{d:+.4f}" for d in _control(r)] + [""]]
        summary = summarise(r)
        for s in summary:
            rows.append([_setting(s["k"], s["eligibility"]), s["variant"]]
                        + [f"{m:+.4f} ± {sd:.4f}" for _, m, sd, _ in s["per_hour"]]
                        + [f"{s['met']} of {s['reach']} at >= {TARGET_RATIO:g}x"])
        ratios = {(s["k"], s["eligibility"]): [p[3] for p in s["per_hour"]] for s in summary}
        for (k, el), rs in ratios.items():
            rows.append([_setting(k, el), "byte ratio"] + [f"{x:.1f}x" for x in rs] + [""])
        rows.append(["full model AUC", ""] + [f"{h['full']['auc']:.4f}" for h in r["hours"]] + [""])
        parts.append(markdown_table(rows))
        parts.append(f"\n![ΔAUC by hour, lr {r['lr']:g}]({pngs[r['lr']]})\n")
    parts.append("\n## Findings\n\n" + findings(record) + "\n")
    write_text(md_path, "".join(parts))


def _setting(k: int, el: float) -> str:
    return f"k={k}, >= {int(k * el):,} features"


def _setup(record: dict[str, Any]) -> str:
    """The page's setup section: what was run, from the record."""
    from saec.cluster.saec import mask_dtype

    runs = record["runs"]
    hidden, train = record.get("hidden"), record.get("train")
    model = (f"MLP {tuple(hidden)}, {train['optimizer'].capitalize()}, batch {train['batch_size']}"
             if hidden and train else "its MLP widths, optimizer and batch size not recorded with these runs")
    hours = {r["lr"]: [h["hour"] for h in r["hours"]] for r in runs}
    at = (str(next(iter(hours.values()))) if len({tuple(v) for v in hours.values()}) == 1
          else ", ".join(f"{v} (lr {lr:g})" for lr, v in hours.items()))
    per = {sum((s["k"], s["eligibility"]) == (s0["k"], s0["eligibility"]) for s in h["settings"])
           for r in runs for h in r["hours"] for s0 in h["settings"]}
    seeds = ", ".join(map(str, sorted(per)))
    settings = sorted({(s["k"], s["eligibility"]) for r in runs for h in r["hours"] for s in h["settings"]})
    clustered = {key: sorted((r["lr"], h["hour"], s["clustered"]) for r in runs for h in r["hours"]
                             for s in h["settings"] if (s["k"], s["eligibility"]) == key) for key in settings}
    (k0, el0), rest = settings[0], settings[1:]
    if el0 == PAPER_ELIGIBILITY:
        text = f"k = {k0} with the paper's\neligibility (fields with >= {el0:g} k = {int(k0 * el0):,} features)"
    else:
        text = f"k = {k0} with eligibility {el0:g} (>= {int(k0 * el0):,} features)"
    for k, el in rest:
        same = "the same fields" if clustered[(k, el)] == clustered[(k0, el0)] else "other fields"
        size = mask_dtype(k).itemsize
        masks = ("one-byte masks" if size == 1 else f"{size}-byte masks") + (
            " still" if mask_dtype(k) == mask_dtype(k0) else "")
        text += (f", and k = {k} with eligibility {el:g} (>= {int(k * el):,} features:\n{same}, {masks}, "
                 f"{k / k0:.2f}x more centroids)")
    return f"""
## Setup

Trace: `SyntheticTrace({record['trace']})` (the one of [trace_saec.md](trace_saec.md)). The full model (DSSM,
{model}) trains one epoch per hour (`StreamingRun`); at hours {at} it is
compressed ({seeds} compression seeds per setting), the copy is retrained one epoch on the same hour
as each variant says, and both are tested on the next hour. ΔAUC = compressed - full, on the same test hour;
"target" = byte ratio >= {TARGET_RATIO:g}x and ΔAUC >= {TARGET_DAUC} (mean over seeds). The control row
gives the *full* model the same extra epoch on the labels (fresh Adagrad).

Variants: retraining fits the hour's **labels** (the paper, §2.1/§2.3) or the **full model's predicted click
probabilities** on the same samples (`retrain(compressed, hour, cfg, full=model)`; knowledge distillation,
our addition); the optimizer is a **fresh** Adagrad or **carries** the full model's accumulators
(`carry_optimizer`; a codebook row starts from the mean of its members'). Settings: {text}.
"""


def findings(record: dict[str, Any]) -> str:
    """The findings: per learning rate the best recipe and the paper's, then a reading of them; every number
    from the record."""
    lines = []
    means: dict[tuple[float, int, float, str], list[float]] = {}  # (lr, k, eligibility, variant) -> ΔAUC by hour
    for r in record["runs"]:
        summary = summarise(r)
        for s in summary:
            means[(r["lr"], s["k"], s["eligibility"], s["variant"])] = [p[1] for p in s["per_hour"]]
        b = sorted(summary, key=lambda s: (-s["met"], -np.mean([p[1] for p in s["per_hour"]])))[0]
        k0 = min(s["k"] for s in summary)  # the first setting: the paper's
        paper = [s for s in summary if s["variant"] == PAPER_VARIANT and s["k"] == k0][0]
        lines.append(
            f"- **lr {r['lr']:g}**: best is k={b['k']} (>= {int(b['k'] * b['eligibility']):,} features) with "
            f"*{b['variant']}*: ΔAUC {', '.join(f'{m:+.4f}' for _, m, _, _ in b['per_hour'])} at hours "
            f"{', '.join(str(p[0]) for p in b['per_hour'])}, target met in {b['met']} of {b['reach']} hours at "
            f">= {TARGET_RATIO:g}x. The paper's retraining with k={k0} gives "
            f"{', '.join(f'{m:+.4f}' for _, m, _, _ in paper['per_hour'])} "
            f"({paper['met']} of {paper['reach']}).")
    reading = _reading(record, means)
    if reading:
        lines.append(reading)
    return "\n".join(lines)


def _reading(record: dict[str, Any], means: dict[tuple[float, int, float, str], list[float]]) -> str:
    """What the runs say about the targets, the optimizer state and k, if one learning rate's extra epoch helps
    the full model and another's hurts it (the contrast the reading is about); else nothing."""
    from saec.bench.report import span

    control = {r["lr"]: float(np.mean(_control(r))) for r in record["runs"]}
    helps = [lr for lr, c in control.items() if c > 0]
    hurts = [lr for lr, c in control.items() if c < 0]
    if not helps or not hurts:
        return ""
    up, down = helps[0], hurts[0]
    settings = sorted({(k, el) for _, k, el, _ in means})
    (k0, el0), k1 = settings[0], settings[-1]

    def values(lr: float, variant: str, setting: tuple[int, float] | None = None) -> list[float]:
        return [m for (l_, k, el, v), ms in means.items() if l_ == lr and v == variant
                and (setting is None or (k, el) == setting) for m in ms]

    labels_cost = [-m for v in ("labels, fresh Adagrad (paper)", "labels, carried Adagrad") for m in values(down, v)]
    distilled = [-m for v in VARIANTS if v.startswith("full model's") for m in values(down, v)]
    behind = [a - b for key in settings for a, b in zip(values(up, PAPER_VARIANT, key), values(up, DISTILLED_VARIANT, key))]
    carry = {(lr, t): float(np.mean([c - f for key in settings for c, f in
                                     zip(values(lr, f"{name}, carried Adagrad", key), values(lr, fresh, key))]))
             for lr in (up, down) for t, name, fresh in (("labels", "labels", PAPER_VARIANT),
                                                          ("predictions", "full model's predictions", DISTILLED_VARIANT))}
    gain = [b - a for (l_, k, el, v), ms in means.items() if l_ == up and (k, el) == k1
            for a, b in zip(means[(up, k0, el0, v)], ms)]
    last = next(r for r in record["runs"] if r["lr"] == up)["hours"][-1]
    ratio_at = {key: np.mean([s["ratio"] for s in last["settings"] if (s["k"], s["eligibility"]) == key])
                for key in settings}
    hour = last["hour"]
    best_down = max((ms[-1], v) for (l_, k, el, v), ms in means.items() if l_ == down and (k, el) == (k0, el0))
    hour_down = next(r for r in record["runs"] if r["lr"] == down)["hours"][-1]["hour"]
    met_everywhere = [v for v in VARIANTS if all(any(
        s["variant"] == v and s["met"] == len(r["hours"]) for s in summarise(r)) for r in record["runs"])]
    both = ("Neither recipe meets the target at both learning rates." if not met_everywhere else
            f"{', '.join(met_everywhere)} meet(s) the target at every hour of every learning rate.")
    carried = " with the carried optimizer state" if carry[(down, "predictions")] > 0 else ""
    return f"""
**Reading.** Which targets work depends on whether one more pass over the hour helps the *full* model (the
control row). Where it helps (lr {up:g}: {control[up]:+.4f} on average), fitting the labels again is best: part
of Saec's recovery is simply that extra epoch. Where it hurts (lr {down:g}: {control[down]:+.4f}, the second
pass memorises the hour's once-seen features), fitting the labels again costs the compressed model
{span(labels_cost, '{:.4f}')}, whatever the optimizer state, while fitting the full model's predicted
probabilities -- which hold no new information about the hour's labels -- keeps it within {max(distilled):.4f}
of the full model. Retraining toward the full model cannot gain what an extra epoch would (a model retrained
toward its own predictions has zero gradient), so at lr {up:g} it ends {span(behind, '{:.4f}')} below label
retraining. Carrying the full model's Adagrad accumulators changes ΔAUC by {carry[(up, 'labels')]:+.4f}
(labels) and {carry[(up, 'predictions')]:+.4f} (predictions) at lr {up:g}, by {carry[(down, 'labels')]:+.4f}
and {carry[(down, 'predictions')]:+.4f} at lr {down:g} (mean over settings and hours). k = {k1[0]} costs
{ratio_at[(k0, el0)] - ratio_at[k1]:.1f} ratio points ({ratio_at[k1]:.1f}x vs {ratio_at[(k0, el0)]:.1f}x at
hour {hour}) for {span(gain, '{:+.4f}')} AUC at lr {up:g}.

**Rule of thumb** (what `saec run --retrain-on` and `retrain_targets` expose): give the full model the same
extra epoch once (the control); if it gains, retrain on the labels (the paper); if it loses, retrain on the
full model's predictions{carried}. {both} The margins are small: at lr {down:g} and
k = {k0} the best recipe (*{best_down[1]}*) ends at {best_down[0]:+.5f} at hour {hour_down}."""


def _plot(path: Path, r: dict[str, Any]) -> None:
    """ΔAUC by hour of every (setting, variant) of one learning rate, and the control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.bench.report import save_figure

    low, high = -0.005, 0.004
    fig, ax = plt.subplots(figsize=(12, 5))

    def label(text: str, values: list[float]) -> str:
        return text if min(values) >= low else f"{text} (off the chart: {np.mean(values):+.3f})"

    summary = summarise(r)
    k0 = min(s["k"] for s in summary)
    for s in summary:
        hours, d = [p[0] for p in s["per_hour"]], [p[1] for p in s["per_hour"]]
        ax.errorbar(hours, d, yerr=[p[2] for p in s["per_hour"]], marker="o", capsize=3,
                    label=label(f"k={s['k']}: {s['variant']}", d), linestyle="-" if s["k"] == k0 else "--")
    ctl = _control(r)
    ax.plot([h["hour"] for h in r["hours"]], ctl, "k:", marker="x", label=label("full model + same extra epoch", ctl))
    ax.axhline(TARGET_DAUC, color="red", lw=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("hour (compressed after training on it, tested on the next)")
    ax.set_ylabel("ΔAUC vs full model")
    ax.set_title(f"Saec retraining variants, lr {r['lr']:g}")
    ax.set_ylim(low, high)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    save_figure(fig, path)


__all__ = ["RetrainStudyConfig", "findings", "merge", "render", "run", "run_lr", "summarise"]
