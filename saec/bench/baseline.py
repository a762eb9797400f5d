"""Baseline CTR models on MovieLens-1M: test AUC / log loss, training time and throughput.

:func:`run` trains each model of the config with early stopping on valid AUC (:func:`saec.train.loop.fit`) and
returns the raw record; :func:`render` writes the page from the record alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from saec.bench.report import (checksums, environment, header, markdown_table, peak_rss_mib, peak_rss_text,
                               recorded_environment)
from saec.io import write_text
from saec.train.loop import TrainConfig


@dataclass(frozen=True)
class BaselineConfig:
    """What :func:`run` trains: ``models`` on ``dataset``, Adagrad at ``lr``, up to ``epochs`` epochs with early
    stopping after ``patience`` epochs without a better valid AUC."""

    dataset: str = "movielens-1m"
    models: tuple[str, ...] = ("dssm", "deepfm")
    epochs: int = 10
    patience: int = TrainConfig.patience
    lr: float = 0.01
    batch_size: int = 1024


def run(cfg: BaselineConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Train and evaluate every model of ``cfg``; the raw record as plain data."""
    from saec.data import movielens
    from saec.models import build_model
    from saec.nn.base import param_count
    from saec.train.loop import evaluate, fit

    start = time.perf_counter()
    movielens.fetch(cfg.dataset)
    t0 = time.perf_counter()
    task = movielens.movielens_ctr(cfg.dataset)
    load_s = time.perf_counter() - t0
    tcfg = TrainConfig(lr=cfg.lr, epochs=cfg.epochs, patience=cfg.patience, batch_size=cfg.batch_size, progress=False)
    models = []
    for name in cfg.models:
        model = build_model(name, task.schema, task.num_embeddings)
        history = fit(model, task.train, task.valid, tcfg)
        models.append({"model": name, "best_epoch": history.best_epoch,
                       "epochs": [{"valid_auc": e["valid_auc"], "seconds": e["seconds"]} for e in history.epochs],
                       "test": evaluate(model, task.test), "valid": evaluate(model, task.valid),
                       "params": param_count(model), "embedding_params": param_count(model.embeddings)})
        if progress:
            print(f"{name}: test AUC {models[-1]['test']['auc']:.4f}", flush=True)
    return {"command": command, "config": asdict(cfg), "environment": environment(),
            "task": {"summary": task.summary(), "train_rows": len(task.train)}, "load_s": load_s, "models": models,
            "wall_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def render(record: dict[str, Any], md_path: str | Path) -> None:
    """The page of a :func:`run` record."""
    cfg, task = record["config"], record["task"]
    rows = [["model", "epochs run (best)", "test AUC", "test log loss", "valid AUC", "train s (total)",
             "s / epoch", "samples / s", "params (embeddings)"]]
    for m in record["models"]:
        secs = [e["seconds"] for e in m["epochs"]]
        rows.append([m["model"], f"{len(secs)} ({m['best_epoch']})", f"{m['test']['auc']:.4f}",
                     f"{m['test']['logloss']:.4f}", f"{m['valid']['auc']:.4f}", f"{sum(secs):.1f}",
                     f"{sum(secs) / len(secs):.1f}", f"{task['train_rows'] * len(secs) / sum(secs):,.0f}",
                     f"{m['params']:,} ({m['embedding_params']:,})"])
    text = header(f"Baseline CTR models on {cfg['dataset']}", record["command"],
                  recorded_environment(record.get("environment")), checksums(record))
    text += (f"\nTask: label = rating >= 4; split by timestamp 80/10/10; vocabularies from the training split "
             f"only (unseen users/zips in valid/test map to the OOV vector).\n\n```\n{task['summary']}\n```\n\n"
             f"Training: Adagrad lr {cfg['lr']}, batch {cfg['batch_size']}, up to {cfg['epochs']} epochs, early "
             f"stopping on valid AUC with patience {cfg['patience']}; the best epoch's weights are evaluated. "
             f"Loading and encoding the data took {record['load_s']:.1f} s. Peak RSS "
             f"{peak_rss_text(record.get('peak_rss_mib'))}.\n\n")
    text += markdown_table(rows)
    text += "\nPer epoch (valid AUC, seconds):\n\n"
    width = max(len(m["epochs"]) for m in record["models"])
    text += markdown_table([["model", *[f"epoch {i + 1}" for i in range(width)]]] + [
        [m["model"], *[f"{e['valid_auc']:.4f} ({e['seconds']:.1f} s)" for e in m["epochs"]],
         *[""] * (width - len(m["epochs"]))] for m in record["models"]])
    write_text(md_path, text)


__all__ = ["BaselineConfig", "render", "run"]
