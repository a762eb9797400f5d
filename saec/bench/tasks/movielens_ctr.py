"""MovieLens-1M CTR as a :mod:`saec.bench.grid` task: the DSSM ``saec train`` trains (MLP 256-128), label =
rating >= 4, train/valid/test cut by time (:func:`saec.data.movielens.movielens_ctr`), Adagrad at lr 0.01 in
batches of 1024 (:class:`saec.train.loop.TrainConfig`), one epoch (as docs/results/survey_methods.md; a static
benchmark's budget). The large fields (at least 1,000 features: user, item, zip) take the method's tables; the
small ones stay full. A model state is chosen on the validation split; test AUC and log loss are reported.
Post-training methods retrain one epoch with :func:`saec.pipeline.flow.retrain`, Saec's retraining.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from saec.bench.tasks import BYTE_BUDGETS

HIDDEN = (256, 128)
EPOCHS = 1


class MovieLensCTR:
    """The task (module docstring)."""

    name = "movielens_ctr"
    metric = "auc"
    select_split = "valid"
    report_split = "test"
    budgets = BYTE_BUDGETS
    extra_methods: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": "movielens-1m", "model": f"DSSM, MLP {HIDDEN}", "epochs": EPOCHS,
                "optimizer": "Adagrad lr 0.01, batch 1024", "metric": "test AUC (state chosen on validation)"}

    def prepare(self, cache: Any = None) -> dict[str, Any]:
        from saec.data.movielens import movielens_ctr
        from saec.models import large_fields

        task = movielens_ctr("movielens-1m", cache)
        return {"task": task, "large": large_fields(task.schema, task.vocabs)}

    def tables(self, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
        task = data["task"]
        return {n: {"rows": len(task.vocabs[n]), "dim": task.schema[n].dim, "counts": task.vocabs[n].counts}
                for n in data["large"]}

    def method_hyper(self, method: str, data: dict[str, Any], table: str) -> dict[str, Any]:
        """The model's own table settings (init_std 0.01, sparse gradients for Adagrad) where a method takes them."""
        from saec.nn.registry import METHODS

        structure = METHODS[method].structure()
        return {k: v for k, v in (("init_std", 0.01), ("sparse", True)) if k in structure}

    def model(self, data: dict[str, Any], seed: int, tables: dict[str, nn.Module]) -> nn.Module:
        from saec.models import build_model

        task = data["task"]
        sizes = {n: len(v) for n, v in task.vocabs.items()}
        return build_model("dssm", task.schema, sizes, hidden=HIDDEN, seed=seed, tables=tables or None)

    def get_table(self, model: nn.Module, name: str) -> nn.Module:
        return model.embeddings.tables[name]

    def set_table(self, model: nn.Module, name: str, table: nn.Module) -> None:
        model.embeddings.replace(name, table)

    def _config(self, seed: int) -> Any:
        from saec.train.loop import TrainConfig

        return TrainConfig(seed=seed, progress=False)

    def fit(self, model: nn.Module, data: dict[str, Any], seed: int) -> dict[str, Any]:
        from saec.bench.grid import training_state_bytes
        from saec.train.loop import make_optimizer, train_epoch

        optimizer = make_optimizer(model, self._config(seed))
        history = []
        for epoch in range(EPOCHS):
            h = train_epoch(model, data["task"].train, optimizer, seed=seed * 1000 + epoch, progress=False)
            history.append({"epoch": epoch, "train_loss": h["loss"], "seconds": h["seconds"]})
        return {"history": history, "state_bytes": training_state_bytes(model, optimizer)}

    def retrain(self, model: nn.Module, data: dict[str, Any], seed: int) -> float:
        from saec.pipeline.flow import retrain

        return retrain(model, data["task"].train, self._config(seed))

    def evaluate(self, model: nn.Module, data: dict[str, Any]) -> dict[str, dict[str, float]]:
        from saec.train.loop import evaluate

        return {"valid": evaluate(model, data["task"].valid), "test": evaluate(model, data["task"].test)}

    def example(self, data: dict[str, Any], n: int) -> dict[str, Any]:
        ids, _ = next(iter(data["task"].test.batches(n)))
        return ids


__all__ = ["MovieLensCTR"]
