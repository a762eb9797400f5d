"""The survey's §5.1 question — which method for model accuracy, inference efficiency, training efficiency and
training memory — answered across every task of the open benchmark, from the cells' raw records alone.

``../shared/papers/embedding-compression-survey.txt`` §5.1 gives general suggestions per requirement (mixed
dimension or 16-bit quantization for accuracy; vector quantization or binarization for inference; rule-based,
hashing, decomposition or low-precision training for training memory; and that most methods slow training).
This page sets each suggestion beside what the records say: for every task and budget the method that does
best on that axis, its family (the survey's taxonomy, :data:`FAMILY`), and how often each family comes first.
Timing axes are only compared among methods whose accuracy is within :data:`ACCURATE` of the budget's best
(a fast method nobody would serve answers nothing), and carry the load average their cells ran under.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from saec.bench.leaderboard import IN_BUDGET, Aggregate, _fmt_bytes

FAMILY: dict[str, str] = {
    "full": "none (the reference)",
    **dict.fromkeys(("fp16", "int8", "int4", "int2", "lpt", "alpt", "binary", "binary_ste"), "low precision"),
    **dict.fromkeys(("low_dim", "mixed_dim", "freq_dim"), "mixed dimension"),
    **dict.fromkeys(("pep", "pep_train"), "pruning"),
    **dict.fromkeys(("hashing", "double_hashing", "freq_double_hashing", "qr", "memcom", "memcom_int8", "robe",
                     "truncate", "dhe", "cce"), "hashing"),
    **dict.fromkeys(("saec", "saec_int8", "pq", "dpq", "dpq_train"), "vector quantization"),
    **dict.fromkeys(("factorized", "tt"), "decomposition"),
}
"""Each registered method's family in the survey's taxonomy (§2 low precision, §3 mixed dimension and pruning,
§4 weight sharing: hashing, vector quantization, decomposition). CCE (hashed columns plus a k-means codebook)
and MEmCom count as hashing, Saec's k-means codebook as vector quantization."""

ACCURATE = 0.01
"""A method takes part in a timing or memory comparison when its accuracy is within ACCURATE of the budget's best,
relative to the best's size (1% of AUC or nDCG)."""

SURVEY = {
    "accuracy": ("mixed dimension methods, or quantization at a higher bit width (16 bits)",
                 ("mixed dimension", "low precision")),
    "inference": ("vector quantization (or binarization when accuracy matters less); avoid decompositions",
                  ("vector quantization", "low precision")),
    "training speed": ("most methods do not speed training up; avoid NAS, pruning, vector quantization and "
                       "decomposition", ()),
    "training memory": ("rule-based mixed dimension, hashing or decomposition (compressed before training), or "
                        "low-precision training; not vector quantization or NAS",
                        ("mixed dimension", "hashing", "decomposition", "low precision")),
}
"""§5.1's suggestion per requirement: the words (paraphrased) and the families it recommends."""


def family(method: str) -> str:
    """The survey family of a cell's method (settings such as ``hashing:hash=universal`` ignored)."""
    from saec.bench.grid import parse_method

    return FAMILY[parse_method(method)[0]]


def _accurate(agg: Aggregate, budget: str) -> list[str]:
    top = agg.ranked(budget)
    return [m for m, v in top if v >= top[0][1] - ACCURATE * abs(top[0][1])] if top else []


def _loads(agg: Aggregate, methods: list[str], budget: str) -> list[float]:
    return [r["loadavg_end"] for m in methods for r in agg.ok(m, budget) if "loadavg_end" in r]


