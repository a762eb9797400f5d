"""The periodic loop's evidence pages (Saec §3.1-3.2: Table 1, Figs. 5-6), rendered from a run's own log.

:func:`run` runs ``saec periodic`` itself (the command a user runs, in this process) and turns its
``log.jsonl`` into one raw record with the command, environment, wall time and peak memory; :func:`render`
writes the page and PNG plots from that record alone; :func:`render_compare` puts two records of the same
stream side by side (warm-started k-means against re-clustering from scratch).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from saec.bench.report import checksums, environment, header, markdown_table, peak_rss_mib, save_figure
from saec.io import write_text

TIMINGS = ("data_s", "train_s", "compress_s", "cluster_s", "assign_s", "retrain_s", "eval_s", "publish_s", "checkpoint_s")


def run(periodic_args: list[str], out: Path, command: list[str]) -> dict[str, Any]:
    """Run (or resume) ``saec periodic PERIODIC_ARGS --out OUT --quiet`` and return its raw record."""
    from saec.cli import main
    from saec.io import read_jsonl
    from saec.pipeline.periodic import LOG_FILE, RUN_FILE, read_run_file

    resumed = (out / LOG_FILE).exists()
    start = time.perf_counter()
    code = main(["periodic", *periodic_args, "--out", str(out), "--quiet"])
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"saec periodic exited with {code}")
    rows = read_jsonl(out / LOG_FILE)
    settings = read_run_file(out / RUN_FILE)["settings"]
    return {"command": command, "periodic_args": periodic_args, "environment": environment(),
            "peak_rss_mib": peak_rss_mib(), "wall_s": None if resumed else wall, "resumed": resumed,
            "settings": settings, "rows": rows}


def _source_text(settings: dict[str, Any]) -> str:
    src = settings["source"]
    if src["source"] == "trace":
        c = src["config"]
        return (f"the synthetic trace ({c['n_fields']} fields, universe {c['final_features']:,} features at the end, "
                f"{c['hours']} hours of {c['samples_per_hour']:,} samples)")
    if src["source"] == "movielens-weeks":
        return f"{src['name']} by week (label = rating >= 4)"
    if src["source"] == "files":
        return f"a folder of segment files ({Path(src['folder']).name}/, one segment per file)"
    return f"the table {Path(src['path']).name} cut by {src['window'] or str(src['rows']) + ' rows'}"


def _table1_rows(rows: list[dict[str, Any]], hourly: bool) -> list[dict[str, Any]]:
    """The paper's Table 1 lists the last hour of each day; other streams: about a dozen evenly spaced rows."""
    if hourly and len(rows) >= 24:
        picked = [r for r in rows if r["segment"] % 24 == 23]
        return picked + ([rows[-1]] if rows[-1] not in picked else [])
    step = max(1, math.ceil(len(rows) / 12))
    picked = rows[::step]
    return picked + ([rows[-1]] if rows[-1] is not picked[-1] else [])


def _shares(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    rows = [r for r in rows if r["compressed_tables"] > 0]
    return np.array([r[key] / r["train_s"] for r in rows if r["train_s"] > 0])


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """The numbers the page states, computed from the rows."""
    rows = record["rows"]
    last = rows[-1]
    tail = rows[-24:]
    comp = [r for r in rows if r["compressed_tables"] > 0]
    d_auc = np.array([r["compressed_auc"] - r["full_auc"] for r in tail])
    out = {
        "segments": len(rows), "features": last["features"], "vectors_before": last["vectors_before"],
        "vectors_after": last["vectors_after"], "ratio": last["ratio"],
        "vector_ratio": last["vectors_before"] / max(last["vectors_after"], 1),
        "full_auc": last["full_auc"], "compressed_auc": last["compressed_auc"],
        "tail_n": len(tail), "tail_d_auc_mean": float(d_auc.mean()), "tail_d_auc_min": float(d_auc.min()),
        "tail_d_auc_max": float(d_auc.max()), "tail_better": int((d_auc >= 0).sum()),
        "first_compressed": comp[0]["segment"] if comp else None,
        "seconds": {k: float(sum(r.get(k, 0.0) for r in rows)) for k in TIMINGS},
        "control_s": float(sum(r.get("control_s", 0.0) for r in rows)),
        "peak_rss_row_mib": max(r["peak_rss_mib"] for r in rows),
    }
    for key in ("compress_s", "retrain_s"):
        s = _shares(rows, key)
        out[f"{key}_share"] = {"median": float(np.median(s)), "max": float(s.max()), "mean": float(s.mean()),
                               "tail_median": float(np.median(s[-24:])), "tail_n": len(s[-24:])} if len(s) else None
    bayes = [r for r in tail if "bayes_auc" in r]
    if bayes:
        out["tail_bayes_auc"] = float(np.mean([r["bayes_auc"] for r in bayes]))
    return out


def _warm_text(settings: dict[str, Any]) -> str:
    if not settings.get("warm_start"):
        return " (k-means from scratch every segment, as in the paper)" if settings["method"] == "saec" else ""
    return (f" (k-means warm-started from the table's previous codebook, {settings['warm_niter']} iterations; a table's "
            f"first compression starts from its `init`)")


def _retrain_text(settings: dict[str, Any]) -> str:
    if settings.get("retrain_fields", "all") == "all":
        return "; every table and the whole network train"
    kept = ", and so do the first-layer weights that read them" if settings.get("retrain_network") == "compressed" else ""
    return f"; tables left full keep the full model's values{kept}"


def _fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.1f} s"


