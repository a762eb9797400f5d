"""Saec compression at production scale: wall time, peak memory and where the time goes, 1e6 -> 1.24e8 vectors.

For every size of a ladder (default 1e6, 1e7, 3e7 and 1.24e8 vectors, the last one Saec Table 1's day-10
matrix) it

1. writes a parameter-server-style dump of the synthetic trace's last hour (``saec.data.synthetic``, preset
   ``paper`` with ``final_features`` = the size: 256 fields, heavy-tailed field sizes, 89/11 mix of vector
   lengths 9/17, Zipf counts): one ``NAME.npy`` float32 table and one ``NAME.counts.npy`` per field, into
   ``${SAEC_CACHE:-~/.cache/saec}/bench/dumps/<size>`` (outside git; reused when complete; written to a
   temporary folder and renamed into place). Rows are in parameter-server order: each field's counts are
   permuted by a seeded permutation, so the frequent features are scattered over the table as hashing
   scatters them (the synthetic vectors do not depend on frequency, so this is the same as permuting rows);
2. compresses it end to end in a fresh subprocess (load the dump, ``compress_tables``, ``save_compressed``:
   exactly what ``saec compress --tables`` does) for k=100 and each ``--top-n`` (100 x k = 10,000, the paper's
   "100k"; and 100,000, the literal reading), measuring the subprocess's wall time, its peak RSS (wait4
   rusage, plus /proc polling that splits anonymous memory from memory-mapped file pages) and the split into
   start-up, load, clustering, assignment and save (clustering and assignment from the per-field timings
   ``save_compressed`` writes to manifest.json);
3. at the largest size, also times the real ``saec compress`` command once (``--no-cli`` skips it) and one
   cold-page-cache run (``--no-cold`` skips it; the dump's own pages are evicted with posix_fadvise(DONTNEED),
   nothing else's);
4. writes docs/results/compress_scale.md and a log-log plot docs/results/compress_scale.png; the raw
   measurements go to ``${SAEC_CACHE:-~/.cache/saec}/bench/compress_scale.json`` (``--render`` rewrites the
   report from it without running anything).

Run from the repository root; on a machine shared with other benchmarks, under their common lock:

    flock /tmp/saec-bench.lock python benchmarks/compress_scale.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SIZES = (1_000_000, 10_000_000, 30_000_000, 124_000_000)
GEN_CHUNK = 1 << 22  # rows generated and written at a time
TARGET_S = 60.0
TARGET_MEM = 1.5  # peak RSS / float32 table bytes
PAPER_S = 111.54  # Saec Table 2, fast clustering, k=100, 80 vCPUs, day-1 (24-epoch) matrix of 4.78e7 vectors
PAPER_DAY1 = 4.78e7


# -- dumps ----------------------------------------------------------------------------------------
def cache_root() -> Path:
    return Path(os.environ.get("SAEC_CACHE") or Path.home() / ".cache" / "saec")


def dump_info(folder: Path) -> dict[str, Any] | None:
    """The description of a complete dump (``dump.json``, written last), or ``None``."""
    try:
        return json.loads((folder / "dump.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def make_dump(folder: Path, size: int, seed: int = 0) -> dict[str, Any]:
    """Write (or reuse) the dump of ``size`` vectors; returns its description incl. generation seconds."""
    from saec.data.synthetic import SyntheticTrace, TraceConfig

    info = dump_info(folder)
    if info is not None and info.get("size") == size and info.get("seed") == seed:
        info["reused"] = True
        return info
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        t0 = time.perf_counter()
        trace = SyntheticTrace(TraceConfig.preset("paper", final_features=size, seed=seed))
        hour = trace.config.hours - 1  # the last hour: Saec Table 1's "last hour of each day"
        fields = []
        for f, name in enumerate(trace.names):
            n, dim = int(trace.universe(hour)[f]), int(trace.dims[f])
            table = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n, dim))
            for a in range(0, n, GEN_CHUNK):
                b = min(a + GEN_CHUNK, n)
                trace.field_vectors(f, a, b, out=table[a:b])
            table.flush()
            del table
            counts = trace.field_counts(hour, f)
            perm = np.random.default_rng(np.random.SeedSequence([seed, 77, f])).permutation(n)
            np.save(tmp / f"{name}.counts.npy", counts[perm])
            del counts, perm
            fields.append({"name": name, "features": n, "dim": dim})
        gen_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        os.sync()  # the dump is on disk before anything is timed: no writeback during the compression
        sync_s = time.perf_counter() - t1
        info = {"size": size, "seed": seed, "hour": hour, "preset": "paper", "layout": "counts permuted per field",
                "fields": fields, "vectors": sum(x["features"] for x in fields),
                "table_bytes": sum(4 * x["features"] * x["dim"] for x in fields),
                "counts_bytes": 8 * sum(x["features"] for x in fields),
                "generate_s": gen_s, "sync_s": sync_s}
        (tmp / "dump.json").write_text(json.dumps(info, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info["reused"] = False
    return info


def evict(folder: Path) -> None:
    """Drop the page-cache pages of the dump's files (only those: nothing else on the machine is touched)."""
    for path in folder.glob("*.npy"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_share(folder: Path) -> float | None:
    """Share of the dump's file pages in the page cache (mincore on a read-only map), or None if unknown."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        page = os.sysconf("SC_PAGE_SIZE")
        total = resident = 0
        for path in folder.glob("*.npy"):
            n = path.stat().st_size
            if n == 0:
                continue
            m = np.memmap(path, dtype=np.uint8, mode="r")
            vec = np.zeros(-(-n // page), dtype=np.uint8)
            if libc.mincore(m.ctypes.data, n, vec.ctypes.data) != 0:
                return None
            resident += int((vec & 1).sum())
            total += len(vec)
            del m
        return resident / total if total else None
    except Exception:
        return None


# -- the measured subprocess ----------------------------------------------------------------------
def child_main(spec: dict[str, Any]) -> None:
    """Runs in a fresh interpreter: what ``saec compress --tables`` does, each phase timed.

    The library is not changed; its module-level helpers are wrapped (one clock read per call) so that
    clustering splits into top-n selection vs k-means and assignment into faiss search vs the rest
    (reading the memory-mapped rows, the finite check, storing the mask).
    """
    t0 = time.perf_counter()
    import importlib

    km = importlib.import_module("saec.cluster.kmeans")  # the modules: saec.cluster re-exports functions
    sc = importlib.import_module("saec.cluster.saec")  # of the same names
    from saec.dump import load_dump, save_compressed

    t1 = time.perf_counter()
    acc = {"top_indices_s": 0.0, "kmeans_s": 0.0, "search_s": 0.0}
    inside = {"kmeans": False}

    def timed(fn, key):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            inside["kmeans"] = key == "kmeans_s" or inside["kmeans"]
            try:
                return fn(*a, **kw)
            finally:
                if key == "kmeans_s":
                    inside["kmeans"] = False
                acc[key] += time.perf_counter() - start
        return wrapper

    class TimedIndex:
        def __init__(self, index):
            self.index = index

        def search(self, x, k):
            start = time.perf_counter()
            try:
                return self.index.search(x, k)
            finally:
                if not inside["kmeans"]:
                    acc["search_s"] += time.perf_counter() - start

    real_index = km._index
    km._index = lambda c: TimedIndex(real_index(c))
    sc.top_indices = timed(sc.top_indices, "top_indices_s")
    sc.kmeans = timed(sc.kmeans, "kmeans_s")

    cfg = sc.SaecConfig(k=spec["k"], top_n=spec["top_n"])
    tables, counts = load_dump(spec["tables"])
    t2 = time.perf_counter()
    fields = sc.compress_tables(tables, counts, cfg)
    t3 = time.perf_counter()
    save_compressed(spec["out"], fields, tables, cfg, overwrite=True)
    t4 = time.perf_counter()
    print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "compress_s": t3 - t2, "save_s": t4 - t3, **acc}))


def fig4c_main() -> None:
    """Saec Fig. 4(c)'s reference point with this library: vanilla k-means, 50,000 vectors, k=500, 1 thread."""
    import faiss

    from saec.cluster.kmeans import kmeans

    faiss.omp_set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((50_000, 9), dtype=np.float32)
    r = kmeans(x, 500, "kmeans++", 25, 0)
    print(json.dumps({"kmeans_s": r.seconds}))


class RssPoller(threading.Thread):
    """Peaks of VmRSS, RssAnon and RssFile of a process, read from /proc every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self.done = threading.Event()

    def run(self) -> None:
        path = f"/proc/{self.pid}/status"
        while not self.done.is_set():
            # the process may exit between polls: a vanished or half-written status file is skipped
            with contextlib.suppress(OSError, ValueError, IndexError), open(path) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in self.peak:
                        self.peak[key] = max(self.peak[key], int(value.split()[0]) * 1024)
            self.done.wait(self.interval)


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; its wall time, peak RSS (wait4 rusage), /proc RSS peaks, CPU seconds, the CPU seconds
    everything else on the machine used meanwhile, and its stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        busy0 = busy_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        poller = RssPoller(proc.pid)
        poller.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy = busy_cpu_s() - busy0
        poller.done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{stderr[-3000:]}")
    return {"wall_s": wall, "maxrss_bytes": ru.ru_maxrss * 1024, "cpu_s": ru.ru_utime + ru.ru_stime,
            "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
            "others_cpu_s": max(0.0, busy - (ru.ru_utime + ru.ru_stime)), "majflt": ru.ru_majflt,
            "proc_peak": poller.peak,
            "stdout": stdout}


def manifest_split(out: Path) -> dict[str, Any]:
    m = json.loads((out / "manifest.json").read_text())
    fields = m["fields"].values()
    clustered = [f for f in fields if f["k"] is not None]
    return {"cluster_s": sum(f["cluster_s"] for f in clustered), "assign_s": sum(f["assign_s"] for f in clustered),
            "clustered_fields": len(clustered), "fields": len(m["fields"]),
            "clustered_vectors": sum(f["features"] for f in clustered),
            "trained_on": sum(f["trained_on"] for f in clustered),
            "bytes_before": m["total"]["bytes_before"], "bytes_after": m["total"]["bytes_after"], "ratio": m["ratio"],
            "vectors_after": m["total"]["vectors_after"],
            "slowest": sorted(((f["cluster_s"] + f["assign_s"], name, f["features"], f["cluster_s"], f["assign_s"])
                               for name, f in m["fields"].items() if f["k"] is not None), reverse=True)[:3]}


def compress_run(dump: Path, out: Path, k: int, top_n: int, how: str = "driver") -> dict[str, Any]:
    """One end-to-end compression in a fresh process; ``how`` is ``driver`` (phases timed) or ``cli``."""
    if how == "driver":
        spec = {"tables": str(dump), "out": str(out), "k": k, "top_n": top_n}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    else:
        cmd = [sys.executable, "-m", "saec.cli", "compress", "--tables", str(dump), "--out", str(out), "--k", str(k),
               "--top-n", str(top_n), "--quiet", "--overwrite"]
    res = run_measured(cmd)
    res.update(manifest_split(out))
    if how == "driver":
        res.update(json.loads(res["stdout"].strip().splitlines()[-1]))
    res["out_bytes"] = sum(p.stat().st_size for p in out.iterdir())
    res["how"] = how
    res.pop("stdout")
    return res


# -- report ---------------------------------------------------------------------------------------
def gib(b: float) -> str:
    return f"{b / 2**30:.2f}"


def sci(x: float) -> str:
    """1.24e8-style label of a vector count."""
    m, e = f"{x:.2e}".split("e")
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def plot(runs: list[dict[str, Any]], path: Path, top_ns: list[int]) -> None:
    from saec.bench.report import save_figure

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, top_n in enumerate(top_ns):
        rs = sorted((r for r in runs if r["top_n"] == top_n and r["how"] == "driver" and not r["cold"]),
                    key=lambda r: r["vectors"])
        if not rs:
            continue
        x = [r["vectors"] for r in rs]
        ls = ["-", "--", ":", "-."][i % 4]
        ax.plot(x, [r["wall_s"] for r in rs], "o" + ls, color="C0", label=f"wall (whole process), top_n={top_n:,}")
        ax.plot(x, [r["cluster_s"] for r in rs], "s" + ls, color="C1", label=f"clustering, top_n={top_n:,}")
        ax.plot(x, [r["assign_s"] for r in rs], "^" + ls, color="C2", label=f"assignment, top_n={top_n:,}")
    for r in runs:
        if r["cold"]:
            ax.plot([r["vectors"]], [r["wall_s"]], "x", color="C3", ms=9, mew=2,
                    label=f"wall, cold page cache, top_n={r['top_n']:,}")
    ax.axhline(TARGET_S, color="red", lw=1.2, label=f"target: {TARGET_S:.0f} s")
    warm = sorted((r for r in runs if r["how"] == "driver" and not r["cold"] and r["top_n"] == top_ns[0]),
                  key=lambda r: r["vectors"])
    if warm:  # slope-1 reference through the largest point's assignment time: linear growth
        ref = warm[-1]
        xs = np.array([warm[0]["vectors"], ref["vectors"]], dtype=float)
        ax.plot(xs, ref["assign_s"] * xs / ref["vectors"], color="grey", lw=0.8, ls=":",
                label="linear growth (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(top=TARGET_S * 2)
    ax.set_xlabel("vectors in the table set (256 fields, float32, lengths 9 / 17)")
    ax.set_ylabel("seconds on 2 cores")
    ax.set_title("Saec compression end to end, k=100 (best of repeats, warm page cache)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                    help="comma-separated total vector counts (default: 1e6,1e7,3e7,1.24e8)")
    ap.add_argument("--k", type=int, default=100, help="clusters per field (100)")
    ap.add_argument("--top-n", default="10000,100000",
                    help="comma-separated top_n values, each run at every size (default: 10000,100000 = "
                         "100 x k and the literal 100k)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="dump cache (default: ${SAEC_CACHE:-~/.cache/saec}/bench/dumps)")
    ap.add_argument("--out", type=Path, default=Path("docs/results/compress_scale.md"),
                    help="markdown report; the plot goes beside it as .png")
    ap.add_argument("--repeats", type=int, default=3, help="runs per (size, top_n); the fastest is reported (3)")
    ap.add_argument("--no-cli", action="store_true", help="skip timing `saec compress` itself at the largest size")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-page-cache run at the largest size")
    ap.add_argument("--json", type=Path, help="raw measurements (default: beside the dump cache, "
                                              "${SAEC_CACHE:-~/.cache/saec}/bench/compress_scale.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--fig4c", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the report (and plot) from the --json file of an earlier run")
    args = ap.parse_args(argv)
    cache = args.cache or cache_root() / "bench" / "dumps"
    json_path = args.json or cache.parent / "compress_scale.json"
    if args.render:
        data = json.loads(json_path.read_text())
        saved = argparse.Namespace(**{**vars(args), **data["args"], "out": args.out})
        dumps = {int(k): v for k, v in data["dumps"].items()}
        return report(saved, data["argv"], data["top_ns"], dumps, data["runs"], data["extra"])
    if args.child:
        return child_main(json.loads(args.child))
    if args.fig4c:
        return fig4c_main()

    sizes = sorted({int(float(s)) for s in args.sizes.split(",") if s})
    top_ns = [int(float(s)) for s in args.top_n.split(",") if s]
    if not sizes or not top_ns:
        ap.error("--sizes and --top-n need at least one value each")
    work = cache.parent / "compressed"
    runs: list[dict[str, Any]] = []
    dumps: dict[int, dict[str, Any]] = {}
    for size in sizes:
        folder = cache / str(size)
        info = make_dump(folder, size)
        dumps[size] = info
        print(f"dump {size:,}: {info['vectors']:,} vectors, {gib(info['table_bytes'])} GiB float32, "
              + ("reused" if info["reused"] else f"generated in {info['generate_s']:.1f} s"), flush=True)
        plan = [(t, "driver", False, args.repeats) for t in top_ns]
        if size == sizes[-1]:
            if not args.no_cli:
                plan.append((top_ns[0], "cli", False, 1))
            if not args.no_cold:
                plan.append((top_ns[0], "driver", True, 1))
        for top_n, how, cold, repeats in plan:
            tries = []
            for _ in range(max(1, repeats)):
                if cold:
                    evict(folder)
                share = cached_share(folder)
                r = compress_run(folder, work / f"{size}-k{args.k}-top{top_n}", args.k, top_n, how)
                r.update(size=size, vectors=info["vectors"], table_bytes=info["table_bytes"],
                         counts_bytes=info["counts_bytes"], k=args.k, top_n=top_n, cold=cold, cached_before=share)
                print(f"  top_n={top_n:,} {how}{' cold' if cold else ''}: wall {r['wall_s']:.1f} s, "
                      f"peak RSS {gib(r['maxrss_bytes'])} GiB ({r['maxrss_bytes'] / info['table_bytes']:.2f}x), "
                      f"clustering {r['cluster_s']:.1f} s, assignment {r['assign_s']:.1f} s, CPU {r['cpu_s']:.1f} s, "
                      f"dump in page cache before: {'?' if share is None else f'{share:.0%}'}", flush=True)
                tries.append(r)
            best = min(tries, key=lambda r: r["wall_s"])
            best["walls"] = [r["wall_s"] for r in tries]
            best["tries"] = [{k: r[k] for k in ("wall_s", "cpu_s", "others_cpu_s", "cached_before")} for r in tries]
            runs.append(best)
    shutil.rmtree(work, ignore_errors=True)
    base = run_measured([sys.executable, "-c", "import saec.dump, saec.cluster.saec; import time; "
                                               "time.sleep(0.3)"])  # let the poller see the settled RSS
    one = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    fig4c = run_measured([sys.executable, str(Path(__file__).resolve()), "--fig4c"], env=one)
    extra = {"base_rss_bytes": base["maxrss_bytes"], "base_anon_bytes": base["proc_peak"]["RssAnon"],
             "base_wall_s": base["wall_s"] - 0.3, "fig4c_cpu_s": fig4c["cpu_s"],
             "fig4c_s": json.loads(fig4c["stdout"].strip().splitlines()[-1])["kmeans_s"]}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"k": args.k, "repeats": args.repeats}
    json_path.write_text(json.dumps({"argv": sys.argv[1:] if argv is None else argv, "args": saved,
                                    "top_ns": top_ns, "dumps": dumps, "runs": runs, "extra": extra},
                                   indent=1, default=str) + "\n")
    report(args, sys.argv[1:] if argv is None else argv, top_ns, dumps, runs, extra)


def variability(runs: list[dict[str, Any]]) -> str:
    """What the repeats say about noise: spread, other jobs' CPU, whether slow repeats burned more CPU."""
    tries = [t for r in runs for t in r.get("tries", [])]
    spread = max(max(r["walls"]) / min(r["walls"]) for r in runs) - 1
    others = max((t["others_cpu_s"] for t in tries), default=0.0)
    text = (f"Every run held `/tmp/saec-bench.lock` (other benchmarks on this machine take it too); the rest of "
            f"the machine used at most {others:.1f} CPU s during any run (column `others' CPU s`). Repeats varied "
            f"by up to {spread:.0%} of the fastest")
    groups = [r["tries"] for r in runs if len(r.get("tries", [])) > 1]
    if groups:
        corr = np.corrcoef([t["wall_s"] / min(x["wall_s"] for x in g) for g in groups for t in g],
                           [t["cpu_s"] / min(x["cpu_s"] for x in g) for g in groups for t in g])[0, 1]
        text += (f"; slow repeats used more CPU time for the same work (correlation of wall and CPU time, each "
                 f"relative to its configuration's fastest repeat: {corr:.2f})")
        if corr > 0.7:
            text += ", which points at the virtual machine's host (shared physical cores) more than at this machine"
        evicted = [t for g in groups for t in g if t["cached_before"] is not None and t["cached_before"] < 0.95]
        if evicted:
            text += (f"; {len(evicted)} repeat(s) started with part of the dump evicted from the page cache by other "
                     f"jobs' memory (column `cached` shows the fastest repeat's)")
    return text + "."


def body(args: argparse.Namespace, top_ns: list[int], dumps: dict[int, dict[str, Any]], runs: list[dict[str, Any]],
         extra: dict[str, Any]) -> str:
    """Everything of the markdown below the header."""
    from saec.bench.report import markdown_table

    warm = [r for r in runs if r["how"] == "driver" and not r["cold"]]
    largest = max(dumps)
    top = {r["top_n"]: r for r in warm if r["size"] == largest}
    main_r = top[top_ns[0]]
    out = ["", f"Saec compression (k={args.k}, k-means++ init, 25 Lloyd iterations, eligibility 100 x k = "
               f"{100 * args.k:,} features) of parameter-server-style dumps of the synthetic trace "
               f"(`saec.data.synthetic`, preset `paper` with `final_features` = the size, its last hour: 256 fields "
               f"with heavy-tailed sizes, 89% of the vectors of length 9 and 11% of length 17, Zipf counts). "
               f"Each run is a fresh process that loads the memory-mapped dump (`load_dump`), compresses it "
               f"(`compress_tables`) and writes the result (`save_compressed`): what `saec compress --tables` does. "
               f"Wall time and peak RSS are the whole process's (interpreter start-up and imports included); "
               f"each configuration ran {args.repeats} time{'s' if args.repeats > 1 else ''} and the fastest run "
               f"is shown (all walls in the raw "
               f"column). " + variability(runs), ""]

    # headline
    out += ["## Result", ""]
    for t in top_ns:
        r = top.get(t)
        if r is None:
            continue
        mult = r["maxrss_bytes"] / r["table_bytes"]
        out.append(f"- **{sci(r['vectors'])} vectors ({gib(r['table_bytes'])} GiB of float32 tables), top_n = {t:,}"
                   f"{' (100 x k, the default)' if t == 100 * args.k else ''}: {r['wall_s']:.1f} s wall** "
                   f"(target {TARGET_S:.0f} s: {'met' if r['wall_s'] < TARGET_S else 'MISSED'}), "
                   f"**peak RSS {gib(r['maxrss_bytes'])} GiB = {mult:.2f}x the float32 tables** (target "
                   f"{TARGET_MEM}x: {'met' if mult < TARGET_MEM else 'MISSED'}); clustering {r['cluster_s']:.1f} s, "
                   f"assignment {r['assign_s']:.1f} s, "
                   f"everything else {r['wall_s'] - r['cluster_s'] - r['assign_s']:.1f} s; "
                   f"{r['cpu_s']:.1f} CPU s ({r['cpu_s'] / r['wall_s']:.2f} cores busy on average); "
                   f"{r['clustered_fields']} of {r['fields']} fields clustered, {r['bytes_after'] / 2**20:.0f} MiB "
                   f"after, {r['ratio']:.1f}x smaller.")
    cli = [r for r in runs if r["how"] == "cli"]
    for r in cli:
        out.append(f"- The `saec compress` command itself on the same dump (top_n = {r['top_n']:,}, one run): "
                   f"{r['wall_s']:.1f} s wall, peak RSS {gib(r['maxrss_bytes'])} GiB "
                   f"({r['maxrss_bytes'] / r['table_bytes']:.2f}x).")
    cold = [r for r in runs if r["cold"]]
    for r in cold:
        out.append(f"- Cold page cache (the dump's pages evicted first with posix_fadvise DONTNEED; one run, "
                   f"top_n = {r['top_n']:,}): {r['wall_s']:.1f} s wall, peak RSS {gib(r['maxrss_bytes'])} GiB, "
                   f"{r['majflt']:,} major page faults.")
    out.append("")
    out += ["![wall, clustering and assignment time vs vectors](compress_scale.png)", ""]

    # main table
    out += ["## Every run", "",
            "`RSS / tables` = peak RSS over the float32 table bytes; `anon` and `file` are the peaks of the "
            "process's anonymous memory and of its resident memory-mapped dump pages (polled from /proc every "
            "50 ms); `other` = wall - clustering - assignment (start-up, imports, loading, passing small fields "
            "through, saving); `cached` = share of the dump in the page cache just before the run; `others' CPU s` = "
            "CPU seconds the rest of the machine used during the run, from /proc/stat.", ""]
    rows = [["vectors", "top_n", "run", "float32 GiB", "wall s (all runs)", "peak RSS GiB", "RSS / tables",
             "anon / file GiB", "clustering s", "assignment s", "other s", "CPU s", "compressed MiB", "ratio",
             "clustered fields (trained on)", "cached", "others' CPU s"]]
    for r in sorted(runs, key=lambda r: (r["vectors"], r["top_n"], r["how"], r["cold"])):
        walls = ", ".join(f"{w:.1f}" for w in sorted(r["walls"]))
        rows.append([sci(r["vectors"]), f"{r['top_n']:,}", r["how"] + (" cold" if r["cold"] else ""),
                     gib(r["table_bytes"]), f"**{r['wall_s']:.1f}** ({walls})", gib(r["maxrss_bytes"]),
                     f"{r['maxrss_bytes'] / r['table_bytes']:.2f}x",
                     f"{gib(r['proc_peak']['RssAnon'])} / {gib(r['proc_peak']['RssFile'])}",
                     f"{r['cluster_s']:.2f}", f"{r['assign_s']:.2f}",
                     f"{r['wall_s'] - r['cluster_s'] - r['assign_s']:.2f}",
                     f"{r['cpu_s']:.1f}", f"{r['bytes_after'] / 2**20:.1f}", f"{r['ratio']:.1f}x",
                     f"{r['clustered_fields']} ({r['trained_on']:,})",
                     "?" if r["cached_before"] is None else f"{r['cached_before']:.0%}",
                     f"{r['others_cpu_s']:.1f}"])
    out += [markdown_table(rows)]
    out.append("`driver` is this script's child process (phases timed); `cli` is `python -m saec.cli compress "
               "--tables DUMP --out OUT --k K --top-n N --quiet --overwrite`. The rows are best-of-repeats, and "
               "the clustering/assignment columns are those of the fastest run.\n")

    # phases
    out += ["## Where the time goes", "",
            "From the driver runs: `start-up` = process wall - everything below (interpreter start); `import` = "
            "`saec` with numpy, faiss and torch; `top-n` = `top_indices` (argpartition of every clustered field's "
            "counts); `k-means` = faiss training + its objective; `gather` = the rest of clustering (reading the "
            "top-n rows from the memory-mapped table, the finite check); `search` = faiss nearest-centroid search "
            "in assignment; `read` = the rest of assignment (page faults on the memory-mapped rows, the per-row "
            "finite check, the mask store).", ""]
    rows = [["vectors", "top_n", "start-up", "import", "load", "top-n", "k-means", "gather", "search", "read",
             "save", "wall"]]
    for r in sorted(warm, key=lambda r: (r["vectors"], r["top_n"])):
        inner = r["import_s"] + r["load_s"] + r["compress_s"] + r["save_s"]
        gather = r["cluster_s"] - r["top_indices_s"] - r["kmeans_s"]
        rows.append([sci(r["vectors"]), f"{r['top_n']:,}", f"{r['wall_s'] - inner:.2f}", f"{r['import_s']:.2f}",
                     f"{r['load_s']:.2f}", f"{r['top_indices_s']:.2f}", f"{r['kmeans_s']:.2f}", f"{gather:.2f}",
                     f"{r['search_s']:.2f}", f"{r['assign_s'] - r['search_s']:.2f}", f"{r['save_s']:.2f}",
                     f"{r['wall_s']:.2f}"])
    out += [markdown_table(rows)]
    slow = main_r["slowest"]
    out.append(f"The slowest fields at {sci(largest)} (top_n = {main_r['top_n']:,}): "
               + "; ".join(f"`{name}` ({n:,} vectors) {c:.2f} s clustering + {a:.2f} s assignment"
                           for _, name, n, c, a in slow) + ".\n")

    # growth
    out += ["## Growth with the table size", ""]
    for t in top_ns:
        rs = sorted((r for r in warm if r["top_n"] == t), key=lambda r: r["vectors"])
        if len(rs) < 2:
            continue
        a, b = rs[0], rs[-1]
        work = lambda r: r["cluster_s"] + r["assign_s"]  # noqa: E731
        ew = np.log(b["wall_s"] / a["wall_s"]) / np.log(b["vectors"] / a["vectors"])
        ec = np.log(work(b) / work(a)) / np.log(b["vectors"] / a["vectors"]) if work(a) > 0 else float("nan")
        steps = ", ".join(f"{sci(r['vectors'])}: {r['wall_s']:.1f} s ({r['vectors'] / r['wall_s'] / 1e6:.1f} M "
                          f"vectors/s end to end, assignment "
                          f"{r['clustered_vectors'] / max(r['assign_s'], 1e-9) / 1e6:.1f} "
                          f"M vectors/s)" for r in rs)
        out.append(f"- top_n = {t:,}: {steps}. From {sci(a['vectors'])} to {sci(b['vectors'])} "
                   f"({b['vectors'] / a['vectors']:.0f}x the vectors) wall grows {b['wall_s'] / a['wall_s']:.1f}x "
                   f"(log-log slope {ew:.2f}) and clustering + assignment {work(b) / max(work(a), 1e-9):.1f}x "
                   f"(slope {ec:.2f}).")
    lin = [r for r in warm if r["top_n"] == top_ns[0] and r["size"] == largest]
    eligible = ", ".join(str(r["clustered_fields"]) for r in sorted((r for r in warm if r["top_n"] == top_ns[0]),
                                                                    key=lambda r: r["vectors"]))
    if lin:
        x = lin[0]
        rate = x["clustered_vectors"] / x["assign_s"]
        out.append(f"- Assignment is linear in the vectors (a near-constant rate, the slope-1 reference in the plot); "
                   f"clustering grows with the number of eligible fields ({eligible}) "
                   f"and with top_n, not with the vectors; start-up is constant. That is why the wall's slope is well "
                   f"under 1. At the {rate / 1e6:.0f} M vectors/s of the largest run, assignment alone would fill "
                   f"{TARGET_S:.0f} s at about {sci(rate * TARGET_S)} vectors on this machine.")
    out.append("")
    out.append(f"A process that only imports saec's compression modules takes {extra['base_wall_s']:.1f} s and "
               f"{extra['base_rss_bytes'] / 2**20:.0f} MiB (interpreter, numpy, faiss, torch): the floor of every "
               f"run, which is why the small sizes are far from linear and their RSS / tables ratio is meaningless.\n")

    # dumps
    out += ["## The dumps", "",
            "Cached in `${SAEC_CACHE:-~/.cache/saec}/bench/dumps/<size>` (outside git). Generation is not part of "
            "any timing above. The smaller points are the same preset with `final_features` lowered, so they keep "
            "the 256 fields and the size distribution's shape (fewer fields reach the 100 x k eligibility), rather "
            "than truncating the big table's fields. Each field's counts are permuted by a seeded permutation, so "
            "frequent rows are scattered through the table as hashing scatters them on a parameter server.", ""]
    rows = [["vectors", "fields (>= 100 x k)", "largest field", "float32 GiB", "counts GiB", "generated in s",
             "this run"]]
    for size, d in sorted(dumps.items()):
        feats = [f["features"] for f in d["fields"]]
        rows.append([sci(d["vectors"]), f"{len(feats)} ({sum(n >= 100 * args.k for n in feats)})",
                     f"{max(feats):,}", gib(d["table_bytes"]), gib(d["counts_bytes"]),
                     f"{d['generate_s']:.1f} (+ sync {d['sync_s']:.1f})", "reused" if d["reused"] else "generated"])
    out += [markdown_table(rows)]

    out += discussion(args, top_ns, dumps, runs, extra, main_r, top)
    return "\n".join(out) + "\n"


def discussion(args: argparse.Namespace, top_ns: list[int], dumps: dict[int, dict[str, Any]],
               runs: list[dict[str, Any]], extra: dict[str, Any], main_r: dict[str, Any],
               top: dict[int, dict[str, Any]]) -> list[str]:
    """The prose: memory, time, top_n, page cache, the paper. Every number comes from the runs."""
    r, d = main_r, dumps[main_r["size"]]
    tb, cb = r["table_bytes"], r["counts_bytes"]
    anon, filed = r["proc_peak"]["RssAnon"], r["proc_peak"]["RssFile"]
    largest_field = max(f["features"] for f in d["fields"])
    work = r["cluster_s"] + r["assign_s"]
    out = ["## Discussion", ""]

    out.append(
        f"**Memory.** At {sci(r['vectors'])} the peak RSS of {gib(r['maxrss_bytes'])} GiB is "
        f"{r['maxrss_bytes'] / tb:.2f}x the {gib(tb)} GiB of float32 tables. Most of it is the dump itself: "
        f"`load_dump` memory-maps every table and every counts file, `compress_tables` reads each one once and the "
        f"maps stay open until the result is saved, so every page read stays counted as resident (peak of mapped "
        f"file pages {gib(filed)} GiB = the tables plus the {gib(cb)} GiB of int64 counts, which alone are "
        f"{cb / tb:.2f}x the tables). Those are clean page-cache pages the kernel can reclaim at any time; the "
        f"memory the compression itself allocates is the anonymous peak, {gib(anon)} GiB: "
        f"{gib(extra['base_anon_bytes'])} GiB of interpreter, numpy, faiss and torch, plus the top-n "
        f"selection's temporaries on the largest field ({largest_field:,} counts: `argpartition(-counts)` makes a "
        f"negated copy and an index array, 8 bytes per feature each, {2 * 8 * largest_field / 2**30:.2f} GiB), "
        f"while masks ({r['vectors'] / 2**30:.2f} GiB at one byte per feature) and 1M-row assignment chunks are "
        f"small. Reading everything from an in-memory table would need at least the same 1.0x + counts; the "
        f"mapping costs nothing extra.")
    out.append("")

    search = r["search_s"]
    bigger = "the larger" if r["assign_s"] >= r["cluster_s"] else "the smaller"
    out.append(
        f"**Time.** At {sci(r['vectors'])} with top_n = {r['top_n']:,}, clustering + assignment take {work:.1f} s of "
        f"the {r['wall_s']:.1f} s wall; the rest ({r['wall_s'] - work:.1f} s) is interpreter start-up, imports, "
        f"opening the maps and saving. Assignment ({r['assign_s']:.1f} s) is {bigger} part: every one of the "
        f"{r['clustered_vectors']:,} vectors of the {r['clustered_fields']} clustered fields is compared with "
        f"{args.k} centroids (faiss `IndexFlatL2`, BLAS, {search:.1f} s), and reading the memory-mapped rows plus "
        f"the per-chunk finite check add {r['assign_s'] - search:.1f} s. In clustering ({r['cluster_s']:.1f} s), "
        f"k-means on {r['trained_on']:,} training vectors in all takes "
        f"{r['kmeans_s']:.1f} s (25 iterations of k-means++-initialised Lloyd's per field, plus the objective), "
        f"selecting the top-n by count {r['top_indices_s']:.1f} s. The largest field alone ({largest_field:,} "
        f"vectors, {largest_field / r['vectors']:.0%} of the set: the trace's field sizes are that heavy-tailed) "
        f"is {r['slowest'][0][0]:.1f} s. The run keeps {r['cpu_s'] / r['wall_s']:.2f} of the 2 cores busy on "
        f"average: faiss uses both, the numpy parts (argpartition, finite checks, page faults) one.")
    out.append("")

    if len(top) > 1:
        a, b = top[top_ns[0]], top[top_ns[-1]]
        out.append(
            f"**top_n.** The paper's \"100k most frequent\" (§2.4) is 100 x k: §3.4 explains the growth of "
            f"clustering "
            f"time with k by the 100k vectors clustered, which only holds if k is the cluster count. With top_n = "
            f"{a['top_n']:,} the {a['clustered_fields']} clustered fields train on {a['trained_on']:,} vectors; the "
            f"literal top_n = {b['top_n']:,} trains on {b['trained_on']:,} (fields under {b['top_n']:,} features "
            f"are clustered whole) and clustering goes from {a['cluster_s']:.1f} s to {b['cluster_s']:.1f} s, "
            f"wall from {a['wall_s']:.1f} s to {b['wall_s']:.1f} s. Which fields are clustered depends only on the "
            f"eligibility (100 x k features), so the compression ratio is the same ({a['ratio']:.1f}x); only the "
            f"codebooks differ. Either reading is far inside the budget.")
        out.append("")

    cold = [c for c in runs if c["cold"]]
    warm_same = [w for w in runs if w["size"] == r["size"] and w["how"] == "driver" and not w["cold"]
                 and cold and w["top_n"] == cold[0]["top_n"]]
    text = ("**Page cache.** The warm rows had the dump in the page cache (it was just written or read by the "
            "previous run; the `cached` column is measured with mincore just before each run).")
    if cold and warm_same:
        c, w = cold[0], warm_same[0]
        text += (f" For the cold row the dump's own pages were evicted first (posix_fadvise DONTNEED on its "
                 f"files only; the system-wide drop_caches would have disturbed other jobs): {c['wall_s']:.1f} s "
                 f"instead of {w['wall_s']:.1f} s (best warm run; the warm runs ranged "
                 f"{min(w['walls']):.1f}-{max(w['walls']):.1f} s), with {c['majflt']:,} major page faults: "
                 + (f"reading the {gib(tb + cb)} GiB of tables and counts from this machine's virtual disk cost "
                    f"about {c['wall_s'] - w['wall_s']:.1f} s ({(tb + cb) / 2**30 / (c['wall_s'] - w['wall_s']):.1f} "
                    f"GiB/s). " if c["wall_s"] - w["wall_s"] > 0.05 * w["wall_s"] else
                    f"reading the {gib(tb + cb)} GiB of tables and counts from this machine's virtual disk cost "
                    "less than the run-to-run noise (this virtual disk is fast, probably served from the host's "
                    "cache). ")
                 + "A parameter server compressing tables it holds in memory is the warm case; a dump on a "
                 "slower disk adds about its size divided by the disk's read rate.")
    out.append(text)
    out.append("")

    paper_cpu = PAPER_S * 80
    ours_cpu = r["cpu_s"]
    out.append(
        f"**Versus the paper.** The paper's 111.54 s (Table 2, fast clustering, k=100) is for the model at the "
        f"24th epoch, i.e. the end of day 1, whose matrix has {sci(PAPER_DAY1)} vectors (Table 1), and it counts "
        f"the time for 40 server containers (80 vCPUs) to cluster every eligible field and produce the codebooks "
        f"and masks (§3.3): clustering + assignment, no process start, load or save. Here the "
        f"{sci(r['vectors'])}-vector matrix{' (day 10 of Table 1)' if r['vectors'] == 124_000_000 else ''}, "
        f"{r['vectors'] / PAPER_DAY1:.1f}x as many vectors, takes {work:.1f} s of clustering + assignment and "
        f"{r['wall_s']:.1f} s end to end on 2 cores: {ours_cpu:.0f} CPU seconds against the paper's "
        f"{paper_cpu:,.0f} vCPU seconds, about {paper_cpu / ours_cpu * r['vectors'] / PAPER_DAY1:,.0f}x less "
        f"CPU per vector. The difference is the k-means implementation, not the method: the paper's Fig. 4(c) "
        f"has vanilla k-means on 50,000 vectors with k=500 take about 500 s on one core, which this library "
        f"(faiss, 25 iterations, 9-dim vectors, one thread: {extra['fig4c_cpu_s']:.1f} CPU s) does in "
        f"{extra['fig4c_s']:.1f} s. The comparison is "
        f"rough: the paper's cluster ran on 2.4 GHz Xeon E5-2520 v3 cores inside a parameter server with hashed "
        f"feature placement (its per-server load balance and network are unknown), its field layout and vectors "
        f"are the real trace's, and ours are synthetic (group mixture plus noise, the same heavy tails).")
    out.append("")

    met_t = all(x["wall_s"] < TARGET_S for x in top.values())
    met_m = all(x["maxrss_bytes"] / x["table_bytes"] < TARGET_MEM for x in top.values())
    if r["vectors"] < 124_000_000:
        out.append(f"(The targets are stated for 1.24e8 vectors; this run's largest size is {sci(r['vectors'])}, where "
                   f"the fixed {gib(extra['base_rss_bytes'])} GiB of an imported interpreter dominate the memory.)")
        out.append("")
    out.append(
        f"**Target.** {sci(r['vectors'])} vectors, k={args.k}, top_n = {r['top_n']:,}: {r['wall_s']:.1f} s "
        f"({'under' if met_t else 'over'} {TARGET_S:.0f} s) and {r['maxrss_bytes'] / tb:.2f}x the float32 tables "
        f"({'under' if met_m else 'over'} {TARGET_MEM}x)"
        + (f"; with top_n = {top_ns[-1]:,}: {top[top_ns[-1]]['wall_s']:.1f} s and "
           f"{top[top_ns[-1]]['maxrss_bytes'] / tb:.2f}x" if len(top) > 1 else "")
        + ". " + ("Both met, with room: no library change is needed for them. The cheapest further gain is in "
                  "assignment's non-search part (the `read` column): `assign` checks every value of every chunk "
                  "with `np.isfinite` before the faiss search, although faiss already returns label -1 for a row "
                  "that holds NaN or infinity." if met_t and met_m else
                  "Not met: the tables above show which phase to attack."))
    return out


def report(args: argparse.Namespace, argv: list[str], top_ns: list[int], dumps: dict[int, dict[str, Any]],
           runs: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    from saec.bench.report import header
    from saec.io import write_text

    cmd = ["flock", "/tmp/saec-bench.lock", "python", "benchmarks/compress_scale.py", *argv]
    text = header("Saec compression at scale: 1e6 to 1.24e8 vectors on 2 cores", cmd)
    text += body(args, top_ns, dumps, runs, extra)
    plot(runs, args.out.with_suffix(".png"), top_ns)
    write_text(args.out, text)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
