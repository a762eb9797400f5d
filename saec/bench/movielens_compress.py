"""MovieLens-1M: every post-training method of :func:`saec.compress` on the DSSM that ``saec run`` trains.

:func:`run` trains the model once through the flow of ``saec run`` (:func:`saec.pipeline.flow.run_saec`),
compresses that one trained model with each method, measures test AUC / log loss, table and ``state_dict``
bytes and compression time, and checks that Saec through :func:`saec.compress` is the flow's Saec
(:func:`saec.compression.compress_model`): same test AUC, same bytes, same codebooks and masks. It returns
the raw record as plain data; :func:`render` writes the page and plot from that record alone.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import saec
from saec.bench.report import (checksums, cpu_model, environment, header, markdown_table, peak_rss_mib, read_result,
                               save_figure)
from saec.cluster.saec import SaecConfig, size_report
from saec.compression import compress_model
from saec.data import movielens
from saec.io import write_text
from saec.pipeline.flow import run_saec
from saec.train.loop import TrainConfig, evaluate

FLOW_ROW = "saec (compress_model)"
"""The label of the flow's Saec in the record and on the page."""
CLUSTERING = ("saec", "saec_int8")
"""Methods that take the Saec settings (k, eligibility, k-means seed)."""
REFERENCES = {"movielens-1m": Path("docs/results/movielens_saec.json")}
"""The existing Saec sweep (by data set, path from the repository root) whose full model and k-means run this
page is held against."""


@dataclass
class CompressBenchConfig:
    """What :func:`run` does. Training defaults are those of ``saec run`` (its command-line defaults) and
    the Saec settings those of the README's main job (k=100, eligibility 10 x k)."""

    dataset: str = "movielens-1m"
    model: str = "dssm"
    hidden: tuple[int, ...] = (256, 128)
    optimizer: str = "adagrad"
    lr: float = 0.01
    batch_size: int = 1024
    epochs: int = 10
    patience: int = 2
    seed: int = 0
    k: int = 100
    eligibility: float = 10.0
    kmeans_seed: int = 0
    min_rows: int = 1000
    methods: tuple[str, ...] = ("saec", "saec_int8", "fp16", "int8", "int4", "int2")

    def train_config(self, progress: bool = True) -> TrainConfig:
        return TrainConfig(optimizer=self.optimizer, lr=self.lr, batch_size=self.batch_size, epochs=self.epochs,
                           patience=self.patience, seed=self.seed, progress=progress)

    def saec_config(self) -> SaecConfig:
        return SaecConfig(k=self.k, eligibility=self.eligibility, seed=self.kmeans_seed)

    def hyper(self, method: str) -> dict[str, Any]:
        """The settings :func:`saec.compress` gets for ``method`` beyond counts and ``min_rows``."""
        if method in CLUSTERING:
            return {"k": self.k, "eligibility": self.eligibility, "seed": self.kmeans_seed}
        return {}


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a saved copy of the whole model takes."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def load_reference(path: Path, model: str, k: int, eligibility: float, seed: int) -> dict[str, Any] | None:
    """The full model's and the k-means run's numbers from the existing sweep's raw record (``None`` if absent)."""
    if not path.exists():
        return None
    record = read_result(path)
    res = next((r for r in record["results"] if r["model"] == model), None)
    if res is None:
        return None
    run = next((r for r in res["runs"] if r["k"] == k and r["seed"] == seed and r["eligibility"] == eligibility), None)
    out = {"source": str(path), "full": res["full"], "best_epoch": res["best_epoch"], "epochs": len(res["history"])}
    if run is not None:
        out.update({"compressed": run["before"], "retrained": run.get("mean+full"),
                    "bytes_before": run["bytes_before"], "bytes_after": run["bytes_after"]})
    return out


def _tables_equal(a: nn.Module, b: nn.Module, fields: list[str]) -> bool:
    """Whether the clustered ``fields`` of two compressed DSSMs hold the same codebooks and masks."""
    ta, tb = a.embeddings.tables, b.embeddings.tables
    return all(torch.equal(ta[f].codebook, tb[f].codebook) and torch.equal(ta[f].mask, tb[f].mask) for f in fields)


