"""Inference latency and process memory of compressed models, in PyTorch and in ONNX Runtime (issue 11).

The analogue of MEmCom's Table 3 (``../shared/papers/memcom-paper.txt`` §5.3: on-device latency and memory
of the uncompressed model against the compressed ones). :func:`run` builds, on MovieLens-1M's schema and
vocabularies, the DSSM once per method (the uncompressed model trained one epoch; Saec, Saec+int8 and int8
made from it by :func:`saec.compress`; MEmCom and Weinberger hashing, which are trained compressed, built at
:attr:`LatencyConfig.ratio` times fewer bytes and trained the same epoch), writes each as an artifact with its ONNX graph
(``saec export --onnx``), and measures each (method, runtime) in a fresh process of its own
(:func:`worker`): RSS before and after loading the artifact (every checksum verified), then ``calls`` timed
calls at each batch size on records of the test split, one thread. The ONNX Runtime process imports no torch
(:mod:`saec.onnx_model`), so its memory is what a torch-free server needs. The raw record keeps every call's
microseconds; :func:`render` writes the page and plot from it alone.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("full", "saec", "saec_int8", "int8", "memcom", "hashing")
RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyConfig:
    """What :func:`run` measures: ``methods`` on ``dataset``, ``calls`` timed calls (after ``warmup``) per
    batch size in ``batches``, with ``threads`` threads; Saec's ``k`` and ``eligibility`` (a field is clustered
    when it has at least ``eligibility * k`` rows: 10 as in the README's MovieLens examples, since MovieLens-1M's
    largest field has 6,040 rows); ``ratio``: MEmCom's and hashing's large tables are that many times smaller
    than full ones in bytes (MEmCom keeps a float per feature, so it cannot reach Saec's one byte per feature);
    the DSSM's ``hidden`` widths."""

    dataset: str = "movielens-1m"
    methods: tuple[str, ...] = METHODS
    batches: tuple[int, ...] = (1, 256)
    calls: int = 400
    warmup: int = 40
    threads: int = 1
    k: int = 100
    eligibility: float = 10.0
    ratio: float = 4.0
    hidden: tuple[int, ...] = (256, 128)
    seed: int = 0


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(runtime: str, folder: str, ids_file: str, calls: int, warmup: int, threads: int) -> dict[str, Any]:
    """In a fresh process: load ``folder`` in ``runtime`` and time calls on the batches of ``ids_file``."""
    before = _rss_mib()
    with np.load(ids_file) as z:  # every batch read once, before any memory is measured
        arrays = {k: z[k] for k in z.files}
    batches = sorted({int(k.split("/")[0]) for k in arrays})
    feeds = {b: [{k.split("/")[1]: v[i] for k, v in arrays.items() if k.startswith(f"{b}/")}
                 for i in range(calls + warmup)] for b in batches}
    if runtime == "torch":
        import torch

        torch.set_num_threads(threads)
        import saec.models  # noqa: F401  (every module loading needs, imported before 'imported' is read)
        import saec.nn.registry  # noqa: F401
        from saec.io import load_model

        feeds = {b: [{n: torch.from_numpy(x) for n, x in f.items()} for f in fs] for b, fs in feeds.items()}
        imported = _rss_mib()
        start = time.perf_counter()
        model, _, _ = load_model(folder)
        model.eval()

        def call(x: Any) -> Any:
            with torch.inference_mode():
                return torch.sigmoid(model(x))
    else:
        import onnxruntime  # noqa: F401  (imported before the model, so 'imported' counts it)

        from saec.onnx_model import OnnxModel

        imported = _rss_mib()
        start = time.perf_counter()
        call = OnnxModel(folder, threads=threads)
    load_s = time.perf_counter() - start
    loaded = _rss_mib()
    times = {}
    for b in batches:
        for x in feeds[b][:warmup]:
            call(x)
        us = []
        for x in feeds[b][warmup:]:
            t = time.perf_counter_ns()
            call(x)
            us.append((time.perf_counter_ns() - t) / 1e3)
        times[str(b)] = us
    return {"runtime": runtime, "rss_start_mib": before, "rss_imported_mib": imported, "rss_loaded_mib": loaded,
            "rss_end_mib": _rss_mib(), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_s": load_s, "times_us": times, "torch_imported": "torch" in sys.modules}


def _train(model: Any, task: Any, seed: int) -> None:
    from saec.train.loop import TrainConfig, make_optimizer, train_epoch

    train_epoch(model, task.train, make_optimizer(model, TrainConfig()), seed=seed, progress=False)
    model.eval()


def build_models(cfg: LatencyConfig) -> tuple[Any, dict[str, Any]]:
    """MovieLens task and ``{method: model}`` as described in the module docstring."""
    import torch

    import saec
    from saec.data.movielens import movielens_ctr
    from saec.models import build_compressed_model, build_model

    torch.manual_seed(cfg.seed)
    task = movielens_ctr(cfg.dataset)
    sizes = {n: len(v) for n, v in task.vocabs.items()}
    full = build_model("dssm", task.schema, sizes, hidden=cfg.hidden, seed=cfg.seed)
    _train(full, task, cfg.seed)
    counts = {f"embeddings.tables.{n}": v.counts for n, v in task.vocabs.items()}
    models: dict[str, Any] = {"full": full}
    for method in ("saec", "saec_int8", "int8"):
        if method in cfg.methods:
            hyper = {"k": cfg.k, "eligibility": cfg.eligibility} if method.startswith("saec") else {}
            models[method], _ = saec.compress(full, method, counts=counts, **hyper)
    for method in ("memcom", "hashing"):
        if method in cfg.methods:
            m = build_compressed_model("dssm", task.schema, task.vocabs, method, ratio=cfg.ratio,
                                       budget="bytes", hidden=cfg.hidden, seed=cfg.seed)
            _train(m, task, cfg.seed)
            models[method] = m
    return task, {m: models[m] for m in cfg.methods}


def run(cfg: LatencyConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Measure every (method, runtime); the raw record as plain data."""
    from saec.bench.report import environment
    from saec.export import to_onnx
    from saec.io import save_model

    start = time.perf_counter()
    record: dict[str, Any] = {"command": command, "config": asdict(cfg), "environment": environment(),
                              "load_before": os.getloadavg()[0], "models": []}
    task, models = build_models(cfg)
    rng = np.random.default_rng(cfg.seed)
    with tempfile.TemporaryDirectory(prefix="saec-latency-") as tmp:
        ids_file = Path(tmp) / "ids.npz"
        arrays = {}
        for b in cfg.batches:
            rows = rng.integers(0, len(task.test), (cfg.calls + cfg.warmup, b))
            for name, ids in task.test.ids.items():
                arrays[f"{b}/{name}"] = np.ascontiguousarray(ids[rows])
        np.savez(ids_file, **arrays)
        for method, model in models.items():
            folder = save_model(Path(tmp) / method, model, task.vocabs, onnx=to_onnx(model))
            files = {p.name: p.stat().st_size for p in folder.iterdir()}
            entry = {"method": method, "table_bytes": int(sum(model.embeddings.table_bytes().values())),
                     "files": files, "runs": []}
            for runtime in RUNTIMES:
                out = subprocess.run([sys.executable, "-m", "saec.bench.latency", runtime, str(folder), str(ids_file),
                                      str(cfg.calls), str(cfg.warmup), str(cfg.threads)],
                                     capture_output=True, text=True, check=True,
                                     env={**os.environ, "OMP_NUM_THREADS": str(cfg.threads)})
                entry["runs"].append(json.loads(out.stdout.strip().splitlines()[-1]))
                if progress:
                    r = entry["runs"][-1]
                    print(f"{method:>10} {runtime:>12}: +{r['rss_loaded_mib'] - r['rss_imported_mib']:.0f} MiB, "
                          + ", ".join(f"b{b} p50 {np.percentile(t, 50):.0f} us" for b, t in r["times_us"].items()),
                          flush=True)
            record["models"].append(entry)
    record["wall_s"] = time.perf_counter() - start
    record["load_after"] = os.getloadavg()[0]
    from saec.bench.report import peak_rss_mib

    record["peak_rss_mib"] = peak_rss_mib()
    return record


# -- report ----------------------------------------------------------------------------------------
LABELS = {"full": "uncompressed", "saec": "Saec", "saec_int8": "Saec + int8", "int8": "int8", "memcom": "MEmCom",
          "hashing": "Weinberger hashing"}


def _mib(b: float) -> str:
    return f"{b / 2**20:.2f} MiB" if b >= 2**20 else f"{b / 2**10:.1f} KiB"


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page and the plot of a :func:`run` record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.bench.report import header, markdown_table, save_figure
    from saec.io import write_text

    cfg = record["config"]
    order = ["saec", "python", "torch", "numpy", "faiss", "machine", "date"]
    recorded = {k: v for k, v in record["environment"].items() if k != "torch threads"}  # workers: cfg threads
    env = {**{k: recorded[k] for k in order if k in recorded}, **{k: v for k, v in recorded.items() if k not in order},
           "threads per measured process": str(cfg["threads"]), "peak RSS (parent)": f"{record['peak_rss_mib']:,.0f} MiB",
           "wall time": f"{record['wall_s'] / 60:.1f} min",
           "load average (1 min) before / after": f"{record['load_before']:.2f} / {record['load_after']:.2f}"}
    text = header(f"Inference latency and memory, PyTorch and ONNX Runtime ({cfg['dataset']}; MEmCom Table 3 "
                  f"analogue)", record["command"], env)
    batches = [str(b) for b in cfg["batches"]]
    full = next((m for m in record["models"] if m["method"] == "full"), None)
    text += (
        f"\nThe DSSM (MLP {tuple(cfg['hidden'])}) on {cfg['dataset']}'s fields and vocabularies: uncompressed "
        f"(trained one epoch), Saec (k={cfg['k']}, eligibility {cfg['eligibility']:g}), Saec + int8 and int8 (from it, `saec.compress`), MEmCom and "
        f"Weinberger hashing (trained compressed one epoch, their large tables {cfg['ratio']:g}x smaller than full "
        f"ones in bytes: MEmCom keeps a float per feature, so it cannot reach Saec's byte per feature). Each is "
        f"written as an artifact with its ONNX graph (`saec export --onnx`) and measured in a fresh process per "
        f"runtime, {cfg['threads']} thread: **memory** is the process's RSS after loading the artifact (every "
        f"checksum verified) minus its RSS after importing the runtime and saec's loader (so it holds the model and "
        f"whatever the runtime allocates for it, e.g. ONNX Runtime's session and arena); **latency** is {cfg['calls']} timed calls "
        f"per batch size after {cfg['warmup']} untimed ones, on records drawn from the test split (already encoded "
        f"ids: the vocabulary lookup of `saec serve` is not in it), PyTorch under `torch.inference_mode()` with "
        f"the model's own lookups, ONNX Runtime on the exported graph (the ONNX process imports no torch).\n\n")
    rows = [["method", "tables", "model.onnx", "runtime", "memory (MiB)", "process RSS (MiB)",
             *[f"batch {b}: p50 / p99 (µs)" for b in batches], "load (s)"]]
    for m in record["models"]:
        for r in m["runs"]:
            rows.append([LABELS.get(m["method"], m["method"]), _mib(m["table_bytes"]), _mib(m["files"]["model.onnx"]),
                         r["runtime"], f"{r['rss_loaded_mib'] - r['rss_imported_mib']:.1f}",
                         f"{r['rss_loaded_mib']:.0f}",
                         *[f"{np.percentile(r['times_us'][b], 50):,.0f} / {np.percentile(r['times_us'][b], 99):,.0f}"
                           for b in batches], f"{r['load_s']:.2f}"])
    text += markdown_table(rows)
    text += "\n## Findings\n\n" + _findings(record, full, batches) + "\n![latency](" + Path(png_path).name + ")\n"
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 3.8))
    axes = np.atleast_1d(axes)
    names = [m["method"] for m in record["models"]]
    for ax, b in zip(axes, batches):
        x = np.arange(len(names))
        for j, runtime in enumerate(RUNTIMES):
            p50 = [np.percentile(next(r for r in m["runs"] if r["runtime"] == runtime)["times_us"][b], 50)
                   for m in record["models"]]
            p99 = [np.percentile(next(r for r in m["runs"] if r["runtime"] == runtime)["times_us"][b], 99)
                   for m in record["models"]]
            ax.bar(x + (j - 0.5) * 0.38, p50, 0.38, label=f"{runtime} p50")
            ax.scatter(x + (j - 0.5) * 0.38, p99, marker="_", s=200, color="k", zorder=3,
                       label="p99" if j == 0 else None)
        ax.set_xticks(x, [LABELS.get(n, n) for n in names], rotation=25, ha="right")
        ax.set_ylabel("µs per call")
        ax.set_title(f"batch {b}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_path)
    write_text(md_path, text)


def _findings(record: dict[str, Any], full: dict[str, Any] | None, batches: list[str]) -> str:
    def run_of(m: dict[str, Any], runtime: str) -> dict[str, Any]:
        return next(r for r in m["runs"] if r["runtime"] == runtime)

    def p50(m: dict[str, Any], runtime: str, b: str) -> float:
        return float(np.percentile(run_of(m, runtime)["times_us"][b], 50))

    lines = []
    for b in batches:
        faster = [m for m in record["models"] if p50(m, "onnxruntime", b) < p50(m, "torch", b)]
        ratios = [p50(m, "torch", b) / p50(m, "onnxruntime", b) for m in record["models"]]
        lines.append(f"- Batch {b}: ONNX Runtime's median call is faster than PyTorch's for {len(faster)} of "
                     f"{len(record['models'])} models (PyTorch / ONNX Runtime: {min(ratios):.2f}x to "
                     f"{max(ratios):.2f}x).")
    if full is not None:
        for runtime in RUNTIMES:
            base = run_of(full, runtime)
            base_mem = base["rss_loaded_mib"] - base["rss_imported_mib"]
            parts = []
            for m in record["models"]:
                if m is full:
                    continue
                r = run_of(m, runtime)
                parts.append(f"{LABELS.get(m['method'], m['method'])} {r['rss_loaded_mib'] - r['rss_imported_mib']:.1f}")
            lines.append(f"- Memory in {runtime}: the uncompressed model adds {base_mem:.1f} MiB to the process; "
                         + ", ".join(parts) + " MiB.")
    onnx_rss = [run_of(m, "onnxruntime")["rss_loaded_mib"] for m in record["models"]]
    torch_rss = [run_of(m, "torch")["rss_loaded_mib"] for m in record["models"]]
    lines.append(f"- Whole process: {min(onnx_rss):.0f}-{max(onnx_rss):.0f} MiB with ONNX Runtime (no torch "
                 f"imported: {not any(run_of(m, 'onnxruntime')['torch_imported'] for m in record['models'])}), "
                 f"{min(torch_rss):.0f}-{max(torch_rss):.0f} MiB with PyTorch: on a device, the runtime outweighs "
                 f"every model here.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the per-(method, runtime) process of run()
    runtime, folder, ids_file, calls, warmup, threads = sys.argv[1:7]
    print(json.dumps(worker(runtime, folder, ids_file, int(calls), int(warmup), int(threads))))