def render(record: dict[str, Any], md_path: str | Path, title: str) -> None:
    """The page (Table 1, costs) and its two plots (Fig. 5 over all segments, Fig. 6 over the last 24)."""
    md_path = Path(md_path)
    rows, s, settings = record["rows"], summary(record), record["settings"]
    hourly = settings["source"]["source"] == "trace"
    fig5, fig6 = md_path.with_name(md_path.stem + "_fig5.png"), md_path.with_name(md_path.stem + "_fig6.png")
    env = dict(record["environment"])
    env["peak RSS"] = f"{record['peak_rss_mib']:,.0f} MiB"
    env["wall time"] = _fmt_s(record["wall_s"]) if record["wall_s"] is not None else \
        "not recorded (the run was resumed; per-segment seconds below are complete)"
    t = header(title, record["command"], env, checksums(record))
    method = settings["method"]
    hyper = ", ".join(f"{k}={v}" for k, v in settings["hyper"].items())
    total = sum(s["seconds"].values()) + s["control_s"]
    t += f"""
`saec periodic {' '.join(record['periodic_args'])}` over {_source_text(settings)}: every segment the full model
({settings['model']}, MLP {tuple(settings['hidden'])}, {settings['train']['optimizer']} lr {settings['train']['lr']})
trains one epoch, `{method}` ({hyper}) compresses it{_warm_text(settings)}, the copy is retrained one epoch on the same segment
(targets: `{settings['retrain_on']}`{_retrain_text(settings)}), both are evaluated on the next segment, and the compressed model is published
and the run checkpointed. Every number below is computed from the run's `log.jsonl` (raw record:
`{md_path.with_suffix('.json').name}`).

## Summary

- **{s['segments']} segments**; the observed vocabulary at the end holds **{s['features']:,} features**
  ({s['vectors_before']:,} vectors in the full tables).
- **At the last segment** the compressed model holds {s['vectors_after']:,} vectors
  (**{s['vector_ratio']:.1f}x fewer vectors**, {s['ratio']:.1f}x fewer bytes) with test AUC {s['compressed_auc']:.4f}
  against the full model's {s['full_auc']:.4f}.
- **Last {s['tail_n']} segments** (Fig. 6): compressed minus full AUC is {s['tail_d_auc_mean']:+.4f} on average
  ({s['tail_d_auc_min']:+.4f} .. {s['tail_d_auc_max']:+.4f}); the compressed model is at least as good in
  {s['tail_better']} of {s['tail_n']}.{f" Bayes-optimal AUC there: {s['tail_bayes_auc']:.4f} on average." if 'tail_bayes_auc' in s else ''}
  The paper's headline to compare with: about two orders of magnitude fewer vectors at equal or better AUC.
"""
    for key, goal, what in (("compress_s", 0.10, "compression"), ("retrain_s", 0.50, "the retraining epoch")):
        sh = s[f"{key}_share"]
        if sh is None:
            continue
        verdict = "within" if sh["median"] <= goal else "above"
        t += (f"- **Cost of {what}**: median {sh['median']:.0%} of the segment's training epoch (mean {sh['mean']:.0%}, "
              f"max {sh['max']:.0%}) over the compressed segments; {verdict} the goal of {goal:.0%}"
              + (f" (median over the last {sh['tail_n']}: {sh['tail_median']:.0%})" if s["segments"] > 48 else "")
              + ".\n")
    t += (f"- **Time**: {_fmt_s(total)} in the logged phases (" + ", ".join(
        f"{k[:-2]} {_fmt_s(v)}" for k, v in s["seconds"].items() if k not in ("cluster_s", "assign_s"))
        + (f", auto's control epoch {_fmt_s(s['control_s'])}" if s["control_s"] else "")
        + f"); peak RSS {s['peak_rss_row_mib']:,.0f} MiB.\n")
    choice = next((r["retrain_choice"] for r in rows if "retrain_choice" in r), None)
    if choice:
        t += (f"- **`--retrain-on auto`** chose `{choice['chose']}` at segment {choice['segment']}: one more epoch of the "
              f"full model on the same segment moved its AUC on {choice['test_name']} from {choice['full_auc']:.4f} to "
              f"{choice['extra_epoch_auc']:.4f} ({choice['extra_epoch_gain']:+.4f}).\n")
    label = "last hour of each day" if hourly and len(rows) >= 24 else "evenly spaced segments"
    t += f"\n## Table 1 ({label})\n\n"
    table = [["segment", "test on", "vectors before", "vectors after", "ratio (bytes)", "full AUC", f"{method} AUC",
              "ΔAUC", "full log loss", f"{method} log loss"] + (["Bayes AUC"] if hourly else [])]
    for r in _table1_rows(rows, hourly):
        table.append([r["name"], r["test_name"], f"{r['vectors_before']:,}", f"{r['vectors_after']:,}",
                      f"{r['ratio']:.1f}x", f"{r['full_auc']:.4f}", f"{r['compressed_auc']:.4f}",
                      f"{r['compressed_auc'] - r['full_auc']:+.4f}", f"{r['full_logloss']:.4f}",
                      f"{r['compressed_logloss']:.4f}"] + ([f"{r['bayes_auc']:.4f}"] if hourly else []))
    t += markdown_table(table)
    t += f"\n## Fig. 5 and Fig. 6\n\n![Fig. 5]({fig5.name})\n\n![Fig. 6]({fig6.name})\n"
    t += "\n## Seconds per segment\n\n"
    cost = [["phase", "median", "mean", "max", "total"]]
    for k in TIMINGS:
        v = np.array([r.get(k, 0.0) for r in rows])
        cost.append([k[:-2], f"{np.median(v):.2f}", f"{v.mean():.2f}", f"{v.max():.2f}", _fmt_s(float(v.sum()))])
    t += markdown_table(cost)
    older = any("data_s" not in r for r in rows)
    t += ("\n`data` reads the segment and the next one, admits the segment's new features and grows the tables; "
          "`retrain` includes the full model's predictions on the segment when they are its targets"
          + (" (**this run was recorded before saec logged either**: `data` shows 0 and `retrain` leaves out that "
             "prediction pass; the wall time less the logged phases is about their sum)" if older else "")
          + "; `compress` includes `cluster` (k-means) and `assign` (every feature to its nearest centroid) and the copy "
          "of the model; `eval` is both models on the next segment; `publish` writes the compressed model as a new "
          "version and switches `serving/current`; `checkpoint` writes the full model, optimizer state and "
          "vocabularies.\n")
    write_text(md_path, t)
    _plot(rows, fig5, fig6, method, hourly)