def run(cfg: CompressBenchConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Train, compress with every method, check the flow's Saec; the raw record as plain (JSON-able) data."""
    start = time.perf_counter()
    record: dict[str, Any] = {"command": command, "config": asdict(cfg), "environment": environment(),
                              "cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_before": os.getloadavg()[0]}
    task = movielens.movielens_ctr(cfg.dataset)
    record["task"] = task.summary()
    # the flow of `saec run`: train (early stopping on valid), compress, retrain one epoch, evaluate
    flow = run_saec(task, cfg.saec_config(), cfg.train_config(progress), cfg.model, cfg.hidden)
    full = flow.model
    record["training"] = {"history": flow.history.to_dict(), "timing": flow.timing, "metrics": flow.metrics,
                          "sizes": {"bytes_before": flow.sizes.total("bytes_before"),
                                    "bytes_after": flow.sizes.total("bytes_after")}}
    record["full"] = {**evaluate(full, task.test), "state_dict_bytes": state_dict_bytes(full)}
    counts = {f"embeddings.tables.{name}": v.counts for name, v in task.vocabs.items()}

    record["methods"] = []
    models: dict[str, nn.Module] = {}
    for method in cfg.methods:
        t = time.perf_counter()
        compressed, report = saec.compress(full, method, counts=counts, min_rows=cfg.min_rows, **cfg.hyper(method))
        seconds = time.perf_counter() - t
        models[method] = compressed
        record["methods"].append({"method": method, "hyper": cfg.hyper(method), "compress_s": seconds,
                                  **evaluate(compressed, task.test), "state_dict_bytes": state_dict_bytes(compressed),
                                  "report": report.to_dict()})
        if progress:
            print(f"{method}: test AUC {record['methods'][-1]['auc']:.4f}, tables {report.bytes_before:,} -> "
                  f"{report.bytes_after:,} bytes ({report.ratio:.1f}x), {seconds:.2f} s")

    # the flow's path (what run_saec and `saec compress --model` call) on the same trained model
    t = time.perf_counter()
    flow_model, fields = compress_model(full, {n: v.counts for n, v in task.vocabs.items()}, cfg.saec_config())
    seconds = time.perf_counter() - t
    sizes = size_report(fields.values())
    clustered = [n for n, f in fields.items() if f.size.clustered]
    record["flow"] = {"method": FLOW_ROW, "compress_s": seconds, **evaluate(flow_model, task.test),
                      "state_dict_bytes": state_dict_bytes(flow_model), "clustered": clustered,
                      "bytes_before": sizes.total("bytes_before"), "bytes_after": sizes.total("bytes_after")}
    if "saec" in models:
        record["flow"]["same_tables"] = _tables_equal(models["saec"], flow_model, clustered)
    ref = REFERENCES.get(cfg.dataset)
    record["reference"] = ref and load_reference(ref, cfg.model, cfg.k, cfg.eligibility, cfg.kmeans_seed)
    record["wall_s"] = time.perf_counter() - start
    record["load_after"] = os.getloadavg()[0]
    record["peak_rss_mib"] = peak_rss_mib()
    return record


def flow_mismatches(record: dict[str, Any]) -> list[str]:
    """How Saec through :func:`saec.compress` differs from the flow's Saec in ``record`` (empty: identical)."""
    row = next((m for m in record["methods"] if m["method"] == "saec"), None)
    if row is None:
        return []
    flow, out = record["flow"], []
    for what, mine, theirs in (("test AUC", row["auc"], flow["auc"]),
                               ("test AUC of run_saec's compressed model", row["auc"],
                                record["training"]["metrics"]["compressed"]["auc"]),
                               ("test log loss", row["logloss"], flow["logloss"]),
                               ("table bytes before", row["report"]["bytes_before"], flow["bytes_before"]),
                               ("table bytes after", row["report"]["bytes_after"], flow["bytes_after"]),
                               ("state_dict bytes", row["state_dict_bytes"], flow["state_dict_bytes"])):
        if mine != theirs:
            out.append(f"{what}: saec.compress {mine!r}, compress_model {theirs!r}")
    if not flow.get("same_tables", False):
        out.append("codebooks or masks differ")
    return out


# -- page ------------------------------------------------------------------------------------------
def _compressed_paths(row: dict[str, Any]) -> list[str]:
    return [t["path"] for t in row["report"]["tables"] if t["method"]]


def _short(path: str) -> str:
    return path.removeprefix("embeddings.tables.")


def _hyper(hyper: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hyper.items())


def _header(record: dict[str, Any]) -> str:
    """:func:`saec.bench.report.header` with the environment recorded when the numbers were measured (so that
    re-rendering does not restamp the date or the versions)."""
    cfg = record["config"]
    title = f"Post-training compression of the {cfg['dataset']} {cfg['model'].upper()} through saec.compress"
    return header(title, record["command"], record["environment"], checksums(record))


def _results_table(record: dict[str, Any]) -> str:
    full = record["full"]
    first = record["methods"][0]["report"] if record["methods"] else None
    table_bytes = first["bytes_before"] if first else record["flow"]["bytes_before"]
    rows = [["method", "settings", "tables compressed", "table bytes", "table ratio", "state_dict bytes",
             "state_dict ratio", "test AUC", "Δ AUC", "test log loss", "Δ log loss", "compress s"]]
    rows.append(["float32 (trained)", "", "", f"{table_bytes:,}", "1.0x", f"{full['state_dict_bytes']:,}", "1.0x",
                 f"{full['auc']:.4f}", "", f"{full['logloss']:.4f}", "", ""])
    entries = [(m["method"], _hyper(m["hyper"]), ", ".join(_short(p) for p in _compressed_paths(m)),
                m["report"]["bytes_after"], m) for m in record["methods"]]
    flow = record["flow"]
    entries.append((FLOW_ROW, _hyper({"k": record["config"]["k"], "eligibility": record["config"]["eligibility"],
                                      "seed": record["config"]["kmeans_seed"]}),
                    ", ".join(flow["clustered"]), flow["bytes_after"], flow))
    for name, hyper, paths, after, m in entries:
        rows.append([name, hyper, paths or "none", f"{after:,}", f"{table_bytes / after:.1f}x",
                     f"{m['state_dict_bytes']:,}", f"{full['state_dict_bytes'] / m['state_dict_bytes']:.2f}x",
                     f"{m['auc']:.4f}", f"{m['auc'] - full['auc']:+.4f}", f"{m['logloss']:.4f}",
                     f"{m['logloss'] - full['logloss']:+.4f}", f"{m['compress_s']:.2f}"])
    return markdown_table(rows)


def _per_table(record: dict[str, Any]) -> str:
    methods = record["methods"]
    if not methods:
        return ""
    tables = methods[0]["report"]["tables"]
    rows = [["table", "rows x dim", "float32 bytes", *[m["method"] for m in methods]]]
    for i, t in enumerate(tables):
        cells = []
        for m in methods:
            u = m["report"]["tables"][i]
            cells.append(f"{u['bytes_after']:,}" if u["method"] else "left full")
        rows.append([_short(t["path"]), f"{t['rows']:,} x {t['dim']}", f"{t['bytes_before']:,}", *cells])
    return markdown_table(rows)


def _skips(record: dict[str, Any]) -> str:
    """Why the tables left full were left full (the same reasons for every method, listed once per reason)."""
    reasons: dict[str, list[str]] = {}
    for m in record["methods"]:
        for t in m["report"]["tables"]:
            if not t["method"]:
                names = reasons.setdefault(t["skipped"], [])
                if _short(t["path"]) not in names:
                    names.append(_short(t["path"]))
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items())


