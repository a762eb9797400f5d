"""The open benchmark (survey §5): every registered method on the same tasks, budgets and axes, one cell at a time.

A *cell* is (task, method, budget, seed). :func:`run_cell` measures one: it builds the task's model with the
method's tables at the budget, trains it the task's way, and records the survey's four axes — accuracy
(the task's metrics), inference latency (batch 1 and 4096), training time per epoch, and training memory
(the peak RSS of the cell's own process, and the bytes of the training state: parameters, gradients and
optimizer state). How a method is trained follows :mod:`saec.nn.registry`:

- ``full`` and the methods trained compressed (:data:`~saec.nn.registry.FROM_SCRATCH`) are built at the budget
  and trained;
- a post-training method (Saec, PQ, the integer tables, ...) compresses the *full* model trained first (so its
  training memory is the full table's), then retrains it one epoch (Saec §2.3; for a method whose tables do
  not train, only the rest of the model trains); the task's selection split picks the better of the two states;
- a post-training method with a training form (:attr:`~saec.nn.registry.Method.trained_with`: ``dpq`` of
  ``dpq_train``) trains that form with the structure its stored form gets at the budget, then stores it (and
  retrains as many epochs as the form had if the method does, PEP).

Budgets (:func:`parse_budget`): ``"1/16"`` (each compressed table at most 1/16 of its float32 bytes, everything
it serves counted: codes, masks, scales, hash coefficients), ``"ppd256"`` (at most 256 parameters per
dimension, the peer's unit: :mod:`saec.bench.tasks.cce_gmf`), ``"full"`` (the reference). A method whose
smallest table exceeds the budget is recorded as ``cannot reach`` with the reason, before any training.

:func:`run_grid` runs each cell in a fresh child process (its peak RSS is the cell's alone; parallel workers get
one torch thread each) and stores one raw record per cell (``records/<task>/<method>/<budget>/seed<s>.json``,
checksummed, with the environment and peak RSS of the process that measured it). A cell with a record is not
run again unless ``rerun`` names it: the grid is resumable and any cell can be re-measured on request.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from saec.config import check_int
from saec.errors import SaecError

LATENCY_BATCHES = (1, 4096)
RECORD_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One measurement: ``method`` is a registered name, optionally with settings (``"hashing:hash=universal"``)."""

    task: str
    method: str
    budget: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.method}/{self.budget}/seed{self.seed}"

    def path(self, root: str | Path) -> Path:
        safe = self.method.replace(":", "@").replace("/", "_")
        return Path(root) / "records" / self.task / safe / self.budget.replace("/", "_") / f"seed{self.seed}.json"


def parse_budget(budget: str) -> tuple[str, float | None]:
    """``"1/16"`` -> ("ratio", 16.0); ``"ppd256"`` -> ("ppd", 256.0); ``"full"`` -> ("full", None)."""
    text = str(budget).strip()
    if text == "full":
        return "full", None
    for prefix, kind, lowest in (("1/", "ratio", 1.0), ("ppd", "ppd", 0.0)):
        if text.startswith(prefix):
            with contextlib.suppress(ValueError):
                value = float(text[len(prefix):])
                if value >= lowest and value > 0 and math.isfinite(value):
                    return kind, value
    raise SaecError(f"budget {budget!r}: expected '1/R' (R >= 1: 1/R of the float32 bytes), 'ppdN' (N > 0 "
                    f"parameters per dimension) or 'full'")


def parse_method(method: str) -> tuple[str, dict[str, Any]]:
    """``"hashing:hash=universal,..."`` -> ("hashing", {"hash": "universal"}); values read as JSON when they are
    (numbers, true/false), else kept as text. The name must be registered."""
    from saec.nn.registry import METHODS

    name, _, rest = str(method).partition(":")
    if name not in METHODS:
        raise SaecError(f"method {method!r}: unknown method {name!r}; methods are {list(METHODS)}")
    hyper: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise SaecError(f"method {method!r}: setting {part!r} is not key=value")
        try:
            hyper[key] = json.loads(value)
        except ValueError:
            hyper[key] = value
    accepted = METHODS[name].hyperparameters()
    unknown = sorted(set(hyper) - set(accepted))
    if unknown:
        raise SaecError(f"method {method!r}: {name} has no setting {unknown}; it takes {accepted}")
    return name, hyper


