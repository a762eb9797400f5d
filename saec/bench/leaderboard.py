"""Pages of the open benchmark, rendered from the cells' raw records alone (:mod:`saec.bench.grid`).

Per task: a leaderboard (accuracy by method and budget, mean ± sample std over seeds, or why a method cannot
reach the budget), the survey's four axes at each budget, a Pareto plot (accuracy against served bytes), and a
guide (survey §5.1: which method for accuracy, inference speed, training speed and training memory) computed
from those numbers. The peer task also gets the peer's published rows beside ours and the issue's goals, each
checked against the records. Every sentence with a number is built from an aggregate of records; a claim whose
cells are missing says "not measured" instead of being made, and :func:`render` refuses records that disagree
about a cell (a checksum failure, two records of one cell).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from saec.errors import SaecError

METRIC_LABELS = {"auc": "AUC", "ndcg": "nDCG@10", "gap_share": "share of the popularity-to-Bayes AUC gap"}
"""How the pages name each task's metric (a task's ``metric``, :mod:`saec.bench.tasks`); others show as they are."""
SPREAD_NOTE = ("spread = max - min over seeds; 'matches' means our mean is at least the published value minus our "
               "spread")


def _budget_order(budget: str) -> tuple[int, float]:
    from saec.bench.grid import parse_budget

    kind, value = parse_budget(budget)
    if kind == "full":
        return (0, 0.0)
    return (1, -value) if kind == "ppd" else (2, value)


class Aggregate:
    """The records of one task grouped by (method, budget)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        seen = set()
        for r in records:
            c = r["cell"]
            key = (c["method"], c["budget"], c["seed"])
            if key in seen:
                raise SaecError(f"two records of cell {c}: the records folder is inconsistent")
            seen.add(key)
            self.cells[(c["method"], c["budget"])].append(r)
        self.task = records[0]["task"]
        from saec.bench.tasks import get_task

        self.metric = get_task(records[0]["cell"]["task"]).metric  # higher is better, whatever the task
        self.metric_label = METRIC_LABELS.get(self.metric, self.metric)
        self.budgets = sorted({b for _, b in self.cells}, key=_budget_order)
        self.methods = sorted({m for m, _ in self.cells})

    def ok(self, method: str, budget: str) -> list[dict[str, Any]]:
        return [r for r in self.cells.get((method, budget), []) if r["status"] == "ok"]

    def values(self, method: str, budget: str, key: str | None = None) -> list[float]:
        key = key or self.metric
        return [r["metrics"][key] for r in self.ok(method, budget)]

    def mean(self, method: str, budget: str, key: str | None = None) -> float | None:
        v = self.values(method, budget, key)
        return float(np.mean(v)) if v else None

    def spread(self, method: str, budget: str) -> float:
        v = self.values(method, budget)
        return float(np.max(v) - np.min(v)) if len(v) > 1 else 0.0

    def axis(self, method: str, budget: str, what: str) -> float | None:
        rs = self.ok(method, budget)
        if not rs:
            return None
        get = {"latency1": lambda r: r["latency"]["1"]["median_ms"],
               "latency4096": lambda r: r["latency"]["4096"]["median_ms"],
               "epoch_s": lambda r: r["train"]["seconds_per_epoch"],
               "state_bytes": lambda r: r["training_state_bytes"],
               "rss": lambda r: r["peak_train_rss_mib"],
               "bytes": lambda r: r["table_bytes"], "params": lambda r: r["table_params"],
               "ratio": lambda r: r["ratio"]}[what]
        return float(np.median([get(r) for r in rs]))

    def kind(self, method: str) -> str:
        for rs in (v for (m, _), v in self.cells.items() if m == method):
            return rs[0]["kind"]
        return "?"

    def reason(self, method: str, budget: str) -> str | None:
        rs = [r for r in self.cells.get((method, budget), []) if r["status"] != "ok"]
        return rs[0]["reason"] if rs else None

    def cell_text(self, method: str, budget: str) -> str:
        v = self.values(method, budget)
        if v:
            from saec.bench.report import mean_std

            return mean_std(v) + (f" ({len(v)})" if len(v) > 1 else "")
        if self.reason(method, budget):
            return "cannot reach"
        return "—"

    def ranked(self, budget: str, kinds: tuple[str, ...] | None = None) -> list[tuple[str, float]]:
        out = [(m, self.mean(m, budget)) for m in self.methods if m != "full"
               and (kinds is None or self.kind(m) in kinds)]
        return sorted([(m, v) for m, v in out if v is not None], key=lambda x: -x[1])


IN_BUDGET = ("from scratch",)
"""Kinds of method that train inside the budget (the others need the full table, or their training form)."""


