"""Baseline CTR models on MovieLens-1M: test AUC / log loss, training time and throughput.

Writes docs/results/baseline.md. Run from the repository root:

    python benchmarks/baseline.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from saec.bench.report import header, markdown_table, peak_rss_mib
from saec.data import movielens
from saec.io import write_text
from saec.models import build_model
from saec.train.loop import TrainConfig, evaluate, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="movielens-1m", choices=sorted(movielens.SOURCES))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path("docs/results/baseline.md"))
    args = ap.parse_args()

    movielens.fetch(args.dataset)
    t0 = time.perf_counter()
    task = movielens.movielens_ctr(args.dataset)
    load_s = time.perf_counter() - t0
    cfg = TrainConfig(lr=args.lr, epochs=args.epochs, batch_size=args.batch_size, progress=False)

    rows = [["model", "epochs run (best)", "test AUC", "test log loss", "valid AUC", "train s (total)",
             "s / epoch", "samples / s", "params (embeddings)"]]
    curves = []
    for name in ("dssm", "deepfm"):
        model = build_model(name, task.schema, task.num_embeddings)
        history = fit(model, task.train, task.valid, cfg)
        test, valid = evaluate(model, task.test), evaluate(model, task.valid)
        secs = [e["seconds"] for e in history.epochs]
        n_params = sum(p.numel() for p in model.parameters())
        n_emb = sum(p.numel() for p in model.embeddings.parameters())
        rows.append([name, f"{len(secs)} ({history.best_epoch})", f"{test['auc']:.4f}", f"{test['logloss']:.4f}",
                     f"{valid['auc']:.4f}", f"{sum(secs):.1f}", f"{sum(secs) / len(secs):.1f}",
                     f"{len(task.train) * len(secs) / sum(secs):,.0f}", f"{n_params:,} ({n_emb:,})"])
        curves.append((name, history))
        print(" | ".join(rows[-1]), flush=True)

    text = header(f"Baseline CTR models on {args.dataset}", ["python", "benchmarks/baseline.py", *sys.argv[1:]])
    text += (f"\nTask: label = rating >= 4; split by timestamp 80/10/10; vocabularies from the training split "
             f"only (unseen users/zips in valid/test map to the OOV vector).\n\n```\n{task.summary()}\n```\n\n"
             f"Training: Adagrad lr {cfg.lr}, batch {cfg.batch_size}, up to {cfg.epochs} epochs, early stopping "
             f"on valid AUC with patience {cfg.patience}; the best epoch's weights are evaluated. "
             f"Loading and encoding the data took {load_s:.1f} s. Peak RSS {peak_rss_mib():,.0f} MiB.\n\n")
    text += markdown_table(rows)
    text += "\nPer epoch (valid AUC, seconds):\n\n"
    width = max(len(h.epochs) for _, h in curves)
    text += markdown_table([["model", *[f"epoch {i + 1}" for i in range(width)]]] + [
        [n, *[f"{e['valid_auc']:.4f} ({e['seconds']:.1f} s)" for e in h.epochs], *[""] * (width - len(h.epochs))]
        for n, h in curves])
    write_text(args.out, text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
