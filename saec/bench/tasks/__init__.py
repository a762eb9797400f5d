"""The benchmark's tasks (:mod:`saec.bench.grid`): each a data set, a model, a training loop and its metrics.

A task object has ``name``, ``metric`` (the accuracy key, higher is better), ``select_split`` (the split that
picks a model state) and ``report_split`` (the split reported), ``budgets`` (its default budgets),
``extra_methods`` (method variants it adds to the registered ones), and ``describe()``, ``prepare(cache)``,
``tables(data)``, ``method_hyper(method, data, table)``, ``model(data, seed, tables)``,
``get_table``/``set_table``, ``fit(model, data, seed)`` (returns ``history`` with per-epoch ``seconds``,
``state_bytes``), ``retrain(model, data, seed)`` (one epoch; seconds), ``evaluate(model, data)`` ({split:
metrics}) and ``example(data, n)`` (a model input of n samples).
"""

from __future__ import annotations

from typing import Any

from saec.errors import SaecError

BYTE_BUDGETS = ("1/2", "1/4", "1/16", "1/64", "1/256", "1/1000")
"""The benchmark's own budgets (issue 13): each compressed table at most this share of its float32 bytes."""


def _tasks() -> dict[str, Any]:
    from saec.bench.tasks.cce_gmf import CceGmf
    from saec.bench.tasks.movielens_ctr import MovieLensCTR
    from saec.bench.tasks.movielens_rank import MovieLensRank
    from saec.bench.tasks.synthetic_gmf import SyntheticGMF
    from saec.bench.tasks.synthetic_trace import SyntheticTraceCTR

    return {t.name: t for t in (CceGmf, MovieLensCTR, MovieLensRank, SyntheticTraceCTR, SyntheticGMF)}


def task_names() -> list[str]:
    """Names of the benchmark's tasks."""
    return list(_tasks())


def get_task(name: str) -> Any:
    """A fresh task object by name."""
    tasks = _tasks()
    if name not in tasks:
        raise SaecError(f"unknown benchmark task {name!r}; tasks are {list(tasks)}")
    return tasks[name]()


__all__ = ["BYTE_BUDGETS", "get_task", "task_names"]