def _plot(rows: list[dict[str, Any]], fig5: Path, fig6: Path, method: str, hourly: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["segment"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, name in ((axes[0], "auc", "AUC"), (axes[1], "logloss", "log loss")):
        ax.plot(x, [r[f"full_{key}"] for r in rows], label="full", lw=1)
        ax.plot(x, [r[f"compressed_{key}"] for r in rows], label=method, lw=1)
        if hourly:
            ax.plot(x, [r[f"bayes_{key}"] for r in rows], label="Bayes optimum", lw=0.8, ls=":", color="grey")
        ax.set_xlabel("segment trained on (tested on the next)")
        ax.set_ylabel(f"test {name}")
        ax.legend()
    fig.suptitle(f"Fig. 5: full vs {method} over every segment")
    save_figure(fig, fig5)
    tail = rows[-24:]
    xt = [r["segment"] for r in tail]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(xt, [r["compressed_auc"] - r["full_auc"] for r in tail], color="tab:orange", label="ΔAUC (compressed - full)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("segment")
    ax.set_ylabel("ΔAUC")
    ax2 = ax.twinx()
    ax2.plot(xt, [r["vectors_before"] / max(r["vectors_after"], 1) for r in tail], color="tab:blue", marker=".",
             label="vector ratio")
    ax2.set_ylabel("vectors before / after")
    fig.legend(loc="upper left")
    fig.suptitle(f"Fig. 6: ratio and AUC difference over the last {len(tail)} segments")
    save_figure(fig, fig6)


COMPARED_TIMES = {"cluster_s": ("k-means", "cluster s"), "retrain_s": ("retraining", "retrain s"),
                  "compress_s": ("compression", "compress s"), "train_s": ("training", "train s")}


def render_compare(a: dict[str, Any], b: dict[str, Any], md_path: str | Path, title: str, names: tuple[str, str],
                   time_key: str = "cluster_s", command: list[str] | None = None) -> None:
    """Two runs over the same stream (e.g. re-clustering vs warm start): the seconds of one part of the loop
    (``time_key``, one of :data:`COMPARED_TIMES`) and the compressed model's AUC, side by side."""
    what, column = COMPARED_TIMES[time_key]
    ra, rb = {r["segment"]: r for r in a["rows"]}, {r["segment"]: r for r in b["rows"]}
    both = [h for h in sorted(ra) if h in rb and ra[h]["compressed_tables"] and rb[h]["compressed_tables"]]
    # this command; the environment the first run recorded
    t = header(title, command, a["environment"], checksums(a, b))
    t += f"\nFirst run ({names[0]}): `{' '.join(a['command'])}`.\n\nSecond run ({names[1]}): `{' '.join(b['command'])}`.\n\n"
    differ = {k: (a["environment"].get(k), v) for k, v in b["environment"].items()
              if k != "date" and a["environment"].get(k) != v}
    if differ:  # seconds from two machines (or versions) compare only roughly; the shares of an epoch better
        t += ("**The second run was recorded elsewhere** (" + "; ".join(f"{k}: {x} / {y}" for k, (x, y) in
              differ.items()) + f"; {b['environment'].get('date')}): compare its seconds with care, its shares of a "
              f"training epoch more safely.\n\n")
    if not both:
        write_text(md_path, t + "No segment was compressed in both runs.\n")
        return
    ca = np.array([ra[h][time_key] for h in both])
    cb = np.array([rb[h][time_key] for h in both])
    share_a = np.median([ra[h][time_key] / ra[h]["train_s"] for h in both])
    share_b = np.median([rb[h][time_key] / rb[h]["train_s"] for h in both])
    da = np.array([ra[h]["compressed_auc"] for h in both])
    db = np.array([rb[h]["compressed_auc"] for h in both])
    t += (f"Over the {len(both)} segments compressed in both runs: {what} took {ca.sum():.1f} s ({names[0]}) and "
          f"{cb.sum():.1f} s ({names[1]}), {ca.sum() / max(cb.sum(), 1e-9):.2f}x (per segment, as a share of its "
          f"training epoch: median {share_a:.0%} and {share_b:.0%}); the compressed model's AUC differs by "
          f"{(db - da).mean():+.5f} on average ({names[1]} minus {names[0]}; range {(db - da).min():+.5f} .. "
          f"{(db - da).max():+.5f}), and {names[1]} is at least as good in {int((db >= da).sum())} of {len(both)}.\n\n")
    older = [n for n, r in zip(names, (a, b)) if any("data_s" not in row for row in r["rows"])]
    if time_key == "retrain_s" and len(older) == 1:
        t += (f"**The {older[0]} run was recorded before saec counted the full model's predictions (the retraining "
              f"targets) in `retrain_s`**, so its seconds leave that pass out and the ratio above understates the "
              f"difference.\n\n")
    table = [["segment", f"{column} ({names[0]})", f"{column} ({names[1]})", f"AUC ({names[0]})", f"AUC ({names[1]})",
              "ΔAUC"]]
    step = max(1, math.ceil(len(both) / 16))
    for h in both[::step] + ([both[-1]] if (len(both) - 1) % step else []):
        table.append([ra[h]["name"], f"{ra[h][time_key]:.2f}", f"{rb[h][time_key]:.2f}",
                      f"{ra[h]['compressed_auc']:.4f}", f"{rb[h]['compressed_auc']:.4f}",
                      f"{rb[h]['compressed_auc'] - ra[h]['compressed_auc']:+.4f}"])
    t += markdown_table(table)
    write_text(md_path, t)


def write_trace_csv(preset: str, folder: Path, hours: int | None = None, seed: int = 0) -> list[str]:
    """The synthetic trace's hours as CSV files ``hour_000.csv`` ... (raw ids, a ``label`` column) in
    ``folder``, a new folder: the input of the folder-source run. Returns the field names."""
    import pandas as pd

    from saec.data.synthetic import SyntheticTrace, TraceConfig

    trace = SyntheticTrace(TraceConfig.preset(preset, seed=seed))
    folder.mkdir(parents=True, exist_ok=False)
    for h in range(hours or trace.config.hours):
        seg = trace.segment(h)
        frame = pd.DataFrame({n: seg.raw[n] for n in trace.names})
        frame["label"] = seg.labels.astype(np.int8)
        frame.to_csv(folder / f"hour_{h:03d}.csv", index=False)
    return trace.names
