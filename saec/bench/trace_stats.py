"""Statistics of the synthetic QQ-browser-like trace (:mod:`saec.data.synthetic`) and its scaling.

:func:`run` generates every hourly segment of a preset, grows per-field vocabularies with them (the streaming
protocol) and records per hour: samples, universe size, observed vocabulary, new features, the OOV share an
evaluation before growing would see, CTR and the Bayes-optimal AUC / log loss; then the field sizes (Saec
Fig. 4(a)), the length mix (Saec §1), the frequency distribution (Saec Fig. 4(b)), generation speed and peak
memory. In fresh processes (so that their peak memory is their own, :func:`scale_child`) it times a
>= 10^7-feature preset and streams the paper-scale 1.24x10^8-vector table (Saec Table 1) field by field.
:func:`render` writes the page and its figure from the record alone.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saec.bench.measure import last_json_line, peak_rss_mib, run_measured

# The paper's figures the page sets the trace beside (Saec's, not measured here)
PAPER_DIMS, PAPER_LONG_SHARE = (9, 17), 0.1105  # §1: 88.95% of vectors of length 9, 11.05% of length 17
PAPER_FIELDS = "most fields < 10^4, ~7% > 10^5"  # Fig. 4(a)
SIZE_BINS = (1e4, 1e5)  # the field-size bins of Fig. 4(a)
TOP_SHARES = (0.01, 0.10)  # the most frequent shares of features whose occurrences the page reports


@dataclass(frozen=True)
class TraceStatsConfig:
    """``preset`` is described hour by hour; ``scale_preset`` (its last ``scale_hours`` hours and its tables)
    and, with ``paper_tables``, the ``paper`` preset's tables are timed in fresh processes unless not ``scale``."""

    preset: str = "medium"
    scale: bool = True
    scale_preset: str = "large"
    scale_hours: int = 3
    paper_tables: bool = True


def time_tables(trace: Any, hour: int, vectors: bool = True) -> dict[str, Any]:
    """Build every field's table at ``hour`` one field at a time (nothing kept between fields): vectors, seconds,
    GiB produced."""
    t0 = time.perf_counter()
    n = nbytes = 0
    for f in range(trace.config.n_fields):
        t = trace.table(hour, f, vectors=vectors)
        n += len(t)
        nbytes += t.counts.nbytes + t.groups.nbytes + (t.vectors.nbytes if t.vectors is not None else 0)
        del t
    return {"vectors": n, "seconds": time.perf_counter() - t0, "gib": nbytes / 2**30}


def scale_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: time the last ``spec["hours"]`` segments and/or (``spec["tables"]``) the tables of preset
    ``spec["preset"]``, with this process's peak RSS (``baseline_rss_mb``: after imports, before any work)."""
    from saec.data.synthetic import SyntheticTrace, TraceConfig

    base = peak_rss_mib()
    t0 = time.perf_counter()
    trace = SyntheticTrace(TraceConfig.preset(spec["preset"]))
    out: dict[str, Any] = {"preset": spec["preset"], "init_seconds": time.perf_counter() - t0,
                           "final_features": trace.config.final_features, "n_fields": trace.config.n_fields}
    last = trace.config.hours - 1
    if spec.get("hours"):
        hours = list(range(last - spec["hours"] + 1, last + 1))
        t0 = time.perf_counter()
        segs = [trace.segment(h) for h in hours]
        dt = time.perf_counter() - t0
        out.update(hours=hours, samples=sum(len(s) for s in segs), seg_seconds=dt,
                   universe=int(trace.universe(last).sum()), auc=[s.bayes_auc for s in segs],
                   ctr=[s.ctr for s in segs])
        del segs
        out["rss_after_segments_mb"] = peak_rss_mib()
    if spec.get("tables"):
        out["tables"] = time_tables(trace, last)
        out["largest_field"] = int(trace.field_sizes.max())
        out["largest_field_dim"] = int(trace.dims[int(np.argmax(trace.field_sizes))])
    out["baseline_rss_mb"] = base
    out["peak_rss_mb"] = peak_rss_mib()
    return out


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    res = run_measured([sys.executable, "-m", "saec.bench.trace_stats", json.dumps(spec)])
    return last_json_line(res["stdout"])


def skew(counts: np.ndarray) -> dict[str, Any]:
    """Share of occurrences held by the most frequent :data:`TOP_SHARES` of observed features, the share seen once,
    the median count."""
    c = np.sort(counts)[::-1].astype(np.float64)
    top = {f"{q:g}": float(c[: max(1, int(len(c) * q))].sum() / c.sum()) for q in TOP_SHARES}
    return {"top": top, "once": float((c == 1).mean()), "median": float(np.median(c))}