def _reading(record: dict[str, Any]) -> str:
    cfg, full, tr = record["config"], record["full"], record["training"]
    hist = tr["history"]
    valid = ", ".join(f"{e['valid_auc']:.4f}" for e in hist["epochs"])
    epochs = f"{cfg['epochs']} epoch" + ("s" if cfg["epochs"] > 1 else "")
    text = (f"The float model is trained once by `saec.pipeline.flow.run_saec`, the flow of `saec run --dataset "
            f"{cfg['dataset']}` ({cfg['model']}, hidden {','.join(map(str, cfg['hidden']))}, {cfg['optimizer']} "
            f"lr {cfg['lr']:g}, batch {cfg['batch_size']}, at most {epochs} with early stopping on valid AUC, "
            f"patience {cfg['patience']}, seed {cfg['seed']}): best epoch {hist['best_epoch']} of "
            f"{len(hist['epochs'])} ({tr['timing']['train_s']:.0f} s; valid AUC per epoch {valid}), test AUC "
            f"{full['auc']:.4f}, log loss {full['logloss']:.4f}.")
    ref = record.get("reference")
    if ref:
        d = full["auc"] - ref["full"]["auc"]
        text += (f" The full model of [movielens_saec.md](movielens_saec.md) (`{ref['source']}`) has test AUC "
                 f"{ref['full']['auc']:.4f} (best epoch {ref['best_epoch']} of {ref['epochs']}); this one "
                 + ("reproduces it: test AUC and log loss are identical to the last digit" if full["auc"] == ref["full"]["auc"]
                    and full["logloss"] == ref["full"]["logloss"] else f"differs by {d:+.4f} AUC") + ".")
    text += (f"\n\nEvery method then compresses that one trained model, with `saec.compress(model, method, counts, "
             f"min_rows={cfg['min_rows']}, ...)` (counts: the training split's frequencies from the vocabularies, by "
             f"table path). Saec and saec_int8 take k={cfg['k']}, eligibility {cfg['eligibility']:g} x k and k-means "
             f"seed {cfg['kmeans_seed']} (the README's main job); the integer and float16 methods take no settings. "
             f"Post-training compression is deterministic given the model, so each method is run once; nothing is "
             f"retrained. Tables left full: {_skips(record) or 'none'}.")
    text += ("\n\n*Table bytes*: the `CompressionReport` total over every embedding table (tables left full count "
             "on both sides; the per-field OOV vectors and the MLP are not tables). *state_dict bytes*: "
             "`torch.save(model.state_dict())` of the whole model, MLP included. Δ: against the float model.\n")
    return text


