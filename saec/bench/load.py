"""``saec serve`` under load on loopback, with a hot reload in the middle (issue 11).

:func:`run` makes a small ``saec periodic`` folder (the ``small`` trace, a few segments, so it has several
published versions), points its ``current`` link at an older version, starts ``saec serve`` on it in a
subprocess on a free loopback port (1 worker, then 2), and sends it ``requests`` requests of ``records``
raw records each from ``clients`` concurrent clients (threads, one keep-alive ``httpx.Client`` each),
bounded in count and in ``max_seconds``. Halfway through, the link is switched to the newest version, as the
loop does on publishing. Every response's status, latency and answering version is kept; the record holds
them all with the environment, and :func:`render` writes the page from it alone. The clients run on the same
2-core machine as the server, so the throughput is the service's with its load generator beside it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadConfig:
    """What :func:`run` measures (see the module docstring)."""

    workers: tuple[int, ...] = (1, 2)
    clients: int = 8
    requests: int = 3000
    records: int = 16
    max_seconds: float = 120.0
    preset: str = "small"
    segments: int = 4
    seed: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _point(serving: Path, target: str) -> None:
    tmp = serving / ".current.bench-tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, serving / "current")


def _loop_folder(cfg: LoadConfig, where: Path) -> Path:
    from saec.cli import main

    out = where / "run"
    code = main(["periodic", "--preset", cfg.preset, "--k", "16", "--segments", str(cfg.segments), "--keep",
                 str(cfg.segments), "--quiet", "--out", str(out)])
    if code != 0:
        raise RuntimeError(f"saec periodic exited with {code}")
    return out


def _records(cfg: LoadConfig, n: int) -> list[list[dict[str, Any]]]:
    from saec.data.synthetic import SyntheticTrace, TraceConfig

    trace = SyntheticTrace(TraceConfig.preset(cfg.preset))
    seg = trace.segment(cfg.segments)  # an hour the served models never trained on
    raw = {name: np.asarray(seg.raw[name]) for name in trace.names}
    rng = np.random.default_rng(cfg.seed)
    rows = rng.integers(0, len(seg.labels), (n, cfg.records))
    return [[{name: raw[name][i].item() for name in trace.names} for i in batch] for batch in rows]


def measure(url: str, bodies: list[list[dict]], cfg: LoadConfig, switch: Any) -> dict[str, Any]:
    """Send ``bodies`` from ``cfg.clients`` threads; call ``switch()`` once half of them were sent."""
    import httpx

    lock = threading.Lock()
    next_i, results = [0], []
    half = len(bodies) // 2
    switched: dict[str, float] = {}
    deadline = time.monotonic() + cfg.max_seconds
    t0 = time.monotonic()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while time.monotonic() < deadline:
                with lock:
                    i = next_i[0]
                    if i >= len(bodies):
                        return
                    next_i[0] += 1
                    if i == half and not switched:
                        switched["at"] = time.monotonic() - t0
                        switch()
                start = time.monotonic()
                try:
                    r = c.post("/predict", json={"records": bodies[i]})
                    status, version = r.status_code, (r.json().get("version") if r.status_code == 200 else None)
                except httpx.HTTPError as e:  # a dropped connection counts as an error, not a crash
                    status, version = type(e).__name__, None
                end = time.monotonic()
                with lock:
                    results.append((start - t0, end - start, status, version))

    threads = [threading.Thread(target=client) for _ in range(cfg.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.sort()
    return {"sent": len(results), "wall_s": time.monotonic() - t0, "switch_at_s": switched.get("at"),
            "start_s": [r[0] for r in results], "latency_s": [r[1] for r in results],
            "status": [r[2] for r in results], "version": [r[3] for r in results]}


def run(cfg: LoadConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Every worker count of ``cfg``; the raw record."""
    import httpx

    from saec.bench.report import environment, peak_rss_mib

    start = time.perf_counter()
    record: dict[str, Any] = {"command": command, "config": asdict(cfg), "environment": environment(),
                              "load_before": os.getloadavg()[0], "runs": []}
    with tempfile.TemporaryDirectory(prefix="saec-load-") as tmp:
        out = _loop_folder(cfg, Path(tmp))
        serving = out / "serving"
        versions = sorted(p.name for p in serving.iterdir() if p.name.startswith("v"))
        old, new = versions[0], versions[-1]
        bodies = _records(cfg, cfg.requests)
        for workers in cfg.workers:
            _point(serving, old)
            port = _free_port()
            log = Path(tmp) / f"serve-{workers}.log"
            with open(log, "w") as fh:
                proc = subprocess.Popen([sys.executable, "-m", "saec.cli", "serve", str(out), "--port", str(port),
                                         "--workers", str(workers), "--poll", "0.2"], stdout=fh,
                                        stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            try:
                ready = time.monotonic() + 300
                while True:
                    try:
                        up = httpx.get(url + "/health", timeout=5).json()["version"] == old
                    except httpx.HTTPError:  # not listening yet
                        up = False
                    if up:
                        break
                    if proc.poll() is not None or time.monotonic() > ready:
                        raise RuntimeError(f"saec serve did not start: {log.read_text()[-2000:]}")
                    time.sleep(0.2)
                time.sleep(1.0 if workers == 1 else 5.0)  # let every worker finish starting
                result = measure(url, bodies, cfg, lambda: _point(serving, new))
            finally:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            result.update(workers=workers, old=old, new=new, server_log=log.read_text()[-4000:])
            record["runs"].append(result)
            if progress:
                ok = sum(s == 200 for s in result["status"])
                print(f"{workers} worker(s): {result['sent']} requests in {result['wall_s']:.1f} s, {ok} ok, "
                      f"p50 {np.percentile(result['latency_s'], 50) * 1e3:.1f} ms", flush=True)
        shutil.rmtree(out, ignore_errors=True)
    record["wall_s"] = time.perf_counter() - start
    record["load_after"] = os.getloadavg()[0]
    record["peak_rss_mib"] = peak_rss_mib()
    return record


def render(record: dict[str, Any], md_path: str | Path, png_path: str | Path) -> None:
    """The page and plot of a :func:`run` record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.bench.report import checksums, header, markdown_table, save_figure
    from saec.io import write_text

    cfg = record["config"]
    env = {**record["environment"], "peak RSS (load generator)": f"{record['peak_rss_mib']:,.0f} MiB",
           "wall time": f"{record['wall_s'] / 60:.1f} min",
           "load average (1 min) before / after": f"{record['load_before']:.2f} / {record['load_after']:.2f}"}
    env.pop("torch threads", None)
    text = header("saec serve under load on loopback, with a hot reload in the middle", record["command"], env,
                  checksums(record))
    text += (
        f"\nA `saec periodic` folder of the `{cfg['preset']}` trace ({cfg['segments']} segments, so several "
        f"published versions) is served by `saec serve DIR --workers N --poll 0.2` in its own process on a loopback "
        f"port, its `current` link pointing at the oldest version. {cfg['clients']} client threads (one keep-alive "
        f"`httpx.Client` each, in this process) send up to {cfg['requests']:,} `POST /predict` requests of "
        f"{cfg['records']} raw records (an hour none of the versions trained on), at most {cfg['max_seconds']:g} s; "
        f"when half are sent the link is switched to the newest version, as the loop does when it publishes. "
        f"Latency is per request, client side; the clients share the 2 cores with the server.\n\n")
    rows = [["workers", "requests", "errors", "wall (s)", "requests/s", "records/s", "p50 (ms)", "p99 (ms)",
             "max (ms)", "switch at (s)", "first new version after switch (s)", "old / new answers"]]
    for r in record["runs"]:
        lat = np.asarray(r["latency_s"]) * 1e3
        errors = sum(s != 200 for s in r["status"])
        first_new = min((t for t, v in zip(r["start_s"], r["version"]) if v == r["new"]), default=None)
        lag = f"{first_new - r['switch_at_s']:.2f}" if first_new is not None and r["switch_at_s"] is not None else "n/a"
        rows.append([str(r["workers"]), f"{r['sent']:,}", str(errors), f"{r['wall_s']:.1f}",
                     f"{r['sent'] / r['wall_s']:,.0f}", f"{r['sent'] * cfg['records'] / r['wall_s']:,.0f}",
                     f"{np.percentile(lat, 50):.1f}", f"{np.percentile(lat, 99):.1f}", f"{lat.max():.1f}",
                     f"{r['switch_at_s']:.1f}" if r["switch_at_s"] is not None else "n/a", lag,
                     f"{sum(v == r['old'] for v in r['version']):,} / {sum(v == r['new'] for v in r['version']):,}"])
    text += markdown_table(rows)
    bad = [(r["workers"], s) for r in record["runs"] for s in r["status"] if s != 200]
    text += (f"\n{'No request failed' if not bad else f'{len(bad)} requests failed: {sorted(set(bad))[:5]}'} "
             f"across the runs; every answer came from the old or the new version: "
             f"{all(set(r['version']) <= {r['old'], r['new']} for r in record['runs'])}; each run ended on the new "
             f"one: {all(r['version'][-1] == r['new'] for r in record['runs'] if r['version'])}. The first new answer "
             f"comes one poll (0.2 s) plus the new version's load and warm-up after the switch (with 2 workers, each "
             f"switches on its own).\n\n![latency over time]({Path(png_path).name})\n")
    fig, axes = plt.subplots(1, len(record["runs"]), figsize=(6 * len(record["runs"]), 3.6), squeeze=False)
    for ax, r in zip(axes[0], record["runs"]):
        t, lat = np.asarray(r["start_s"]), np.asarray(r["latency_s"]) * 1e3
        for v, colour in ((r["old"], "tab:blue"), (r["new"], "tab:orange")):
            sel = np.asarray([x == v for x in r["version"]])
            ax.scatter(t[sel], lat[sel], s=2, color=colour, label=f"answered by {v}")
        if r["switch_at_s"] is not None:
            ax.axvline(r["switch_at_s"], color="k", ls="--", lw=1, label="link switched")
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel("request latency (ms)")
        ax.set_title(f"{r['workers']} worker(s)")
        ax.legend(fontsize=8, markerscale=4)
    fig.tight_layout()
    save_figure(fig, png_path)
    write_text(md_path, text)
