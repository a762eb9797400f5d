"""Statistics of the synthetic QQ-browser-like trace (saec.data.synthetic) and its scaling.

For a preset it generates every hourly segment, grows per-field vocabularies with them (the streaming
protocol) and reports per hour: samples, universe size, observed vocabulary, new features, the OOV
share an evaluation before growing would see, CTR and the Bayes-optimal AUC / log loss. It then
summarises the field-size distribution (Saec Fig. 4(a)), the length mix (Saec §1), the frequency skew
(Saec Fig. 4(b)), generation speed and peak memory. In child processes (so their peak memory is their
own) it times a >=10^7-feature configuration and streams the paper-scale 1.24x10^8-vector table
(Saec Table 1) field by field.

    python benchmarks/trace_stats.py --preset medium --out docs/results/synthetic_trace.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from saec.data.synthetic import PRESETS, SyntheticTrace, TraceConfig
from saec.data.vocab import Vocabulary


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def _umask_mode() -> int:
    """Mode a plain ``open()`` would give a new file (mkstemp makes it 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write to a temporary file beside ``path`` and rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_trace(trace: SyntheticTrace) -> dict[str, Any]:
    """Generate every segment, grow vocabularies, collect per-hour rows."""
    vocabs = {n: Vocabulary() for n in trace.names}
    rows, gen_s = [], 0.0
    for h in range(trace.config.hours):
        t0 = time.perf_counter()
        seg = trace.segment(h)
        dt = time.perf_counter() - t0
        gen_s += dt
        before = sum(len(v) for v in vocabs.values())
        oov = sum(int((vocabs[n].encode(seg.raw[n]) < 0).sum()) for n in trace.names) if before else None
        for n in trace.names:
            vocabs[n].update(seg.raw[n])
        vocab = sum(len(v) for v in vocabs.values())
        rows.append(
            dict(
                hour=h, samples=len(seg), universe=int(trace.universe(h).sum()), vocab=vocab, new=vocab - before,
                oov=None if oov is None else oov / (len(seg) * len(trace.names)),
                ctr=seg.ctr, auc=seg.bayes_auc, logloss=seg.bayes_logloss, seconds=dt,
            )
        )
    counts = np.concatenate([v.counts for v in vocabs.values()])
    return dict(rows=rows, gen_seconds=gen_s, counts=counts)


def skew(counts: np.ndarray) -> dict[str, float]:
    """Share of occurrences held by the most frequent 1% / 10% of observed features."""
    c = np.sort(counts)[::-1].astype(np.float64)
    top = lambda q: float(c[: max(1, int(len(c) * q))].sum() / c.sum())  # noqa: E731
    return dict(top1=top(0.01), top10=top(0.10), once=float((c == 1).mean()), median=float(np.median(c)))


def size_summary(sizes: np.ndarray) -> dict[str, float]:
    return dict(
        lt1e4=float((sizes < 1e4).mean()), mid=float(((sizes >= 1e4) & (sizes <= 1e5)).mean()),
        gt1e5=float((sizes > 1e5).mean()), min=int(sizes.min()), median=float(np.median(sizes)),
        max=int(sizes.max()), max_share=float(sizes.max() / sizes.sum()),
    )


def time_tables(trace: SyntheticTrace, hour: int, vectors: bool = True) -> dict[str, Any]:
    """Build every field's table at ``hour`` one field at a time (nothing kept between fields)."""
    t0 = time.perf_counter()
    n = nbytes = 0
    for f in range(trace.config.n_fields):
        t = trace.table(hour, f, vectors=vectors)
        n += len(t)
        nbytes += t.counts.nbytes + t.groups.nbytes + (t.vectors.nbytes if t.vectors is not None else 0)
        del t
    return dict(vectors=n, seconds=time.perf_counter() - t0, gib=nbytes / 2**30)


def scale_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: time segments and/or tables of a big preset; report own peak RSS."""
    base = peak_rss_mb()
    t0 = time.perf_counter()
    trace = SyntheticTrace(TraceConfig.preset(spec["preset"]))
    out: dict[str, Any] = dict(preset=spec["preset"], init_seconds=time.perf_counter() - t0,
                               final_features=trace.config.final_features, n_fields=trace.config.n_fields)
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
        out["rss_after_segments_mb"] = peak_rss_mb()
    if spec.get("tables"):
        out["tables"] = time_tables(trace, last)
        out["largest_field"] = int(trace.field_sizes.max())
        out["largest_field_dim"] = int(trace.dims[int(np.argmax(trace.field_sizes))])
    out["baseline_rss_mb"] = base
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(path: Path, trace: SyntheticTrace, rows: list[dict[str, Any]], counts: np.ndarray) -> None:
    """Fig. 1 / 4(a) / 4(b) analogues, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    hours = [r["hour"] for r in rows]
    ax[0].semilogy(hours, [r["universe"] for r in rows], label="universe (live features)")
    ax[0].semilogy(hours, [r["vocab"] for r in rows], label="observed vocabulary")
    ax[0].set(xlabel="hour", ylabel="# features", title="Growth (cf. Saec Fig. 1)")
    ax[0].legend()
    sizes = trace.field_sizes
    bins = np.logspace(0, np.log10(sizes.max()) + 0.1, 25)
    ax[1].hist(sizes, bins=bins)
    ax[1].set(xscale="log", xlabel="# features in field (last hour)", ylabel="# fields",
              title="Field sizes (cf. Saec Fig. 4(a))")
    c = np.sort(counts)
    ax[2].semilogx(c, np.arange(1, len(c) + 1) / len(c))
    ax[2].set(xlabel="occurrences of a feature", ylabel="CDF over observed features",
              title="Feature frequency (cf. Saec Fig. 4(b))")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def fmt_int(x: float) -> str:
    return f"{int(x):,}"


def report(args: argparse.Namespace, trace: SyntheticTrace, res: dict[str, Any], extra: dict[str, Any]) -> str:
    cfg = trace.config
    rows = res["rows"]
    first, last = rows[0], rows[-1]
    total = sum(r["samples"] for r in rows)
    cmd = "python " + shlex.join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    out = [
        f"# Synthetic trace statistics: preset `{args.preset}`",
        "",
        "Generated by `benchmarks/trace_stats.py`; the trace mirrors the Saec paper's QQ-browser "
        "production trace (growing features, heavy-tailed field sizes and frequencies, 89/11 mix of "
        "vector lengths 9/17) with a known click model, so every hour carries its Bayes-optimal AUC "
        "and log loss: the ceiling any model can reach.",
        "",
        f"- command: `{cmd}`",
        f"- python {platform.python_version()}, numpy {np.__version__}",
        f"- machine: {platform.platform()}, {platform.machine()}, os.cpu_count()={os.cpu_count()}",
        "",
        "## Configuration",
        "",
        "| parameter | value |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in vars(cfg).items()]
    out += [f"| (calibrated bias) | {trace.bias:.4f} |", ""]
    out += [
        "## Per hour",
        "",
        "`vocab` = observed vocabulary after growing with the hour (Vocabulary.update per field); "
        "`new` = ids it added; `OOV` = share of the hour's (sample, field) values unknown before growing "
        "(what streaming evaluation of that hour sees).",
        "",
        "| hour | samples | universe | vocab | new | OOV | CTR | Bayes AUC | Bayes log loss | gen s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        oov = "-" if r["oov"] is None else f"{r['oov']:.3f}"
        out.append(
            f"| {r['hour']} | {fmt_int(r['samples'])} | {fmt_int(r['universe'])} | {fmt_int(r['vocab'])} | "
            f"{fmt_int(r['new'])} | {oov} | {r['ctr']:.4f} | {r['auc']:.4f} | {r['logloss']:.4f} | {r['seconds']:.3f} |"
        )
    fs_end, fs_start = size_summary(trace.field_sizes), size_summary(trace.universe(0))
    sk = skew(res["counts"])
    short, long = cfg.dims
    aucs = np.array([r["auc"] for r in rows])
    out += [
        "",
        "## Summary",
        "",
        f"- universe growth: {fmt_int(first['universe'])} -> {fmt_int(last['universe'])} "
        f"= **{last['universe'] / first['universe']:.2f}x** (configured {cfg.growth}x)",
        f"- observed vocabulary growth: {fmt_int(first['vocab'])} -> {fmt_int(last['vocab'])} "
        f"= **{last['vocab'] / first['vocab']:.2f}x**; it covers {last['vocab'] / last['universe']:.1%} "
        f"of the final universe",
        f"- CTR: mean {np.mean([r['ctr'] for r in rows]):.4f} (target {cfg.ctr}), range "
        f"{min(r['ctr'] for r in rows):.4f} .. {max(r['ctr'] for r in rows):.4f}",
        f"- Bayes AUC: mean {aucs.mean():.4f}, range {aucs.min():.4f} .. {aucs.max():.4f}; Bayes log loss mean "
        f"{np.mean([r['logloss'] for r in rows]):.4f}",
        "",
        "Field sizes (Saec Fig. 4(a): most fields < 10^4, ~7% > 10^5):",
        "",
        "| hour | fields < 1e4 | 1e4..1e5 | > 1e5 | min | median | max | largest field's share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, s in (("0", fs_start), (str(cfg.hours - 1), fs_end)):
        out.append(
            f"| {label} | {s['lt1e4']:.1%} | {s['mid']:.1%} | {s['gt1e5']:.1%} | {fmt_int(s['min'])} | "
            f"{s['median']:,.0f} | {fmt_int(s['max'])} | {s['max_share']:.1%} |"
        )
    n_long = int((trace.dims == long).sum())
    out += [
        "",
        f"Length mix (Saec §1: 88.95% length 9, 11.05% length 17): at the last hour {1 - trace.long_share():.2%} "
        f"of vectors have length {short} and {trace.long_share():.2%} length {long} "
        f"({n_long} of {cfg.n_fields} fields are long); at hour 0 {trace.long_share(0):.2%} are long.",
        "",
        f"Frequency skew over the whole trace (Saec Fig. 4(b)): the top 1% of observed features hold "
        f"{sk['top1']:.1%} of all occurrences, the top 10% {sk['top10']:.1%}; {sk['once']:.1%} of observed "
        f"features were seen once; median occurrences {sk['median']:.0f}.",
        "",
        "## Speed and memory",
        "",
        f"- generation of {cfg.hours} segments ({fmt_int(total)} samples x {cfg.n_fields} fields): "
        f"{res['gen_seconds']:.2f} s = **{total / res['gen_seconds']:,.0f} samples/s** "
        f"({total * cfg.n_fields / res['gen_seconds']:,.0f} feature draws/s); trace construction "
        f"{extra['init_seconds']:.3f} s",
        f"- tables at the last hour (counts + groups + vectors, field by field): {fmt_int(extra['tables']['vectors'])} "
        f"vectors in {extra['tables']['seconds']:.2f} s ({extra['tables']['gib']:.3f} GiB produced)",
        f"- peak RSS of this run (including vocabularies and imports): **{extra['peak_rss_mb']:.0f} MiB**",
        "",
    ]
    sc = extra.get("scale")
    if sc:
        out += [
            "## Scaling",
            "",
            "Each measurement runs in a fresh child process; its peak RSS is its own "
            "(baseline = peak after imports, before any work).",
            "",
            f"- preset `{sc['preset']}` ({fmt_int(sc['final_features'])} features in {sc['n_fields']} fields, "
            f"universe {fmt_int(sc['universe'])} at its last hour): hours {sc['hours'][0]}..{sc['hours'][-1]}, "
            f"{fmt_int(sc['samples'])} samples in {sc['seg_seconds']:.2f} s "
            f"(**{sc['samples'] / sc['seg_seconds']:,.0f} samples/s**, "
            f"{sc['samples'] * sc['n_fields'] / sc['seg_seconds']:,.0f} draws/s); Bayes AUC "
            f"{', '.join(f'{a:.4f}' for a in sc['auc'])}; CTR {', '.join(f'{c:.4f}' for c in sc['ctr'])}; "
            f"peak RSS after the segments {sc['rss_after_segments_mb']:.0f} MiB "
            f"(baseline {sc['baseline_rss_mb']:.0f} MiB)",
            f"- same preset, tables at the last hour: {fmt_int(sc['tables']['vectors'])} vectors "
            f"({sc['tables']['gib']:.2f} GiB of counts + groups + vectors produced) in "
            f"{sc['tables']['seconds']:.2f} s; peak RSS **{sc['peak_rss_mb']:.0f} MiB** "
            f"(largest field {fmt_int(sc['largest_field'])} x {sc['largest_field_dim']})",
        ]
    pp = extra.get("paper")
    if pp:
        t = pp["tables"]
        out += [
            f"- preset `paper` ({fmt_int(pp['final_features'])} features, Saec Table 1's final table, "
            f"{pp['n_fields']} fields): tables at the last hour streamed field by field: "
            f"{fmt_int(t['vectors'])} vectors, {t['gib']:.2f} GiB produced in {t['seconds']:.1f} s "
            f"({t['vectors'] / t['seconds']:,.0f} vectors/s); peak RSS **{pp['peak_rss_mb']:.0f} MiB** "
            f"= one field's arrays (largest field {fmt_int(pp['largest_field'])} x {pp['largest_field_dim']}) "
            f"plus chunk temporaries",
        ]
    if extra.get("png"):
        out += ["", f"![growth, field sizes, frequency CDF]({extra['png']})"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="medium", choices=sorted(PRESETS))
    p.add_argument("--out", type=Path, default=Path("docs/results/synthetic_trace.md"))
    p.add_argument("--no-png", action="store_true", help="skip the PNG written beside --out")
    p.add_argument("--scale-preset", default="large", choices=sorted(PRESETS),
                   help="a >=10^7-feature preset to time in a child process")
    p.add_argument("--scale-hours", type=int, default=3, help="last hours of --scale-preset to generate")
    p.add_argument("--no-scale", action="store_true", help="skip the scaling measurements")
    p.add_argument("--no-paper-tables", action="store_true", help="skip streaming the 1.24e8-vector table")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(scale_child(json.loads(args.child))))
        return
    if args.scale_hours < 1:
        p.error("--scale-hours must be >= 1")

    t0 = time.perf_counter()
    trace = SyntheticTrace(TraceConfig.preset(args.preset))
    extra: dict[str, Any] = dict(init_seconds=time.perf_counter() - t0)
    res = run_trace(trace)
    extra["tables"] = time_tables(trace, trace.config.hours - 1)
    extra["peak_rss_mb"] = peak_rss_mb()
    if not args.no_png:
        png = args.out.with_suffix(".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        plot(png, trace, res["rows"], res["counts"])
        extra["png"] = png.name
    if not args.no_scale:
        extra["scale"] = run_child(dict(preset=args.scale_preset, hours=args.scale_hours, tables=True))
        if not args.no_paper_tables:
            extra["paper"] = run_child(dict(preset="paper", tables=True))
    text = report(args, trace, res, extra)
    atomic_write(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
