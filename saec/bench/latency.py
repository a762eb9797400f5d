"""Inference latency and process memory of compressed models, in PyTorch and in ONNX Runtime (issue 11).

The analogue of MEmCom's Table 3 (``../shared/papers/memcom-paper.txt`` §5.3: on-device latency and memory
of the uncompressed model against the compressed ones). :func:`run` builds a DSSM once per method and writes
each as an artifact with its ONNX graph (``saec export --onnx``), then measures each (method, runtime) in a
fresh process of its own (:func:`worker`): RSS (anonymous and file-backed apart) before and after loading the
artifact (every checksum verified), then ``calls`` timed calls at each batch size, one thread. The ONNX Runtime
process imports no torch (:mod:`saec.onnx_model`), so its memory is what a torch-free server needs. The raw
record keeps every call's microseconds; :func:`render` writes the page and plot from it alone.

Two workloads (:attr:`LatencyConfig.dataset`):

* ``movielens-1m``: MovieLens-1M's schema and vocabularies; the uncompressed model trained one epoch; Saec,
  Saec+int8 and int8 made from it by :func:`saec.compress`; MEmCom and Weinberger hashing, trained compressed,
  built at :attr:`LatencyConfig.ratio` times fewer bytes and trained the same epoch; calls on test-split records.
* ``paper``: the synthetic trace's last hour at the Saec paper's scale (:mod:`saec.data.synthetic`, preset
  ``paper``: 256 fields, 1.24x10^8 features, Saec Table 1), the full tables holding the trace's trained-looking
  vectors and the MLP as initialised (nothing is trained: latency and memory do not depend on the values); the
  others made from it as above, MEmCom and hashing left as built. Calls draw every field's ids in proportion to
  the features' counts at that hour. Artifacts this size load memory-mapped (:data:`saec.io.MMAP_BYTES`), and
  graphs over 2 GiB keep their tensors in ONNX external data, which ONNX Runtime maps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from saec.bench.measure import last_json_line, peak_rss_mib, proc_memory
from saec.errors import SaecError

METHODS = ("full", "saec", "saec_int8", "int8", "memcom", "hashing")
RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyConfig:
    """What :func:`run` measures: ``methods`` on ``dataset``, ``calls`` timed calls (after ``warmup``) per
    batch size in ``batches``, with ``threads`` threads; Saec's ``k`` and ``eligibility`` (a field is clustered
    when it has at least ``eligibility * k`` rows: 10 as in the README's MovieLens examples, since MovieLens-1M's
    largest field has 6,040 rows); ``ratio``: MEmCom's and hashing's large tables are that many times smaller
    than full ones in bytes (MEmCom keeps a float per feature, so it cannot reach Saec's one byte per feature);
    the DSSM's ``hidden`` widths; ``features``: the ``paper`` trace's size, if not the paper's."""

    dataset: str = "movielens-1m"  # or "paper" (module docstring)
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
    features: int | None = None  # "paper" only: the trace's final_features instead of the preset's 1.24e8


def _rss_mib() -> float:
    return _memory()["rss"]


def _memory() -> dict[str, float]:
    """The process's resident memory in MiB: all of it, and its anonymous and file-backed parts (the pages of
    memory-mapped files, which the kernel can drop and read again)."""
    m = proc_memory()
    return {name: m[key] / 2**20 if key in m else float("nan")
            for key, name in (("VmRSS", "rss"), ("RssAnon", "anon"), ("RssFile", "file"))}


def worker(runtime: str, folder: str, ids_file: str, calls: int, warmup: int, threads: int) -> dict[str, Any]:
    """In a fresh process: load ``folder`` in ``runtime`` and time calls on the batches of ``ids_file``."""
    before = _rss_mib()
    with np.load(ids_file) as z:  # every batch read once, before any memory is measured
        arrays = {k: z[k] for k in z.files}
    batches = sorted({int(k.split("/")[0]) for k in arrays})
    feeds = {b: [{k.split("/")[1]: v[i] for k, v in arrays.items() if k.startswith(f"{b}/")}
                 for i in range(calls + warmup)] for b in batches}
    fed = _rss_mib()
    prepare: Any = lambda x: x  # noqa: E731  (the predictor's records are made outside the timed call)
    if runtime == "predictor":  # what saec serve runs: raw records in, through the vocabularies
        import torch

        torch.set_num_threads(threads)
        import saec.models  # noqa: F401
        import saec.nn.registry  # noqa: F401
        from saec.predict import Predictor

        names = sorted({k.split("/")[1] for k in arrays})

        def records(x: dict[str, np.ndarray]) -> list[dict[str, Any]]:
            cols = {n: x[n].tolist() for n in names}
            return [{n: cols[n][r] for n in names} for r in range(len(cols[names[0]]))]

        imported_mem = _memory()
        start = time.perf_counter()
        predictor = Predictor.from_folder(Path(folder), "bench")
        call = predictor.predict
        prepare = records
    elif runtime == "torch":
        import torch

        torch.set_num_threads(threads)
        import saec.models  # noqa: F401  (every module loading needs, imported before 'imported' is read)
        import saec.nn.registry  # noqa: F401
        from saec.io import load_model

        feeds = {b: [{n: torch.from_numpy(x) for n, x in f.items()} for f in fs] for b, fs in feeds.items()}
        imported_mem = _memory()
        start = time.perf_counter()
        model, _, _ = load_model(folder)
        model.eval()

        def call(x: Any) -> Any:
            with torch.inference_mode():
                return torch.sigmoid(model(x))
    else:
        import onnxruntime  # noqa: F401  (imported before the model, so 'imported' counts it)

        from saec.onnx_model import OnnxModel

        imported_mem = _memory()
        start = time.perf_counter()
        call = OnnxModel(folder, threads=threads)
    load_s = time.perf_counter() - start
    loaded_mem = _memory()
    loaded = loaded_mem["rss"]
    times = {}
    for b in batches:
        for x in feeds[b][:warmup]:
            call(prepare(x))
        us = []
        for x in feeds[b][warmup:]:
            x = prepare(x)
            t = time.perf_counter_ns()
            call(x)
            us.append((time.perf_counter_ns() - t) / 1e3)
        times[str(b)] = us
    end_mem = _memory()
    return {"runtime": runtime, "rss_start_mib": before, "rss_fed_mib": fed, "rss_imported_mib": imported_mem["rss"], "rss_loaded_mib": loaded,
            "rss_end_mib": end_mem["rss"], "peak_rss_mib": peak_rss_mib(),
            "memory_mib": {"imported": imported_mem, "loaded": loaded_mem, "end": end_mem},
            "load_s": load_s, "times_us": times, "torch_imported": "torch" in sys.modules}


def _train(model: Any, task: Any, seed: int) -> None:
    from saec.train.loop import TrainConfig, make_optimizer, train_epoch

    train_epoch(model, task.train, make_optimizer(model, TrainConfig()), seed=seed, progress=False)
    model.eval()


def _compressed(cfg: LatencyConfig, full: Any, counts: dict[str, Any], method: str) -> Any:
    import saec

    hyper = {"k": cfg.k, "eligibility": cfg.eligibility} if method.startswith("saec") else {}
    return saec.compress(full, method, counts=counts, **hyper)[0]


def movielens_workload(cfg: LatencyConfig) -> tuple[dict[str, Any], Any, Iterator[tuple[str, Any]], Any]:
    """``(vocabs, draw, models, raw)`` on MovieLens (module docstring): ``draw(rng, n, batch)`` gives ``n`` batches
    of test-split ids per field, ``models`` yields ``(method, model)`` one at a time, ``raw(ids)`` the raw values
    of ids per field for the predictor's records (None here: MovieLens has multi-valued fields)."""
    import torch

    from saec.data.movielens import movielens_ctr
    from saec.models import build_compressed_model, build_model

    torch.manual_seed(cfg.seed)
    task = movielens_ctr(cfg.dataset)
    sizes = {n: len(v) for n, v in task.vocabs.items()}
    full = build_model("dssm", task.schema, sizes, hidden=cfg.hidden, seed=cfg.seed)
    _train(full, task, cfg.seed)
    counts = {f"embeddings.tables.{n}": v.counts for n, v in task.vocabs.items()}

    def draw(rng: np.random.Generator, n: int, batch: int) -> dict[str, np.ndarray]:
        rows = rng.integers(0, len(task.test), (n, batch))
        return {name: np.ascontiguousarray(ids[rows]) for name, ids in task.test.ids.items()}

    def models() -> Iterator[tuple[str, Any]]:
        for method in cfg.methods:
            if method == "full":
                yield method, full
            elif method in ("memcom", "hashing"):
                m = build_compressed_model("dssm", task.schema, task.vocabs, method, ratio=cfg.ratio,
                                           budget="bytes", hidden=cfg.hidden, seed=cfg.seed)
                _train(m, task, cfg.seed)
                yield method, m
            else:
                yield method, _compressed(cfg, full, counts, method)

    return task.vocabs, draw, models(), None


def paper_workload(cfg: LatencyConfig) -> tuple[dict[str, Any], Any, Iterator[tuple[str, Any]], Any]:
    """:func:`movielens_workload` on the synthetic trace's last hour at the paper's scale (module docstring)."""
    import torch
    from torch import nn

    from saec.data.synthetic import SyntheticTrace, TraceConfig
    from saec.data.vocab import SORTED_LOOKUP, Vocabulary
    from saec.models import build_compressed_model, build_model

    torch.manual_seed(cfg.seed)
    trace = SyntheticTrace(TraceConfig.preset("paper", seed=cfg.seed,
                                              **({"final_features": cfg.features} if cfg.features else {})))
    hour = trace.config.hours - 1
    sizes = {n: int(trace.universe(hour)[f]) for f, n in enumerate(trace.names)}
    counts = {n: trace.field_counts(hour, f) for f, n in enumerate(trace.names)}
    vocabs = {}
    for f, n in enumerate(trace.names):  # sorted once here, not at every save (saec.data.vocab.SORTED_LOOKUP)
        arrays = {"values": trace.raw_ids(f, np.arange(sizes[n])), "counts": counts[n]}
        if sizes[n] >= SORTED_LOOKUP:
            arrays["order"] = np.argsort(arrays["values"], kind="stable")
            arrays["sorted"] = arrays["values"][arrays["order"]]
        vocabs[n] = Vocabulary.from_arrays({"min_count": 1, "values": None, "pending": []}, arrays)

    def draw(rng: np.random.Generator, n: int, batch: int) -> dict[str, np.ndarray]:
        out = {}
        for name, c in counts.items():
            cum = np.cumsum(c + 1)  # +1: a feature of count 0 is drawn rarely, not never
            out[name] = np.searchsorted(cum, rng.integers(0, cum[-1], (n, batch)), side="right").astype(np.int64)
        return out

    def full_model() -> Any:
        tables = {n: nn.Embedding(sizes[n], int(trace.dims[f]), sparse=True,
                                  _weight=torch.from_numpy(trace.field_vectors(f, 0, sizes[n])))
                  for f, n in enumerate(trace.names)}
        return build_model("dssm", trace.schema, sizes, hidden=cfg.hidden, seed=cfg.seed, tables=tables).eval()

    def models() -> Iterator[tuple[str, Any]]:
        full = full_model() if any(m not in ("memcom", "hashing") for m in cfg.methods) else None
        by_path = {f"embeddings.tables.{n}": c for n, c in counts.items()}
        for i, method in enumerate(cfg.methods):
            if all(m in ("memcom", "hashing") for m in cfg.methods[i:]):
                full = None  # nothing left is made from it: 4.6 GiB at the paper's scale
            if method == "full":
                yield method, full
            elif method in ("memcom", "hashing"):
                yield method, build_compressed_model("dssm", trace.schema, vocabs, method, ratio=cfg.ratio,
                                                     budget="bytes", hidden=cfg.hidden, seed=cfg.seed).eval()
            else:
                yield method, _compressed(cfg, full, by_path, method)

    def raw(ids: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: trace.raw_ids(f, ids[n]) for f, n in enumerate(trace.names)}

    return vocabs, draw, models(), raw


WORKLOADS = {"movielens-1m": movielens_workload, "movielens-100k": movielens_workload, "paper": paper_workload}


def run(cfg: LatencyConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Measure every (method, runtime); the raw record as plain data. Each model is written, measured and
    deleted before the next is built, so the largest artifact alone sets the disk and memory needed."""
    import shutil

    from saec.bench.report import environment
    from saec.export import to_onnx
    from saec.io import save_model

    if cfg.dataset not in WORKLOADS:
        raise SaecError(f"dataset {cfg.dataset!r}: the latency benchmark runs on {sorted(WORKLOADS)}")
    start = time.perf_counter()
    record: dict[str, Any] = {"command": command, "config": asdict(cfg), "environment": environment(),
                              "load_before": os.getloadavg()[0], "models": []}
    vocabs, draw, models, raw = WORKLOADS[cfg.dataset](cfg)
    record["workload"] = {"fields": len(vocabs), "features": int(sum(len(v) for v in vocabs.values()))}
    rng = np.random.default_rng(cfg.seed)
    with tempfile.TemporaryDirectory(prefix="saec-latency-") as tmp:
        ids_file = Path(tmp) / "ids.npz"
        arrays = {f"{b}/{name}": ids for b in cfg.batches
                  for name, ids in draw(rng, cfg.calls + cfg.warmup, b).items()}
        np.savez(ids_file, **arrays)
        runtimes = RUNTIMES
        if raw is not None:  # saec serve's own path, raw records in: vocabulary lookups included
            for b in cfg.batches:
                drawn = {name: arrays[f"{b}/{name}"] for name in vocabs}
                for name, values in raw(drawn).items():
                    arrays[f"{b}/{name}"] = values
            np.savez(Path(tmp) / "raw.npz", **arrays)
            runtimes = (*RUNTIMES, "predictor")
        del arrays
        for method, model in models:
            t = time.perf_counter()
            table_bytes = int(sum(model.embeddings.table_bytes().values()))
            folder = save_model(Path(tmp) / method, model, vocabs, onnx=to_onnx(model))
            del model
            files = {p.name: p.stat().st_size for p in folder.iterdir()}
            entry = {"method": method, "table_bytes": table_bytes, "files": files, "build_s": time.perf_counter() - t,
                     "runs": []}
            for runtime in runtimes:
                feed = Path(tmp) / "raw.npz" if runtime == "predictor" else ids_file
                out = subprocess.run([sys.executable, "-m", "saec.bench.latency", runtime, str(folder), str(feed),
                                      str(cfg.calls), str(cfg.warmup), str(cfg.threads)],
                                     capture_output=True, text=True, check=True,
                                     env={**os.environ, "OMP_NUM_THREADS": str(cfg.threads)})
                entry["runs"].append(last_json_line(out.stdout))
                if progress:
                    r = entry["runs"][-1]
                    print(f"{method:>10} {runtime:>12}: +{r['rss_loaded_mib'] - r['rss_imported_mib']:.0f} MiB, "
                          + ", ".join(f"b{b} p50 {np.percentile(t, 50):.0f} us" for b, t in r["times_us"].items()),
                          flush=True)
            record["models"].append(entry)
            shutil.rmtree(folder)
    record["wall_s"] = time.perf_counter() - start
    record["load_after"] = os.getloadavg()[0]
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

    from saec.bench.report import checksums, header, markdown_table, save_figure
    from saec.io import write_text

    cfg = record["config"]
    order = ["saec", "python", "torch", "numpy", "faiss", "machine", "date"]
    recorded = {k: v for k, v in record["environment"].items() if k != "torch threads"}  # workers: cfg threads
    env = {**{k: recorded[k] for k in order if k in recorded}, **{k: v for k, v in recorded.items() if k not in order},
           "threads per measured process": str(cfg["threads"]), "peak RSS (parent)": f"{record['peak_rss_mib']:,.0f} MiB",
           "wall time": f"{record['wall_s'] / 60:.1f} min",
           "load average (1 min) before / after": f"{record['load_before']:.2f} / {record['load_after']:.2f}"}
    text = header(f"Inference latency and memory, PyTorch and ONNX Runtime ({cfg['dataset']}; MEmCom Table 3 "
                  f"analogue)", record["command"], env, checksums(record))
    batches = [str(b) for b in cfg["batches"]]
    full = next((m for m in record["models"] if m["method"] == "full"), None)
    text += "\n" + _workload_text(record) + (
        f" Each is written as an artifact with its ONNX graph (`saec export --onnx`) and measured in a fresh process per "
        f"runtime, {cfg['threads']} thread: **memory** is the process's RSS after loading the artifact (every "
        f"checksum verified) minus its RSS after importing the runtime and saec's loader (so it holds the model and "
        f"whatever the runtime allocates for it, e.g. ONNX Runtime's session and arena), split into anonymous "
        f"memory and the file-backed pages of memory-mapped files (the model's, and the runtime's own libraries as "
        f"it first runs them: the kernel drops such pages and reads them again as it needs, so a mapped table costs "
        f"disk reads, not memory, when memory is short); `file after calls` is the "
        f"file-backed part once every timed call is done; **latency** is {cfg['calls']} timed calls "
        f"per batch size after {cfg['warmup']} untimed ones, on already encoded ids (no vocabulary lookup) in "
        f"PyTorch under `torch.inference_mode()` with "
        f"the model's own lookups, ONNX Runtime on the exported graph (the ONNX process imports no torch)"
        + ("; `predictor` is what `saec serve` runs for a request, without HTTP: `Predictor.predict` on raw records "
           "(one dict of raw ids per record, made outside the timed call), each value checked and looked up in its "
           "field's vocabulary, then the PyTorch model" if any(r["runtime"] == "predictor" for m in record["models"]
                                                             for r in m["runs"]) else "")
        + ". The artifact was just written, so its files start in the page cache.\n\n")
    rows = [["method", "tables", "ONNX files", "runtime", "memory (MiB)", "anon / file (MiB)",
             "file after calls (MiB)", "process RSS (MiB)", *[f"batch {b}: p50 / p99 (µs)" for b in batches],
             "load (s)"]]
    for m in record["models"]:
        onnx_bytes = sum(v for k, v in m["files"].items() if k.startswith("model.onnx"))
        for r in m["runs"]:
            mem = r.get("memory_mib")
            split = (f"{mem['loaded']['anon'] - mem['imported']['anon']:.1f} / "
                     f"{mem['loaded']['file'] - mem['imported']['file']:.1f}") if mem else "-"
            after = f"{mem['end']['file'] - mem['imported']['file']:.1f}" if mem else "-"
            rows.append([LABELS.get(m["method"], m["method"]), _mib(m["table_bytes"]), _mib(onnx_bytes),
                         r["runtime"], f"{r['rss_loaded_mib'] - r['rss_imported_mib']:.1f}", split, after,
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


def _workload_text(record: dict[str, Any]) -> str:
    cfg = record["config"]
    saec = (f"Saec (k={cfg['k']}, eligibility {cfg['eligibility']:g}: fields of at least "
            f"{cfg['eligibility'] * cfg['k']:,.0f} rows clustered), Saec + int8 and int8 (from it, `saec.compress`)")
    others = (f"MEmCom and Weinberger hashing (their large tables {cfg['ratio']:g}x smaller than full ones in bytes: "
              f"MEmCom keeps a float per feature, so it cannot reach Saec's byte per feature)")
    if cfg["dataset"] != "paper":
        return (f"The DSSM (MLP {tuple(cfg['hidden'])}) on {cfg['dataset']}'s fields and vocabularies: uncompressed "
                f"(trained one epoch), {saec}, {others}, trained compressed one epoch. Calls take records drawn from "
                f"the test split.")
    w = record["workload"]
    full = next((m for m in record["models"] if m["method"] == "full"), None)
    size = f", {full['table_bytes'] / 2**30:.2f} GiB of float32 tables" if full else ""
    return (f"The DSSM (MLP {tuple(cfg['hidden'])}) on the synthetic trace's last hour at the Saec paper's scale "
            f"(`saec.data.synthetic`, preset `paper`: {w['fields']} fields, {w['features']:,} features{size}; Saec "
            f"Table 1 has 1.24e8): the uncompressed tables hold the trace's trained-looking vectors and the MLP is as "
            f"initialised (nothing is trained: latency and memory do not depend on the values), {saec}, {others}, "
            f"as built. Every vocabulary (raw id -> row) is in the artifact, memory-mapped (the large ones with their "
            f"values sorted, `saec.data.vocab.SORTED_LOOKUP`); only the predictor rows look them up. "
            f"Calls draw each field's ids in proportion to the features' counts at that hour (heavy-tailed: most "
            f"lookups hit the frequent rows). Tensor files of at least 256 MiB load memory-mapped in PyTorch "
            f"(`saec.io.MMAP_BYTES`), and ONNX graphs with at least 64 MiB of tensors keep them in external data "
            f"(`saec.export.EXTERNAL_BYTES`), which ONNX Runtime maps.")


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
    def added(r: dict[str, Any]) -> str:
        total = f"{r['rss_loaded_mib'] - r['rss_imported_mib']:.1f}"
        mem = r.get("memory_mib")
        if not mem:
            return total
        return (f"{total} ({mem['loaded']['anon'] - mem['imported']['anon']:.1f} anonymous, "
                f"{mem['loaded']['file'] - mem['imported']['file']:.1f} file-backed)")

    if full is not None:
        for runtime in RUNTIMES:
            parts = [f"{LABELS.get(m['method'], m['method'])} {added(run_of(m, runtime))}"
                     for m in record["models"] if m is not full]
            lines.append(f"- Memory in {runtime} (MiB): the uncompressed model adds {added(run_of(full, runtime))}; "
                         + ", ".join(parts) + ".")
    served = [(m, next((r for r in m["runs"] if r["runtime"] == "predictor"), None)) for m in record["models"]]
    served = [(m, r) for m, r in served if r is not None]
    if served:
        anon = [r["memory_mib"]["loaded"]["anon"] - r["memory_mib"]["imported"]["anon"] for _, r in served]
        parts, ratio = [], []
        for b in batches:
            ratio = [np.percentile(r["times_us"][b], 50) / p50(m, "torch", b) for m, r in served]
            parts.append(f"batch {b} {min(ratio):.1f}x to {max(ratio):.1f}x PyTorch's median on encoded ids")
        more = "more" if min(ratio) > 2 else "less" if max(ratio) < 2 else "about as much"
        lines.append(f"- `saec serve`'s path (predictor, raw records): every vocabulary looked up, loading adds "
                     f"{min(anon):.0f}-{max(anon):.0f} MiB of anonymous memory (the rest is the mapped files); a call "
                     f"takes " + ", ".join(parts) + f": at batch {batches[-1]}, checking and looking up the raw values "
                     f"costs {more} than the model.")
    onnx_rss = [run_of(m, "onnxruntime")["rss_loaded_mib"] for m in record["models"]]
    torch_rss = [run_of(m, "torch")["rss_loaded_mib"] for m in record["models"]]
    def imported(r: dict[str, Any]) -> float:  # the runtime and saec's loader, the ids already read
        return r["rss_imported_mib"] - r.get("rss_fed_mib", r["rss_start_mib"])

    parts = []
    for rt in RUNTIMES:
        cost = min(imported(run_of(m, rt)) for m in record["models"])
        largest = max(run_of(m, rt)["rss_loaded_mib"] - run_of(m, rt)["rss_imported_mib"] for m in record["models"])
        parts.append(f"importing {rt} (and saec's loader) takes {cost:.0f} MiB and the largest model adds "
                     f"{largest:.0f} MiB ({'less' if largest < cost else 'more'} than the runtime)")
    lines.append(f"- Whole process: {min(onnx_rss):.0f}-{max(onnx_rss):.0f} MiB with ONNX Runtime (no torch "
                 f"imported: {not any(run_of(m, 'onnxruntime')['torch_imported'] for m in record['models'])}), "
                 f"{min(torch_rss):.0f}-{max(torch_rss):.0f} MiB with PyTorch; " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the per-(method, runtime) process of run()
    runtime, folder, ids_file, calls, warmup, threads = sys.argv[1:7]
    print(json.dumps(worker(runtime, folder, ids_file, int(calls), int(warmup), int(threads))))