def method_kind(name: str) -> str:
    """``"full"``, ``"from scratch"``, ``"post-training"`` or ``"training form, then post-training"``."""
    from saec.nn.registry import METHODS

    spec = METHODS[name]
    if name == "full":
        return "full"
    if not spec.post_training:
        return "from scratch"
    return "training form, then post-training" if spec.trained_with else "post-training"


# -- one cell --------------------------------------------------------------------------------------------------
def _sizing(kind: str, value: float | None, rows: int, dim: int, method: str) -> dict[str, int]:
    """The registry budget argument of one table. A ppd budget counts parameters (the peer's unit: integer index
    arrays, codes and masks are not parameters, as the peer does not count CCE's). A method whose parameters do
    not grow with its budget knob (float16 and integer rows, binary or low-precision codes, an int8 codebook:
    a fixed step or nothing at all is trainable) would fit any such budget; it gets the bytes of ``ppd * dim``
    float32 parameters instead."""
    if kind == "ratio":
        return {"budget_bytes": math.floor(4 * rows * dim / value)}
    if kind != "ppd":
        return {}
    if not _params_follow_knob(method, rows, dim):
        return {"budget_bytes": math.floor(4 * value * dim)}
    return {"budget_params": math.floor(value * dim)}


def _params_follow_knob(method: str, rows: int, dim: int) -> bool:
    """Whether ``method``'s parameter count is what its budget knob sets (``full``: it has parameters)."""
    from saec.nn.registry import METHODS, footprint

    spec = METHODS[method]
    if not spec.knobs:
        return footprint(method, rows, dim).params > 0
    knob = spec.knobs[0]
    values = knob.values(rows, dim)
    sizes = set()
    for x in (values[0], values[len(values) // 2], values[-1]):
        try:
            sizes.add(footprint(method, rows, dim, **{knob.name: x}).params)
        except SaecError:
            continue
    return len(sizes) > 1


def _table_facts(module: Any, rows: int, dim: int) -> dict[str, Any]:
    tensors = list(module.parameters()) + list(module.buffers())
    return {"params": int(sum(p.numel() for p in module.parameters())),
            "bytes": int(sum(t.numel() * t.element_size() for t in tensors)),
            "full_bytes": 4 * rows * dim, "full_params": rows * dim, "type": type(module).__name__}


def plan_tables(task: Any, data: Any, cell: Cell) -> dict[str, dict[str, Any]]:
    """Per compressed table the hyperparameters ``cell``'s method gets at its budget (raises SaecError when a
    table cannot reach it) — everything decided before any training."""
    from saec.nn.registry import METHODS, fit_hyperparameters, training_structure

    name, hyper = parse_method(cell.method)
    kind, value = parse_budget(cell.budget)
    spec = METHODS[name]
    if (kind == "full") != (name == "full"):
        raise SaecError(f"cell {cell.key}: budget 'full' goes with method 'full' only")
    out = {}
    for table, facts in task.tables(data).items():
        rows, dim, counts = facts["rows"], facts["dim"], facts.get("counts")
        sizing = _sizing(kind, value, rows, dim, name)
        extra = {**task.method_hyper(name, data, table), **hyper}
        try:
            if name == "full":
                out[table] = {"build": extra, "stored": None}
            elif spec.trained_with:
                stored = fit_hyperparameters(name, rows, dim, counts=counts, **sizing, **hyper)
                if kind == "ppd" and spec.knobs:  # training_structure sizes by bytes; a params budget fits here
                    form = METHODS[spec.trained_with].structure()
                    build = {k: v for k, v in stored.items() if k in form}
                else:
                    build = training_structure(name, rows, dim, counts=counts, **sizing, **hyper) if sizing else {}
                accepted = METHODS[spec.trained_with].structure()
                build.update({k: v for k, v in extra.items() if k in accepted and k not in build})
                out[table] = {"build": build, "stored": stored}
            elif spec.post_training:
                out[table] = {"build": {}, "stored": fit_hyperparameters(name, rows, dim, counts=counts, **sizing,
                                                                         **hyper)}
            else:
                out[table] = {"build": fit_hyperparameters(name, rows, dim, counts=counts, **sizing, **extra),
                              "stored": None}
        except SaecError as e:
            raise SaecError(f"table {table!r} ({rows:,} x {dim}): {e}") from None
    return out


def _build(task: Any, data: Any, method: str, plan: dict[str, dict[str, Any]], seed: int) -> Any:
    from saec.nn.registry import make_embedding

    tables = {}
    for i, (table, facts) in enumerate(task.tables(data).items()):
        hyper = dict(plan[table]["build"])
        tables[table] = make_embedding(method, facts["rows"], facts["dim"], counts=facts.get("counts"),
                                       seed=seed * 1000 + i, **hyper)
    return task.model(data, seed, tables)


def _store(task: Any, data: Any, model: Any, method: str, plan: dict[str, dict[str, Any]]) -> Any:
    """``model`` with each planned table replaced by ``method``'s table built from it (post-training)."""
    from saec.nn.registry import from_float

    for table, facts in task.tables(data).items():
        trained = task.get_table(model, table)
        task.set_table(model, table, from_float(method, trained, counts=facts.get("counts"), **plan[table]["stored"]))
    return model


def forward_latency_ms(model: Any, inputs: Any, min_time: float = 0.5, max_reps: int = 2000) -> dict[str, float]:
    """Median and minimum milliseconds of one eval-mode forward of ``inputs`` (repeated for ``min_time`` s)."""
    import numpy as np
    import torch

    model.eval()
    times = []
    with torch.no_grad():
        model(inputs)  # warm-up
        start = time.perf_counter()
        while len(times) < max_reps and (time.perf_counter() - start < min_time or len(times) < 5):
            t = time.perf_counter()
            model(inputs)
            times.append(time.perf_counter() - t)
    return {"median_ms": float(np.median(times)) * 1e3, "min_ms": float(np.min(times)) * 1e3, "reps": len(times)}


def training_state_bytes(model: Any, optimizer: Any | None) -> int:
    """Bytes a training step holds for the model: parameters and buffers, a gradient per trainable parameter, and
    the optimizer's state tensors (Adagrad's or Adam's per-element accumulators)."""
    import torch

    total = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    total += sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    if optimizer is not None:
        for state in optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    return int(total)


def run_cell(cell: Cell, cache: Any = None) -> dict[str, Any]:
    """Measure one cell (module docstring); the record's measurements as plain data. A budget a method cannot
    reach gives ``status: "cannot reach"`` (and the reason) without training anything."""
    from saec.bench.report import peak_rss_mib
    from saec.bench.tasks import get_task

    task = get_task(cell.task)
    name, _ = parse_method(cell.method)
    kind = method_kind(name)
    data = task.prepare(cache)
    unreachable = _unreachable(cell, task, data)
    if unreachable is not None:
        return unreachable
    plan = plan_tables(task, data, cell)
    out: dict[str, Any] = {"cell": asdict(cell), "kind": kind, "task": task.describe(), "plan": plan}
    t0 = time.perf_counter()
    phases: dict[str, float] = {}
    states: list[dict[str, Any]] = []
    if kind in ("full", "from scratch"):
        model = _build(task, data, name, plan, cell.seed)
        fitted = task.fit(model, data, cell.seed)
        states.append({"state": "trained", **task.evaluate(model, data)})
    else:
        from saec.nn.registry import METHODS

        form = METHODS[name].trained_with or "full"
        model = _build(task, data, form, plan if form != "full" else {t: {"build": task.method_hyper(
            "full", data, t)} for t in plan}, cell.seed)
        fitted = task.fit(model, data, cell.seed)
        t = time.perf_counter()
        model = _store(task, data, model, name, plan)
        phases["compress_s"] = time.perf_counter() - t
        states.append({"state": "compressed", **task.evaluate(model, data)})
        if METHODS[name].retrain:  # PEP: the stored model retrained as the form was, its mask fixed
            again = task.fit(model, data, cell.seed + 1)
            phases["retrain_s"] = sum(h["seconds"] for h in again["history"])
            states.append({"state": f"retrained {len(again['history'])} epoch(s)", **task.evaluate(model, data)})
        elif not METHODS[name].trained_with and any(p.requires_grad for p in model.parameters()):
            phases["retrain_s"] = task.retrain(model, data, cell.seed)  # Saec §2.3: one epoch after clustering
            states.append({"state": "retrained 1 epoch", **task.evaluate(model, data)})
    phases["train_s"] = sum(h["seconds"] for h in fitted["history"])
    out["peak_train_rss_mib"] = peak_rss_mib()
    out["training_state_bytes"] = fitted["state_bytes"]
    out["train"] = {"epochs": len(fitted["history"]), "history": fitted["history"],
                    "seconds_per_epoch": phases["train_s"] / max(len(fitted["history"]), 1), **phases,
                    "total_s": time.perf_counter() - t0}
    out["states"] = states
    best = max(states, key=lambda s: s[task.select_split][task.metric])
    out["selected"] = best["state"]
    out["metrics"] = best[task.report_split]
    facts = task.tables(data)
    out["tables"] = {t: _table_facts(task.get_table(model, t), facts[t]["rows"], facts[t]["dim"]) for t in facts}
    out["table_bytes"] = sum(f["bytes"] for f in out["tables"].values())
    out["table_params"] = sum(f["params"] for f in out["tables"].values())
    out["full_bytes"] = sum(f["full_bytes"] for f in out["tables"].values())
    out["ratio"] = out["full_bytes"] / out["table_bytes"]
    out["latency"] = {str(b): forward_latency_ms(model, task.example(data, b)) for b in LATENCY_BATCHES}
    out["status"] = "ok"
    return out


# -- records ---------------------------------------------------------------------------------------------------
def write_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a cell's record atomically with its checksum (:func:`saec.io.write_json`)."""
    from saec.io import write_json

    return write_json(path, record)


def read_record(path: str | Path) -> dict[str, Any]:
    """A cell's record, its checksum verified (:func:`saec.io.read_json`)."""
    from saec.io import read_json

    return read_json(path)


def read_records(root: str | Path) -> list[dict[str, Any]]:
    """Every record under ``root/records``, verified, in path order."""
    return [read_record(p) for p in sorted((Path(root) / "records").rglob("seed*.json"))]


def cells(tasks: Sequence[str], methods: Sequence[str] | None, budgets: Sequence[str] | None,
          seeds: Sequence[int]) -> list[Cell]:
    """The grid: every task x method x budget x seed (``None``: every registered method without a training form of
    no size of its own, and each task's own budgets); ``full`` gets the budget ``"full"`` only. Checked first."""
    from saec.bench.tasks import get_task
    from saec.nn.registry import METHODS, TRAINING_FORMS

    every = [m for m in METHODS if not (m in TRAINING_FORMS and not METHODS[m].knobs)]
    out = []
    for task_name in tasks:
        task = get_task(task_name)
        task_methods = list(methods) if methods else every + list(task.extra_methods)
        for m in task_methods:
            parse_method(m)
        task_budgets = list(budgets) if budgets else list(task.budgets)
        for b in task_budgets:
            parse_budget(b)
        for m in task_methods:
            for b in (["full"] if parse_method(m)[0] == "full" else [b for b in task_budgets if b != "full"]):
                out += [Cell(task_name, m, b, int(s)) for s in seeds]
    return out


def _matches(cell: Cell, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(cell.key, p) for p in patterns)


def run_grid(root: str | Path, grid: Sequence[Cell], *, workers: int = 1, threads: int | None = None,
             rerun: Sequence[str] = (), command: Sequence[str] = (), progress: bool = True,
             cache: Any = None) -> dict[str, Any]:
    """Run every cell of ``grid`` without a record under ``root`` (and those whose key matches a ``rerun`` glob,
    e.g. ``"cce_gmf/saec/*"``), each in its own child process, ``workers`` at a time with ``threads`` torch
    threads each (default: the cores shared out, at least one; more threads than cores makes OpenMP's
    spin-waiting workers slow each other down many times over). Returns counts of cells run, skipped and
    failed; a failed cell (a bug: the child raised something other than a budget it cannot reach) leaves no
    record and its output is printed."""
    todo = [c for c in grid if _matches(c, rerun) or not c.path(root).exists()]
    total = len(todo)
    workers = check_int("workers", workers, 1)
    threads = max(1, (os.cpu_count() or 1) // workers) if threads is None else check_int("threads", threads, 1)
    running: list[tuple[Cell, subprocess.Popen, float]] = []
    failed: list[str] = []
    done = 0

    # A budget a method cannot reach is decided by sizing alone: record it here, from one preparation of the
    # task's data, instead of starting a process that prepares the data again only to say so.
    from saec.bench.tasks import get_task

    for name in dict.fromkeys(c.task for c in todo):
        task, start, load = get_task(name), time.perf_counter(), os.getloadavg()[0]
        data = task.prepare(cache)
        for cell in [c for c in todo if c.task == name]:
            record = _unreachable(cell, task, data)
            if record is not None:
                todo.remove(cell)
                done += 1
                line = _finish(cell.path(root), record, command, start, load)
                if progress:
                    print(f"[{done}/{total}] {cell.key}: {line}", flush=True)
                start, load = time.perf_counter(), os.getloadavg()[0]
        del data

    def launch(cell: Cell) -> None:
        argv = [sys.executable, "-m", "saec.bench.grid", json.dumps(asdict(cell)), str(cell.path(root)),
                json.dumps(list(command)), str(threads)] + ([str(cache)] if cache is not None else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        running.append((cell, proc, time.perf_counter()))

    queue = list(todo)
    while queue or running:
        while queue and len(running) < max(1, workers):
            launch(queue.pop(0))
        time.sleep(0.05)
        for item in list(running):
            cell, proc, started = item
            if proc.poll() is None:
                continue
            running.remove(item)
            output = proc.stdout.read() if proc.stdout else ""
            done += 1
            if proc.returncode != 0:
                failed.append(cell.key)
                print(f"[{done}/{total}] {cell.key}: FAILED\n{output}", file=sys.stderr, flush=True)
            elif progress:
                print(f"[{done}/{total}] {cell.key}: {output.strip().splitlines()[-1] if output.strip() else ''}"
                      f" ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"run": total - len(failed), "skipped": len(grid) - total, "failed": failed}


def _child(argv: list[str]) -> int:
    """``python -m saec.bench.grid CELL_JSON RECORD_PATH COMMAND_JSON THREADS [CACHE]``: measure one cell and
    write its record (what :func:`run_grid` starts)."""
    import torch

    cell = Cell(**json.loads(argv[0]))
    torch.set_num_threads(int(argv[3]))
    start, load = time.perf_counter(), os.getloadavg()[0]
    record = run_cell(cell, cache=argv[4] if len(argv) > 4 else None)
    print(_finish(argv[1], record, json.loads(argv[2]), start, load))
    return 0


def _finish(path: str | Path, record: dict[str, Any], command: Sequence[str], start: float, load: float) -> str:
    """Stamp ``record`` with what every record carries (command, environment, peak RSS, wall time, load average of
    the process that measured it), write it to ``path``, and return its one-line summary."""
    from saec.bench.report import environment, peak_rss_mib

    record.update({"version": RECORD_VERSION, "command": list(command), "environment": environment(),
                   "peak_rss_mib": peak_rss_mib(), "wall_s": time.perf_counter() - start,
                   "loadavg_start": load, "loadavg_end": os.getloadavg()[0]})
    write_record(path, record)
    if record["status"] == "ok":
        return ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items()) + f", {record['ratio']:.1f}x"
    return f"{record['status']}: {record['reason'][:150]}"


def _unreachable(cell: Cell, task: Any, data: Any) -> dict[str, Any] | None:
    """The record of a cell whose budget its method cannot reach (sizing only, nothing trained), else None."""
    try:
        plan_tables(task, data, cell)
    except SaecError as e:
        return {"cell": asdict(cell), "kind": method_kind(parse_method(cell.method)[0]), "task": task.describe(),
                "status": "cannot reach", "reason": str(e)}
    return None


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))


__all__ = ["Cell", "LATENCY_BATCHES", "cells", "forward_latency_ms", "method_kind", "parse_budget", "parse_method",
           "plan_tables", "read_record", "read_records", "run_cell", "run_grid", "training_state_bytes",
           "write_record"]