def _fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:,.1f} {unit}"
    return f"{b:,.0f} B"


def mean_ranks(agg: Aggregate) -> dict[str, float]:
    """Each method's rank at each budget (1 = most accurate; a budget it does not reach, or was not run at, ranks
    after every method that has a value there), averaged over the budgets: the leaderboard's order."""
    budgets = [b for b in agg.budgets if b != "full"] or ["full"]
    ranks: dict[str, list[float]] = defaultdict(list)
    for b in budgets:
        values = dict(agg.ranked(b))
        if agg.mean("full", "full") is not None:  # the reference is a row at every budget
            values["full"] = agg.mean("full", "full")
        order = sorted(values, key=lambda m: -values[m])
        for m in agg.methods:
            ranks[m].append(order.index(m) + 1.0 if m in values else len(values) + 1.0)
    return {m: sum(r) / len(r) for m, r in ranks.items()}


def leaderboard_table(agg: Aggregate) -> str:
    from saec.bench.report import markdown_table

    budgets = [b for b in agg.budgets if b != "full"]
    ranks = mean_ranks(agg)
    order = sorted(agg.methods, key=lambda m: (ranks[m], m))
    rows = [["method", "trained", "mean rank", *budgets] if budgets else ["method", "trained", "mean rank", "full"]]
    for m in order:
        cells = [agg.cell_text(m, "full")] * max(len(budgets), 1) if m == "full" else \
            [agg.cell_text(m, b) for b in budgets]
        rows.append([m, agg.kind(m), f"{ranks[m]:.1f}", *cells])
    return markdown_table(rows)


def axes_table(agg: Aggregate, budget: str) -> str:
    from saec.bench.report import markdown_table

    rows = [[agg.metric_label, "method", "trained", "served bytes", "ratio", "latency b=1 (ms)", "latency b=4096 (ms)",
             "s / epoch", "training state", "peak train RSS (MiB)"]]
    methods = ["full"] + [m for m, _ in agg.ranked(budget)] if budget != "full" else ["full"]
    for m in methods:
        b = "full" if m == "full" else budget
        if agg.mean(m, b) is None:
            continue
        rows.append([agg.cell_text(m, b), m, agg.kind(m), _fmt_bytes(agg.axis(m, b, "bytes")),
                     f"{agg.axis(m, b, 'ratio'):.1f}x", f"{agg.axis(m, b, 'latency1'):.3f}",
                     f"{agg.axis(m, b, 'latency4096'):.2f}", f"{agg.axis(m, b, 'epoch_s'):.2f}",
                     _fmt_bytes(agg.axis(m, b, "state_bytes")), f"{agg.axis(m, b, 'rss'):,.0f}"])
    return markdown_table(rows)


def peer_section(agg: Aggregate) -> str:
    """thomasahle/cce's published rows beside ours, and the issue's goals checked against the records."""
    from saec.bench.report import markdown_table
    from saec.bench.tasks.cce_gmf import PEER_NAMES, PUBLISHED

    ppds = sorted({p for row in PUBLISHED.values() for p in row})
    rows = [["row", "published (cce)", *[f"ppd {p}" for p in ppds]]]
    for peer_row, values in PUBLISHED.items():
        rows.append([peer_row, "published", *[f"{values[p]:.3f}" for p in ppds]])
        ours = PEER_NAMES[peer_row]
        if ours is None:
            rows.append(["", "saec: no such method", *["" for _ in ppds]])
            continue
        rows.append(["", f"saec `{ours}`",
                     *[agg.cell_text(ours, "full" if ours == "full" else f"ppd{p}") for p in ppds]])
    text = markdown_table(rows)
    text += "\n### Goals, checked against the records\n\n"
    best_published = {p: max(v[p] for k, v in PUBLISHED.items() if k != "full table") for p in ppds}
    for p in ppds:
        b = f"ppd{p}"
        inside = agg.ranked(b, IN_BUDGET)
        if not inside:
            text += f"- ppd {p}: not measured.\n"
            continue
        m, v = inside[0]
        verdict = "beats" if v > best_published[p] else "does not beat"
        text += (f"- ppd {p}: the best saec method trained within the budget, `{m}` ({v:.4f}), {verdict} every "
                 f"published compressed row (best {best_published[p]:.3f}).\n")
    full = agg.mean("full", "full")
    post = agg.ranked("ppd1024", ("post-training", "training form, then post-training"))
    if full is not None and post:
        m, v = post[0]
        verdict = "within" if full - v <= 0.002 else "not within"
        text += (f"- ppd 1024: the best post-training method, `{m}` ({v:.4f}), is {verdict} 0.002 of the full model "
                 f"({full:.4f}; difference {full - v:+.4f}).\n")
    for peer_row, values in PUBLISHED.items():
        ours = PEER_NAMES[peer_row]
        if ours is None or ours == "full":
            continue
        verdicts = []
        for p in ppds:
            verdict = _peer_verdict(agg, ours, f"ppd{p}", values[p])
            verdicts.append(f"ppd {p}: " + (verdict or ("cannot reach" if agg.reason(ours, f"ppd{p}")
                                                         else "not measured")))
        text += f"- `{ours}` against the published {peer_row}: " + "; ".join(verdicts) + ".\n"
        base = ours.split(":")[0]  # the other settings of the same method run here, judged alike
        others = [m for m in agg.methods if m != ours and m.split(":")[0] == base]
        for p in ppds:
            seen = [f"`{m}` {v}" for m in others if (v := _peer_verdict(agg, m, f"ppd{p}", values[p]))]
            if seen:
                text += f"  - ppd {p}, the other forms of `{base}` run on this task: " + "; ".join(seen) + ".\n"
    text += f"\n({SPREAD_NOTE}.)\n"
    for p in (64, 16):
        ranked = agg.ranked(f"ppd{p}")
        if ranked:
            text += (f"- ppd {p} (below the peer's table): " + ", ".join(f"`{m}` {v:.4f}" for m, v in ranked[:5])
                     + (f"; best trained within the budget: `{agg.ranked(f'ppd{p}', IN_BUDGET)[0][0]}`"
                        if agg.ranked(f"ppd{p}", IN_BUDGET) else "") + ".\n")
    return text