def answers(aggs: dict[str, Aggregate]) -> dict[str, list[dict[str, Any]]]:
    """Per requirement, one row per (task, budget): the leading method, its value and family."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in SURVEY}
    for task, agg in aggs.items():
        for b in (x for x in agg.budgets if x != "full"):
            top = agg.ranked(b)
            if not top:
                continue
            inside = agg.ranked(b, IN_BUDGET)
            leader, value = top[0]
            out["accuracy"].append({"task": task, "budget": b, "method": leader, "value": value,
                                    "spread": agg.spread(leader, b), "inside": inside[0] if inside else None,
                                    "seeds": len(agg.values(leader, b))})
            pool = _accurate(agg, b)
            for req, what in (("inference", "latency1"), ("training speed", "epoch_s"),
                              ("training memory", "state_bytes")):
                vals = sorted((agg.axis(m, b, what), m) for m in pool if agg.axis(m, b, what) is not None)
                if vals:
                    tied = [m for v, m in vals if v == vals[0][0]]  # e.g. post-training methods: one full model
                    out[req].append({"task": task, "budget": b, "method": vals[0][1], "value": vals[0][0],
                                     "tied": tied, "pool": len(pool), "loads": _loads(agg, pool, b),
                                     "b4096": min((agg.axis(m, b, "latency4096"), m) for m in pool)[1]
                                     if req == "inference" else None})
    return out


def _leading_families(row: dict[str, Any]) -> set[str]:
    return {family(m) for m in row.get("tied", [row["method"]])}


def _tally(rows: list[dict[str, Any]]) -> str:
    counts = Counter(f for r in rows for f in _leading_families(r))
    tie = " (a tie counts for each family in it)" if any(len(r.get("tied", ())) > 1 for r in rows) else ""
    return ", ".join(f"{f} {n} of {len(rows)}" for f, n in counts.most_common()) + tie


def _verdict(rows: list[dict[str, Any]], req: str) -> str:
    if not rows:
        return "not measured"
    recommended = SURVEY[req][1]
    first = Counter(f for r in rows for f in _leading_families(r)).most_common(1)[0][0]
    if not recommended:
        return f"the survey recommends no family here; the most frequent leader is {first}"
    says = "one the survey recommends" if first in recommended else "not one the survey recommends"
    return f"the family most often first ({first}) is {says} ({', '.join(recommended)})"


def task_guide(task: str, agg: Aggregate) -> str:
    """One task's rows of :func:`answers` as a table: per budget the most accurate method, the most accurate
    trained within the budget, and the leaders on the other axes among the accurate methods (the count in
    brackets is the size of that pool)."""
    from saec.bench.report import markdown_table

    rows = answers({task: agg})
    by_budget = {req: {r["budget"]: r for r in rs} for req, rs in rows.items()}
    table = [["budget", "most accurate", "most accurate trained within the budget",
              f"accurate methods (within {ACCURATE:.0%})", "fastest inference (b=1)", "fastest training epoch",
              "least training state"]]
    for r in rows["accuracy"]:
        b, inside = r["budget"], r["inside"]
        row = [b, f"{r['method']} ({r['value']:.4f})", f"{inside[0]} ({inside[1]:.4f})" if inside else "—"]
        leaders = [by_budget[req].get(b) for req in ("inference", "training speed", "training memory")]
        row.append(str(leaders[0]["pool"]) if leaders[0] else "—")
        for req, lead in zip(("inference", "training speed", "training memory"), leaders):
            if lead is None:
                row.append("—")
                continue
            value = _fmt_bytes(lead["value"]) if req == "training memory" else (
                f"{lead['value']:.3f} ms" if req == "inference" else f"{lead['value']:.2f} s")
            row.append(f"{', '.join(lead['tied'])} ({value})")
        table.append(row)
    return markdown_table(table)


def guide_page(aggs: dict[str, Aggregate], commands: list[str]) -> str:
    """The page (module docstring) for the tasks in ``aggs``."""
    from saec.bench.report import markdown_table

    rows = answers(aggs)
    text = ("# Which method? The survey's §5.1 question, answered by the open benchmark\n\n"
            "Rendered by `saec bench render` from the raw records of every task under `records/`; reproduce the "
            "records with:\n\n```\n" + "\n".join(commands) + "\n```\n\n"
            f"Tasks: {', '.join(f'[{t}]({t}.md)' for t in aggs)}. Families are the survey's taxonomy "
            "(`saec.bench.guide.FAMILY`). For the timing and memory questions only the methods whose accuracy is "
            f"within {ACCURATE:.0%} of the budget's best take part.\n")
    acc = rows["accuracy"]
    text += (f"\n## Model accuracy\n\nSurvey §5.1: {SURVEY['accuracy'][0]}. Here: {_verdict(acc, 'accuracy')}; "
             f"leaders by family: {_tally(acc) or 'none'}.\n\n")
    table = [["task", "budget", "most accurate", "family", "seeds (spread)", "best trained within the budget",
              "family"]]
    for r in acc:
        inside = r["inside"]
        table.append([r["task"], r["budget"], f"{r['method']} ({r['value']:.4f})", family(r["method"]),
                      f"{r['seeds']} ({r['spread']:.4f})" if r["seeds"] > 1 else "1 (no spread)",
                      f"{inside[0]} ({inside[1]:.4f})" if inside else "—", family(inside[0]) if inside else "—"])
    text += markdown_table(table)
    for req, title, unit in (("inference", "Inference efficiency (latency at batch 1)", "ms"),
                             ("training speed", "Training efficiency (seconds per epoch)", "s"),
                             ("training memory", "Training memory (training-state bytes)", "bytes")):
        rs = rows[req]
        text += (f"\n## {title}\n\nSurvey §5.1: {SURVEY[req][0]}. Here: {_verdict(rs, req)}; leaders by family: "
                 f"{_tally(rs) or 'none'}.\n\n")
        head = ["task", "budget", "accurate methods", f"best ({unit})", "family"]
        table = [head + (["fastest at batch 4096"] if req == "inference" else [])
                 + ([] if req == "training memory" else ["load average of their cells"])]
        for r in rs:
            value = _fmt_bytes(r["value"]) if unit == "bytes" else f"{r['value']:.3f}"
            row = [r["task"], r["budget"], str(r["pool"]), f"{', '.join(r['tied'])} ({value})",
                   ", ".join(dict.fromkeys(family(m) for m in r["tied"]))]
            if req == "inference":
                row.append(r["b4096"])
            if req != "training memory":
                row.append(f"{min(r['loads']):.1f} to {max(r['loads']):.1f}" if r["loads"] else "not recorded")
            table.append(row)
        text += markdown_table(table)
    text += ("\nTraining-state bytes count the parameters, buffers, gradients and optimizer state of the model that "
             "was trained: a post-training method (Saec, PQ, int8, ...) is charged the full model it compresses "
             "(so those tie with one another). Latency and seconds per epoch are medians measured in each cell's own "
             "process while other work may have shared the machine (the load average column says how much).\n")
    return text


__all__ = ["ACCURATE", "FAMILY", "SURVEY", "answers", "family", "guide_page", "task_guide"]