def _flow_check(record: dict[str, Any]) -> str:
    flow, tr = record["flow"], record["training"]
    row = next((m for m in record["methods"] if m["method"] == "saec"), None)
    if row is None:
        return ""
    bad = flow_mismatches(record)
    text = (f"`compress_model(model, counts, SaecConfig(k={record['config']['k']}, eligibility="
            f"{record['config']['eligibility']:g}))`, the flow's path, on the same trained model gives test AUC "
            f"{flow['auc']:.6f} and tables of {flow['bytes_before']:,} -> {flow['bytes_after']:,} bytes; "
            f"`saec.compress(model, \"saec\", ...)` gives {row['auc']:.6f} and {row['report']['bytes_before']:,} -> "
            f"{row['report']['bytes_after']:,} bytes. ")
    text += ("**Identical**: test AUC, log loss, table and state_dict bytes are equal and the codebooks and masks "
             "are equal tensor for tensor (the script checks this and fails otherwise)." if not bad else
             "**They differ**: " + "; ".join(bad) + ".")
    m = tr["metrics"]
    text += (f" Inside `run_saec` itself the compressed model (before retraining) has test AUC "
             f"{m['compressed']['auc']:.6f}; after the flow's one retraining epoch {m['saec']['auc']:.4f}.")
    ref = record.get("reference")
    if ref and "compressed" in ref:
        same = (ref["compressed"] == m["compressed"] and ref["retrained"] == m["saec"]
                and (ref["bytes_before"], ref["bytes_after"]) == (flow["bytes_before"], flow["bytes_after"]))
        text += (f" The Saec sweep's run at the same setting ([movielens_saec.md](movielens_saec.md), retrained on the "
                 f"full model's predictions) has {ref['compressed']['auc']:.4f} before and "
                 f"{ref['retrained']['auc']:.4f} after retraining, tables {ref['bytes_before']:,} -> "
                 f"{ref['bytes_after']:,} bytes: "
                 + ("test AUC and log loss before and after retraining and bytes identical to this run's." if same
                    else "not the same as this run's."))
    return text + "\n"


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """Write the results page and its plot from ``record`` (what :func:`run` returned) alone."""
    text = _header(record)
    text += (f"\nRun time {record['wall_s'] / 60:.1f} min (training, the flow's retraining epoch, every compression "
             f"and evaluation), peak RSS {record['peak_rss_mib']:,.0f} MiB; CPU {record['cpu']}, "
             f"{record['cpu_count']} cores; 1-min load average {record['load_before']:.2f} before and "
             f"{record['load_after']:.2f} after the run (a load well above the thread count means another process "
             f"competed; that moves the times, not the AUCs or bytes).\n\n```\n{record['task']}\n```\n\n")
    text += _reading(record)
    text += "\n## Results\n\n" + _results_table(record)
    text += "\n## Saec through saec.compress vs the flow\n\n" + _flow_check(record)
    text += "\n## Bytes per table\n\n" + _per_table(record)
    text += f"\n![test AUC vs table compression ratio]({Path(png_path).name})\n"
    write_text(md_path, text)
    plot(record, png_path)


def plot(record: dict[str, Any], png_path: str | Path) -> None:
    """Test AUC against the embedding tables' compression ratio, one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    full = record["full"]
    ratios = [m["report"]["bytes_before"] / m["report"]["bytes_after"] for m in record["methods"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m, ratio in zip(record["methods"], ratios):
        ax.scatter([ratio], [m["auc"]], s=40, zorder=3)
        ax.annotate(m["method"], (ratio, m["auc"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.axhline(full["auc"], color="gray", ls="--", lw=1, label="float32 (trained)")
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if min(ratios, default=1) / 1.5 <= t
             <= max(ratios, default=1) * 1.5]
    ax.set_xticks(ticks, [f"{t}x" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("embedding table bytes: float32 / compressed")
    ax.set_ylabel("test AUC")
    ax.set_title(f"{record['config']['dataset']} {record['config']['model']}: post-training methods", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, png_path)


__all__ = ["CompressBenchConfig", "flow_mismatches", "load_reference", "plot", "render", "run", "state_dict_bytes"]