def run(cfg: TraceStatsConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Generate and describe the trace; the raw record as plain data."""
    from saec.bench.report import environment
    from saec.data.synthetic import SyntheticTrace, TraceConfig
    from saec.data.vocab import Vocabulary

    start = time.perf_counter()
    trace = SyntheticTrace(TraceConfig.preset(cfg.preset))
    init_seconds = time.perf_counter() - start
    tc = trace.config
    vocabs = {n: Vocabulary() for n in trace.names}
    rows, gen_s = [], 0.0
    for h in range(tc.hours):
        t0 = time.perf_counter()
        seg = trace.segment(h)
        dt = time.perf_counter() - t0
        gen_s += dt
        before = sum(len(v) for v in vocabs.values())
        oov = sum(int((vocabs[n].encode(seg.raw[n]) < 0).sum()) for n in trace.names) if before else None
        for n in trace.names:
            vocabs[n].update(seg.raw[n])
        vocab = sum(len(v) for v in vocabs.values())
        rows.append({"hour": h, "samples": len(seg), "universe": int(trace.universe(h).sum()), "vocab": vocab,
                     "new": vocab - before, "oov": None if oov is None else oov / (len(seg) * len(trace.names)),
                     "ctr": seg.ctr, "auc": seg.bayes_auc, "logloss": seg.bayes_logloss, "seconds": dt})
        if progress:
            print(f"hour {h}: {len(seg):,} samples, vocabulary {vocab:,}", flush=True)
    counts = np.concatenate([v.counts for v in vocabs.values()])
    values, features = np.unique(counts, return_counts=True)  # the whole frequency distribution, compactly
    record: dict[str, Any] = {
        "command": command, "config": asdict(cfg), "environment": environment(),
        # (name, value) pairs: the stored JSON sorts a dict's keys, the page keeps the config's order
        "trace": [[k, list(v) if isinstance(v, tuple) else v] for k, v in asdict(tc).items()], "bias": trace.bias,
        "init_seconds": init_seconds, "gen_seconds": gen_s, "rows": rows,
        "field_sizes": {"0": trace.universe(0).tolist(), str(tc.hours - 1): trace.field_sizes.tolist()},
        "field_dims": trace.dims.tolist(), "long_share": {"0": trace.long_share(0), str(tc.hours - 1): trace.long_share()},
        "counts": {"values": values.tolist(), "features": features.tolist()}, "skew": skew(counts),
        "tables": time_tables(trace, tc.hours - 1)}
    del vocabs, counts
    if cfg.scale:
        record["scale"] = _child({"preset": cfg.scale_preset, "hours": cfg.scale_hours, "tables": True})
        if cfg.paper_tables:
            record["paper"] = _child({"preset": "paper", "tables": True})
    record["wall_s"] = time.perf_counter() - start
    record["peak_rss_mib"] = peak_rss_mib()
    return record


def size_summary(sizes: list[int]) -> dict[str, float]:
    """Shares of fields in the :data:`SIZE_BINS`, and the smallest, median and largest field."""
    s = np.asarray(sizes)
    lo, hi = SIZE_BINS
    return {"lt": float((s < lo).mean()), "mid": float(((s >= lo) & (s <= hi)).mean()), "gt": float((s > hi).mean()),
            "min": int(s.min()), "median": float(np.median(s)), "max": int(s.max()), "max_share": float(s.max() / s.sum())}


def _fmt_int(x: float) -> str:
    return f"{int(x):,}"


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v  # the trace's tuples, stored as JSON lists


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page (and its figure) of a :func:`run` record."""
    from saec.bench.report import checksums, header, markdown_table, recorded_run, sci
    from saec.io import write_text

    tc, rows = dict(record["trace"]), record["rows"]
    first, last = rows[0], rows[-1]
    total = sum(r["samples"] for r in rows)
    short, long = tc["dims"]
    last_hour = str(tc["hours"] - 1)
    long_share = record["long_share"][last_hour]
    text = header(f"Synthetic trace statistics: preset `{record['config']['preset']}`", record["command"],
                  recorded_run(record), checksums(record))
    out = ["", f"The trace mirrors the Saec paper's QQ-browser production trace (growing features, heavy-tailed field "
               f"sizes and frequencies, {1 - long_share:.0%} of the vectors of length {short} and {long_share:.0%} of "
               f"length {long}) "
               f"with a known click model, so every hour carries its Bayes-optimal AUC and log loss: the ceiling any "
               f"model can reach.", "", "## Configuration", ""]
    out.append(markdown_table([["parameter", "value"]] + [[k, str(_value(v))] for k, v in tc.items()]
                              + [["(calibrated bias)", f"{record['bias']:.4f}"]]))
    out += ["## Per hour", "",
            "`vocab` = observed vocabulary after growing with the hour (Vocabulary.update per field); "
            "`new` = ids it added; `OOV` = share of the hour's (sample, field) values unknown before growing "
            "(what streaming evaluation of that hour sees).", ""]
    table = [["hour", "samples", "universe", "vocab", "new", "OOV", "CTR", "Bayes AUC", "Bayes log loss", "gen s"]]
    for r in rows:
        table.append([str(r["hour"]), _fmt_int(r["samples"]), _fmt_int(r["universe"]), _fmt_int(r["vocab"]),
                      _fmt_int(r["new"]), "-" if r["oov"] is None else f"{r['oov']:.3f}", f"{r['ctr']:.4f}",
                      f"{r['auc']:.4f}", f"{r['logloss']:.4f}", f"{r['seconds']:.3f}"])
    out.append(markdown_table(table))
    aucs = np.array([r["auc"] for r in rows])
    ctrs = [r["ctr"] for r in rows]
    out += ["## Summary", "",
            f"- universe growth: {_fmt_int(first['universe'])} -> {_fmt_int(last['universe'])} "
            f"= **{last['universe'] / first['universe']:.2f}x** (configured {tc['growth']}x)",
            f"- observed vocabulary growth: {_fmt_int(first['vocab'])} -> {_fmt_int(last['vocab'])} "
            f"= **{last['vocab'] / first['vocab']:.2f}x**; it covers {last['vocab'] / last['universe']:.1%} "
            f"of the final universe",
            f"- CTR: mean {np.mean(ctrs):.4f} (target {tc['ctr']}), range {min(ctrs):.4f} .. {max(ctrs):.4f}",
            f"- Bayes AUC: mean {aucs.mean():.4f}, range {aucs.min():.4f} .. {aucs.max():.4f}; Bayes log loss mean "
            f"{np.mean([r['logloss'] for r in rows]):.4f}", "",
            f"Field sizes (Saec Fig. 4(a): {PAPER_FIELDS}):", ""]
    lo, hi = SIZE_BINS
    table = [["hour", f"fields < {sci(lo)}", f"{sci(lo)}..{sci(hi)}", f"> {sci(hi)}", "min", "median", "max",
              "largest field's share"]]
    for hour, sizes in record["field_sizes"].items():
        s = size_summary(sizes)
        table.append([hour, f"{s['lt']:.1%}", f"{s['mid']:.1%}", f"{s['gt']:.1%}", _fmt_int(s["min"]),
                      f"{s['median']:,.0f}", _fmt_int(s["max"]), f"{s['max_share']:.1%}"])
    out.append(markdown_table(table))
    sk = skew_text(record["skew"])
    n_long = sum(d == long for d in record["field_dims"])
    out += [f"Length mix (Saec §1: {1 - PAPER_LONG_SHARE:.2%} length {PAPER_DIMS[0]}, {PAPER_LONG_SHARE:.2%} length "
            f"{PAPER_DIMS[1]}): at the "
            f"last hour {1 - long_share:.2%} of vectors have length {short} and {long_share:.2%} length {long} "
            f"({n_long} of {tc['n_fields']} fields are long); at hour 0 {record['long_share']['0']:.2%} are long.", "",
            f"Frequency skew over the whole trace (Saec Fig. 4(b)): {sk}", "",
            "## Speed and memory", "",
            f"- generation of {tc['hours']} segments ({_fmt_int(total)} samples x {tc['n_fields']} fields): "
            f"{record['gen_seconds']:.2f} s = **{total / record['gen_seconds']:,.0f} samples/s** "
            f"({total * tc['n_fields'] / record['gen_seconds']:,.0f} feature draws/s); trace construction "
            f"{record['init_seconds']:.3f} s",
            f"- tables at the last hour (counts + groups + vectors, field by field): "
            f"{_fmt_int(record['tables']['vectors'])} vectors in {record['tables']['seconds']:.2f} s "
            f"({record['tables']['gib']:.3f} GiB produced)",
            f"- peak RSS of this run (including vocabularies and imports): **{record['peak_rss_mib']:.0f} MiB**"
            if "peak_rss_mib" in record else "- peak RSS of this run: not recorded", ""]
    out += _scaling(record)
    out += ["", f"![growth, field sizes, frequency CDF]({Path(png_path).name})"]
    _plot(record, png_path)
    write_text(md_path, text + "\n".join(out) + "\n")


def skew_text(sk: dict[str, Any]) -> str:
    """The frequency-skew sentence of a :func:`skew` result."""
    (q, share), *rest = sk["top"].items()
    return (f"the top {float(q):.0%} of observed features hold {share:.1%} of all occurrences"
            + "".join(f", the top {float(q):.0%} {share:.1%}" for q, share in rest)
            + f"; {sk['once']:.1%} of observed features were seen once; median occurrences {sk['median']:.0f}.")


def _scaling(record: dict[str, Any]) -> list[str]:
    sc, pp = record.get("scale"), record.get("paper")
    out = []
    if sc:
        out += ["## Scaling", "",
                "Each measurement runs in a fresh child process; its peak RSS is its own "
                "(baseline = peak after imports, before any work).", "",
                f"- preset `{sc['preset']}` ({_fmt_int(sc['final_features'])} features in {sc['n_fields']} fields, "
                f"universe {_fmt_int(sc['universe'])} at its last hour): hours {sc['hours'][0]}..{sc['hours'][-1]}, "
                f"{_fmt_int(sc['samples'])} samples in {sc['seg_seconds']:.2f} s "
                f"(**{sc['samples'] / sc['seg_seconds']:,.0f} samples/s**, "
                f"{sc['samples'] * sc['n_fields'] / sc['seg_seconds']:,.0f} draws/s); Bayes AUC "
                f"{', '.join(f'{a:.4f}' for a in sc['auc'])}; CTR {', '.join(f'{c:.4f}' for c in sc['ctr'])}; "
                f"peak RSS after the segments {sc['rss_after_segments_mb']:.0f} MiB "
                f"(baseline {sc['baseline_rss_mb']:.0f} MiB)",
                f"- same preset, tables at the last hour: {_fmt_int(sc['tables']['vectors'])} vectors "
                f"({sc['tables']['gib']:.2f} GiB of counts + groups + vectors produced) in "
                f"{sc['tables']['seconds']:.2f} s; peak RSS **{sc['peak_rss_mb']:.0f} MiB** "
                f"(largest field {_fmt_int(sc['largest_field'])} x {sc['largest_field_dim']})"]
    if pp:
        t = pp["tables"]
        out.append(f"- preset `paper` ({_fmt_int(pp['final_features'])} features, Saec Table 1's final table, "
                   f"{pp['n_fields']} fields): tables at the last hour streamed field by field: "
                   f"{_fmt_int(t['vectors'])} vectors, {t['gib']:.2f} GiB produced in {t['seconds']:.1f} s "
                   f"({t['vectors'] / t['seconds']:,.0f} vectors/s); peak RSS **{pp['peak_rss_mb']:.0f} MiB** "
                   f"= one field's arrays (largest field {_fmt_int(pp['largest_field'])} x {pp['largest_field_dim']}) "
                   f"plus chunk temporaries")
    return out


def _plot(record: dict[str, Any], path: str | Path) -> None:
    """Saec Fig. 1 / 4(a) / 4(b) analogues: growth, field sizes at the last hour, the frequency CDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.bench.report import save_figure

    rows = record["rows"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    hours = [r["hour"] for r in rows]
    ax[0].semilogy(hours, [r["universe"] for r in rows], label="universe (live features)")
    ax[0].semilogy(hours, [r["vocab"] for r in rows], label="observed vocabulary")
    ax[0].set(xlabel="hour", ylabel="# features", title="Growth (cf. Saec Fig. 1)")
    ax[0].legend()
    sizes = np.asarray(record["field_sizes"][str(dict(record["trace"])["hours"] - 1)])
    ax[1].hist(sizes, bins=np.logspace(0, np.log10(sizes.max()) + 0.1, 25))
    ax[1].set(xscale="log", xlabel="# features in field (last hour)", ylabel="# fields",
              title="Field sizes (cf. Saec Fig. 4(a))")
    values, features = np.asarray(record["counts"]["values"]), np.asarray(record["counts"]["features"])
    ax[2].semilogx(values, np.cumsum(features) / features.sum(), drawstyle="steps-post")
    ax[2].set(xlabel="occurrences of a feature", ylabel="CDF over observed features",
              title="Feature frequency (cf. Saec Fig. 4(b))")
    fig.tight_layout()
    save_figure(fig, path)


__all__ = ["TraceStatsConfig", "render", "run", "scale_child", "size_summary", "skew", "skew_text", "time_tables"]


if __name__ == "__main__":  # the measured process of run()
    print(json.dumps(scale_child(json.loads(sys.argv[1]))))