def _peer_verdict(agg: Aggregate, method: str, budget: str, published: float) -> str | None:
    """``mean vs published`` and whether it matches (:data:`SPREAD_NOTE`), with the seeds and spread; None if the
    cell has no value."""
    mean = agg.mean(method, budget)
    if mean is None:
        return None
    spread, n = agg.spread(method, budget), len(agg.values(method, budget))
    ok = mean >= published - spread
    seeds = f" ({n} seeds, spread {spread:.4f})" if n > 1 else " (one seed: no spread yet)"
    return f"{mean:.4f} vs {published:.3f} {'matches or beats' if ok else 'LOSES'}{seeds}"


def pareto_plot(agg: Aggregate, path: str | Path, kind: str) -> None:
    """Accuracy against served bytes, one line per method over the budgets of ``kind`` ("ppd" or "ratio"), and
    the Pareto front of every point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saec.bench.grid import parse_budget
    from saec.bench.report import save_figure

    budgets = [b for b in agg.budgets if parse_budget(b)[0] == kind]
    fig, ax = plt.subplots(figsize=(10, 5.5))
    points = []
    cmap = plt.get_cmap("tab20")
    markers = "os^vD<>ph*"
    for i, m in enumerate(x for x in agg.methods if x != "full"):
        xy = [(agg.axis(m, b, "bytes"), agg.mean(m, b)) for b in budgets if agg.mean(m, b) is not None]
        if not xy:
            continue
        xy.sort()
        points += [(x, y, m) for x, y in xy]
        ax.plot([x for x, _ in xy], [y for _, y in xy], marker=markers[i % len(markers)], ms=4, lw=1,
                color=cmap(i % 20), label=m, alpha=0.85)
    front, best = [], -math.inf
    for x, y, m in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    if front:
        ax.step([x for x, _ in front], [y for _, y in front], where="post", color="black", lw=2, alpha=0.5,
                label="Pareto front")
    full = agg.mean("full", "full")
    if full is not None:
        ax.axhline(full, color="gray", ls="--", lw=1, label="full table")
    ax.set_xscale("log")
    ax.set_xlabel("served bytes of the compressed tables (log)")
    ax.set_ylabel(agg.metric_label)
    ys = [y for _, y, _ in points] + ([full] if full is not None else [])
    if ys:  # every point in view, on the metric's own scale (nDCG@10 is near 0.06, AUC near 0.8)
        pad = 0.03 * (max(ys) - min(ys)) or 0.01
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_title(f"{agg.task['name']}: accuracy against bytes ({'parameters per dimension' if kind == 'ppd' else 'byte ratios'})")
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def _environment(records: list[dict[str, Any]]) -> dict[str, str]:
    """The environment lines of a task's page. Versions, machine, threads and peak RSS are those of the measured
    cells (a budget out of reach is sized by the runner itself, whose threads and memory measure nothing)."""
    all_records = records
    records = [r for r in records if r["status"] == "ok"] or records
    envs = [r["environment"] for r in records if "environment" in r]
    out = {}
    for key in envs[0]:
        vals = sorted({e.get(key, "?") for e in envs})
        if key == "date":
            out["dates"] = f"{vals[0]} to {vals[-1]}" if len(vals) > 1 else vals[0]
        else:
            out[key] = vals[0] if len(vals) == 1 else " / ".join(vals)
    rss = [r["peak_rss_mib"] for r in records if "peak_rss_mib" in r]
    out["peak RSS per cell (its own process)"] = f"{min(rss):,.0f} to {max(rss):,.0f} MiB"
    loads = [r["loadavg_end"] for r in records if "loadavg_end" in r]
    out["1-min load average at the end of the cells"] = f"{min(loads):.1f} to {max(loads):.1f}"
    wall = sum(r.get("wall_s", 0.0) for r in all_records)
    rest = len(all_records) - len(records)
    out["cells"] = (f"{len(all_records)} ({wall / 60:.1f} min of cell time)" + (
        f"; {rest} of them budgets out of reach (sized only, nothing trained)" if rest else ""))
    return out


def render(root: str | Path) -> list[Path]:
    """Write ``root/<task>.md`` (+ PNG plots) for every task with records under ``root``, and ``root/guide.md``
    (:mod:`saec.bench.guide`, across the tasks); returns the pages."""
    from saec.bench.grid import parse_budget, read_records
    from saec.io import write_text

    root = Path(root)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in read_records(root):
        by_task[r["cell"]["task"]].append(r)
    if not by_task:
        raise SaecError(f"{root}: no benchmark records under {root / 'records'}; run `saec bench run` first")
    pages, aggs, all_commands = [], {}, []
    for task, records in sorted(by_task.items()):
        agg = aggs[task] = Aggregate(records)
        commands = sorted({" ".join(r["command"]) for r in records if r.get("command")})
        all_commands += commands
        text = (f"# Open benchmark: {task}\n\nReproduce with (resumable: cells with a record are skipped; "
                f"`--rerun GLOB` re-measures the cells it matches):\n\n```\n"
                + "\n".join(commands or [f"saec bench run --tasks {task}"]) + "\n```\n\n")
        text += "".join(f"- {k}: {v}\n" for k, v in _environment(records).items())
        text += "\n" + "".join(f"- {k}: {v}\n" for k, v in agg.task.items() if k != "name")
        refs = {k: agg.values("full", "full", k) for k in (agg.ok("full", "full") or [{"metrics": {}}])[0]["metrics"]
                if k.startswith("auc_")}  # the trace's floors and ceiling, as its records hold them
        if refs:
            from saec.bench.report import mean_std

            text += "- reference AUCs on the reported split (from the full cells' records): " + ", ".join(
                f"`{k}` {mean_std(v)}" for k, v in refs.items()) + "\n"
        text += ("\nEach number is the mean ± sample std over seeds (the number of seeds in brackets) of the cell's "
                 f"{agg.metric_label} (`{agg.metric}`) on the task's reported split; `cannot reach`: the method's "
                 "smallest table exceeds the budget (reason in the records); `—`: not run. `trained`: `from scratch` "
                 "methods train inside the budget; `post-training` ones compress the trained full model (so they "
                 "need its memory while training) and retrain one epoch; `training form, then post-training` ones "
                 "train their own form first.\n\n")
        text += ("## Leaderboard\n\nRows in order of mean rank over the budgets (1 = the most accurate at a budget; a "
                 "budget a method does not reach ranks it after every method that does).\n\n" + leaderboard_table(agg))
        kinds = sorted({parse_budget(b)[0] for b in agg.budgets if b != "full"})
        for kind in kinds:
            png = root / f"{task}_pareto_{kind}.png"
            pareto_plot(agg, png, kind)
            text += f"\n![Pareto: accuracy against bytes ({kind})]({png.name})\n"
        if task == "cce_gmf":
            text += "\n## Beside the peer's published table (thomasahle/cce)\n\n" + peer_section(agg)
        from saec.bench.guide import task_guide

        text += ("\n## Guide (survey §5.1): which method for what, by budget\n\n"
                 "The rule of [guide.md](guide.md), on this task alone.\n\n" + task_guide(task, agg))
        text += ("\nLatency: median of repeated eval-mode forwards of the whole model in the cell's process (one "
                 "torch thread when cells ran in parallel); training state: parameters, buffers, gradients and "
                 "optimizer state of the model that was trained (for post-training methods, the full one).\n")
        text += "\n## The four axes at each budget\n"
        for b in agg.budgets:
            if b == "full":
                continue
            text += f"\n### {b}\n\n" + axes_table(agg, b)
        page = root / f"{task}.md"
        write_text(page, text)
        pages.append(page)
    from saec.bench.guide import guide_page

    page = root / "guide.md"
    write_text(page, guide_page(aggs, all_commands))
    return [*pages, page]


__all__ = ["Aggregate", "render"]
