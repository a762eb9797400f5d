"""Saec's production loop as a tool: train -> compress -> retrain -> evaluate -> publish, resumable.

Saec §2.1 (Fig. 2) and §3.1: every period (an hour in the paper) the vocabularies admit the new segment's
features and the full model's tables grow (Adagrad state carried), the full model trains one epoch on the
segment, a compressed copy is made from it (Saec by default; any post-training method of the registry),
the copy is retrained one epoch on the same segment, both are evaluated on the next segment (progressive
validation), and the compressed model is published for serving. The full model keeps training from its
own weights; the compressed model is rebuilt from it every period.

Everything of a run lives in one folder (:class:`PeriodicRun`)::

    DIR/periodic.json            the run's settings and source, checksummed (a resumed run must match them)
    DIR/log.jsonl                one line per segment, each checksummed (rewritten atomically from the
                                 checkpoint's rows)
    DIR/serving/v000007/         published models (saec model artifacts), the last ``keep`` versions
    DIR/serving/current          symlink to the newest version, switched by one rename
    DIR/checkpoints/000008/      the state after segment 7: full model, optimizer, vocabularies, random
                                 state, log rows; written whole under a new name, older ones removed after

Resume: starting the same run again (same settings, same folder) continues after the newest checkpoint;
a segment that was under way when the process died is done again from the checkpoint's state, published
versions newer than the checkpoint are withdrawn first. Every random draw is seeded (model init, shuffles
``seed + segment``, new rows from the run's own generator whose state is checkpointed, k-means' seed), the
tensors are restored bit for bit: a resumed run ends with the same model as an uninterrupted one, bit for
bit, on the tiny trace (tests/test_periodic.py). At the large trace's size two uninterrupted runs of one
command already differ by float rounding (AUC within a few 1e-4, growing over hours; not yet traced to the
kernel), so there a resumed run matches an uninterrupted one only within that noise.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from saec import __version__
from saec.artifact import canonical, json_bytes, read_artifact, recognise, sha256, write_file, write_folder, write_tensors
from saec.config import check_bool, check_choice, check_int
from saec.data.segments import SegmentSource, as_source
from saec.errors import SaecError, SaecFileExistsError
from saec.io import read_jsonl, read_vocabs, vocab_parts, write_jsonl
from saec.models import build_model
from saec.nn.clustered import ClusteredEmbedding
from saec.nn.registry import POST_TRAINING
from saec.pipeline.flow import RETRAIN_FIELDS, RETRAIN_NETWORK, carry_optimizer, freeze_full_fields, retrain
from saec.train.loop import TrainConfig, evaluate, make_optimizer, train_epoch
from saec.train.stream import StreamingRun

RETRAIN_ON = ("labels", "full", "auto")
RUN_FILE, LOG_FILE, SERVING, CHECKPOINTS, CURRENT = "periodic.json", "log.jsonl", "serving", "checkpoints", "current"
RUN_FORMAT, CHECKPOINT_KIND = "saec-periodic-run", "saec-checkpoint"
PREFIX = "embeddings.tables."
_VERSION = re.compile(r"v(\d{6,})")
_CHECKPOINT = re.compile(r"(\d{6,})")


@dataclass
class PeriodicConfig:
    """How the loop compresses, retrains and publishes.

    Attributes:
        method: a post-training method (:data:`~saec.nn.registry.POST_TRAINING`), ``"saec"`` by default.
        hyper: the method's settings (Saec: ``k``, ``top_n``, ``init``, ``niter``, ``seed``, ``grad_mode``,
            ``eligibility``), as :func:`saec.compress` takes them.
        budget, ratio: bytes per table, or float32 bytes / ratio per table: sets the method's knob.
        min_rows: tables with fewer rows stay full (default: 1 for Saec methods, whose eligibility rule
            decides, 1000 for the others).
        retrain_on: the retraining epoch's targets: ``"labels"`` (the paper), ``"full"`` (the full model's
            predicted probabilities) or ``"auto"``: on the first segment where a table is compressed, give
            a copy of the full model the same extra epoch on the same segment and compare it with the full
            model on the next segment; if the extra epoch raises the AUC, label retraining is sound and
            ``labels`` is chosen, else ``full`` (docs/results/trace_retrain.md: at lr 0.001 an extra epoch
            helps and label retraining wins, at lr 0.01 it hurts and ``full`` wins). The choice and its
            evidence are logged.
        retrain_fields: what the retraining epoch trains besides the network: ``"compressed"`` (the compressed
            tables and their OOV vectors; fields left full keep the full model's values,
            :func:`~saec.pipeline.flow.freeze_full_fields`) or ``"all"`` (every table, as in the paper).
        retrain_network: with ``retrain_fields="compressed"``, what of the network retraining trains:
            ``"all"`` (every weight) or ``"compressed"`` (all but the first layer's columns that read the
            frozen fields, whose share is then computed once per segment;
            :data:`~saec.pipeline.flow.RETRAIN_NETWORK`). Only the DSSM with Adagrad or SGD has such a share;
            other models train the whole network either way. ``None`` (default): ``"compressed"`` with
            ``retrain_fields="compressed"``, else ``"all"``.
        carry_state: retraining continues the full model's Adagrad state (:func:`~saec.pipeline.flow.carry_optimizer`)
            instead of a fresh optimizer.
        warm_start: Saec's k-means starts from the field's previous codebook with ``warm_niter`` Lloyd
            iterations instead of ``init`` with ``niter`` (not in the paper, which re-clusters every hour).
            ``None`` (default): on wherever it applies (method ``saec`` with a fixed ``k``, no budget or
            ratio), off otherwise; ``False`` is the paper's re-clustering from scratch every segment.
        keep: published versions kept in ``serving/``.
        checkpoint_every: segments between checkpoints (1: after every segment).
        model, hidden, min_count, train: the full model (see :class:`~saec.train.stream.StreamingRun`).
    """

    method: str = "saec"
    hyper: dict[str, Any] = field(default_factory=dict)
    budget: int | None = None
    ratio: float | None = None
    min_rows: int | None = None
    retrain_on: str = "auto"
    retrain_fields: str = "compressed"
    retrain_network: str | None = None
    carry_state: bool = False
    warm_start: bool | None = None
    warm_niter: int = 2
    keep: int = 3
    checkpoint_every: int = 1
    model: str = "dssm"
    hidden: tuple[int, ...] = (256, 128)
    min_count: int = 1
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from saec.compression import CLUSTERING, _check_settings, DEFAULT_ELIGIBILITY

        self.method = check_choice("method", self.method, POST_TRAINING)
        self.retrain_on = check_choice("retrain_on", self.retrain_on, RETRAIN_ON)
        self.retrain_fields = check_choice("retrain_fields", self.retrain_fields, RETRAIN_FIELDS)
        if self.retrain_network is None:  # where it applies: some fields are frozen
            self.retrain_network = "compressed" if self.retrain_fields == "compressed" else "all"
        self.retrain_network = check_choice("retrain_network", self.retrain_network, RETRAIN_NETWORK)
        if self.retrain_network == "compressed" and self.retrain_fields == "all":
            raise SaecError("retrain_network='compressed' keeps the first-layer weights of the fields retraining "
                            "freezes; with retrain_fields='all' no field is frozen: use retrain_fields='compressed'")
        self.carry_state = check_bool("carry_state", self.carry_state)
        if self.warm_start is None:  # where it applies: Saec with a k that stays fixed as tables grow
            self.warm_start = self.method == "saec" and self.budget is None and self.ratio is None
        self.warm_start = check_bool("warm_start", self.warm_start)
        self.warm_niter = check_int("warm_niter", self.warm_niter, 1)
        self.keep = check_int("keep (published versions kept)", self.keep, 1)
        self.checkpoint_every = check_int("checkpoint_every", self.checkpoint_every, 1)
        self.min_count = check_int("min_count", self.min_count, 1)
        self.hidden = tuple(check_int("hidden width", h, 1) for h in self.hidden)
        if not isinstance(self.hyper, dict):
            raise SaecError(f"hyper must be a dict of the method's settings, got {type(self.hyper).__name__}")
        if self.budget is not None and self.ratio is not None:
            raise SaecError("give at most one of budget (bytes per table) and ratio")
        if self.budget is not None:
            self.budget = check_int("budget (bytes per table)", self.budget, 1)
        hyper = dict(self.hyper)
        eligibility = hyper.pop("eligibility", DEFAULT_ELIGIBILITY) if self.method in CLUSTERING else None
        _check_settings(self.method, hyper, eligibility)  # every setting before any segment is read
        if self.warm_start:
            if self.method != "saec":
                raise SaecError(f"warm_start applies to method 'saec' (k-means from the previous codebook), not "
                                f"{self.method!r}")
            if self.budget is not None or self.ratio is not None:
                raise SaecError("warm_start needs a fixed k (the previous codebook's shape); it does not combine "
                                "with budget or ratio, which let k change as tables grow")
        if self.min_rows is None:
            self.min_rows = 1 if self.method in CLUSTERING else 1000
        self.min_rows = check_int("min_rows", self.min_rows, 1)

    def effective_hyper(self) -> dict[str, Any]:
        """``hyper`` with every unset setting at the method's default (so that ``{"k": 4}`` and the CLI's
        explicit defaults describe the same run)."""
        import inspect

        from saec.compression import CLUSTERING, DEFAULT_ELIGIBILITY
        from saec.nn.registry import METHODS

        spec = METHODS[self.method]
        out = {n: p.default for n, p in inspect.signature(spec.cls._from_weight).parameters.items()
               if n not in ("weight", "counts", "init_codebook") and p.default is not inspect.Parameter.empty
               and n not in spec.fixed}
        if self.method in CLUSTERING:
            out["eligibility"] = DEFAULT_ELIGIBILITY
        if self.budget is not None or self.ratio is not None:
            out.pop(spec.knobs[0].name, None) if spec.knobs else None  # set by the budget
        return {**out, **self.hyper}

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (everything that changes results; not ``keep``,
        ``checkpoint_every`` or progress bars)."""
        train = {k: v for k, v in dataclasses.asdict(self.train).items() if k != "progress"}
        return {"method": self.method, "hyper": self.effective_hyper(), "budget": self.budget, "ratio": self.ratio,
                "min_rows": self.min_rows, "retrain_on": self.retrain_on,
                "retrain_fields": self.retrain_fields, "carry_state": self.carry_state,
                "warm_start": self.warm_start, "warm_niter": self.warm_niter if self.warm_start else None,
                "model": self.model, "hidden": list(self.hidden), "min_count": self.min_count, "train": train,
                # only when not "all", which runs recorded before the setting existed did
                **({"retrain_network": self.retrain_network} if self.retrain_network != "all" else {})}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{where}.{k}" if where else k)
        return out
    return [] if a == b else [f"{where}: {a!r} here, {b!r} in this command"]


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, tuples to lists."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


def read_run_file(path: Path) -> dict[str, Any]:
    """A periodic run's ``periodic.json`` (format and settings), its checksum verified."""
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
        body = {k: v for k, v in record.items() if k != "sha256"}
        ok = record.get("format") == RUN_FORMAT and record.get("sha256") == sha256(canonical(body))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise SaecError(f"{path} is damaged or not written by saec (its checksum does not match); the run in "
                        f"{path.parent} cannot be resumed safely")
    return record


class PeriodicRun:
    """The loop over ``source`` with ``cfg``, keeping everything in the folder ``out``.

    ``out`` is created if missing (or empty). An existing run folder with the same settings and source
    is resumed after its newest checkpoint; one with other settings, or any other non-empty folder, is
    refused before any work. ``inputs`` are the user's data paths (``out`` may not overlap them).
    """

    def __init__(self, source: SegmentSource, cfg: PeriodicConfig, out: str | Path,
                 inputs: Iterable[str | Path | None] = ()) -> None:
        self.source, self.cfg, self.out = as_source(source), cfg, Path(out)
        self.settings = _plain({"source": self.source.describe(), **cfg.identity()})
        self._open(list(inputs))
        self.stream = StreamingRun(self.source, cfg.model, cfg.train, cfg.hidden, cfg.min_count)
        self.rows: list[dict[str, Any]] = []
        self.retrain_choice: dict[str, Any] | None = None  # auto's decision and evidence
        self.codebooks: dict[str, np.ndarray] = {}  # previous k-means centroids per field (warm start)
        self.done = 0  # segments trained, compressed and published
        self.resumed_from: int | None = None
        self._restore()

    # -- the run folder ------------------------------------------------------------------------------
    def _open(self, inputs: list) -> None:
        out = self.out
        run_file = out / RUN_FILE
        record = {"format": RUN_FORMAT, "version": 1, "saec_version": __version__, "settings": self.settings}
        if out.is_dir() and not out.is_symlink() and run_file.exists():
            theirs = read_run_file(run_file)
            diff = _differences(theirs["settings"], self.settings)
            if diff:
                raise SaecFileExistsError(
                    f"{out} holds a periodic run with other settings ({'; '.join(diff[:4])}"
                    f"{' ...' if len(diff) > 4 else ''}); resume it with its own settings or choose another --out")
            self._refuse_inputs(inputs)
            self._remove_leftovers()
            return
        if out.exists() or out.is_symlink():
            if out.is_symlink() or not out.is_dir():
                raise SaecFileExistsError(f"--out {out} is an existing {'symlink' if out.is_symlink() else 'file'}; "
                                          f"a periodic run needs a folder of its own")
            if any(out.iterdir()):
                raise SaecFileExistsError(f"--out {out} is a folder that is not a saec periodic run (no {RUN_FILE}); "
                                          f"saec never writes into a folder it did not create: choose another --out")
        self._refuse_inputs(inputs)
        out.mkdir(parents=True, exist_ok=True)
        signed = {**record, "sha256": sha256(canonical(record))}
        write_file_atomic(run_file, json_bytes(signed))

    def _remove_leftovers(self) -> None:
        """Temporary files of atomic writes a killed process left (their names are saec's own)."""
        for folder, names in ((self.out, (RUN_FILE, LOG_FILE)), (self.serving, (CURRENT,))):
            for name in names:
                for p in folder.glob(f".{name}.*.saec-tmp") if folder.is_dir() else ():
                    if p.is_file() or p.is_symlink():
                        p.unlink()

    def _refuse_inputs(self, inputs: list) -> None:
        target = Path(os.path.realpath(self.out))
        for given in inputs:
            if given is None:
                continue
            src = Path(os.path.realpath(given))
            if target == src or target.is_relative_to(src) or src.is_relative_to(target):
                raise SaecError(f"--out {self.out} is, holds or lies inside the input {given}; saec never writes over "
                                f"its inputs: choose another --out")

    # -- checkpoints ----------------------------------------------------------------------------------
    def _checkpoints(self) -> list[tuple[int, Path]]:
        folder = self.out / CHECKPOINTS
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.fullmatch(p.name))]
        return sorted(found)

    def _save_checkpoint(self) -> None:
        run, h = self.stream, self.done
        model, opt = run.model, run.optimizer
        tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
        opt_state = opt.state_dict()
        keys = {}
        for idx, state in opt_state["state"].items():
            keys[str(idx)] = {}
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"optimizer/{idx}/{key}"] = value.to_dense() if value.is_sparse else value
                    keys[str(idx)][key] = "tensor"
                else:
                    keys[str(idx)][key] = value
        vocabs, vocab_tensors = vocab_parts(run.vocabs)
        tensors.update(vocab_tensors)
        for name, cb in self.codebooks.items():
            tensors[f"codebook/{name}"] = torch.from_numpy(cb)
        tensors["rng/growth"] = run.generator.get_state()
        state = {"next_segment": h, "rows": self.rows, "retrain_choice": self.retrain_choice,
                 "optimizer": {"param_groups": opt_state["param_groups"], "state": keys},
                 "vocabs": vocabs, "model_config": model.config, "settings_sha256": sha256(canonical(self.settings))}

        def fill(tmp: Path) -> None:
            write_file(tmp / "state.json", json_bytes(_plain(state)))
            write_tensors(tmp / "tensors.safetensors", tensors)

        folder = self.out / CHECKPOINTS
        write_folder(folder / f"{h:06d}", CHECKPOINT_KIND, fill, {"segment": h - 1}, overwrite=True)
        for n, p in self._checkpoints():  # the new one is complete: older ones go (only saec's own)
            if n < h and _is_kind(p, CHECKPOINT_KIND):
                shutil.rmtree(p)

    def _restore(self) -> None:
        found = self._checkpoints()
        if not found:
            self._rollback_serving(None)
            return
        n, path = found[-1]
        art = read_artifact(path, CHECKPOINT_KIND, "checkpoint")
        art.need(["state.json", "tensors.safetensors"])
        state, tensors = art.json("state.json"), art.tensors("tensors.safetensors")
        if state.get("settings_sha256") != sha256(canonical(self.settings)):
            raise SaecError(f"{path} was written with other settings than {self.out / RUN_FILE}; not resuming from it")
        run, cfg = self.stream, self.cfg
        schema = self.source.schema
        mc = state["model_config"]
        run.vocabs.update(read_vocabs(path / "state.json", path / "tensors.safetensors", state["vocabs"],
                                      {k: v for k, v in tensors.items() if k.startswith("vocab_")},
                                      mc["num_embeddings"]))
        run.model = build_model(mc["name"], schema, mc["num_embeddings"], hidden=tuple(mc["hidden"]),
                                dropout=mc["dropout"], seed=mc["seed"], init_std=mc["init_std"], sparse=mc["sparse"])
        run.model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
        run.optimizer = make_optimizer(run.model, cfg.train)
        opt = state["optimizer"]
        opt_state = {int(idx): {key: tensors[f"optimizer/{idx}/{key}"] if kind == "tensor" else kind
                                for key, kind in keys.items()} for idx, keys in opt["state"].items()}
        run.optimizer.load_state_dict({"state": opt_state, "param_groups": opt["param_groups"]})
        run.generator.set_state(tensors["rng/growth"])
        self.codebooks = {k[len("codebook/"):]: v.numpy() for k, v in tensors.items() if k.startswith("codebook/")}
        self.rows, self.retrain_choice, self.done = state["rows"], state["retrain_choice"], state["next_segment"]
        self._recover_checkpoint_seconds()
        self.resumed_from = n
        self._check_same_stream()
        self._rollback_serving(self.done - 1)
        self._write_log()

    def _recover_checkpoint_seconds(self) -> None:
        """The last checkpointed row was saved before its own checkpoint was timed; the log written after it
        has that time. Taken from the log only if the rest of the row is the checkpoint's, exactly."""
        if not self.rows or "checkpoint_s" in self.rows[-1] or not (self.out / LOG_FILE).is_file():
            return
        i = len(self.rows) - 1
        try:
            logged = read_jsonl(self.out / LOG_FILE)[i]
        except (IndexError, SaecError):  # a damaged or older log: the checkpoint's row stands as it is
            return
        if isinstance(logged, dict) and {k: v for k, v in logged.items() if k != "checkpoint_s"} == self.rows[i] \
                and isinstance(logged.get("checkpoint_s"), float):
            self.rows[i]["checkpoint_s"] = logged["checkpoint_s"]

    def _check_same_stream(self) -> None:
        if not self.rows:
            return
        want = [r["name"] for r in self.rows] + [self.rows[-1]["test_name"]]
        if len(self.source) < len(want):
            raise SaecError(f"the source has {len(self.source)} {self.source.unit} but the run in {self.out} already "
                            f"used {len(want)}; it is not the stream this run was trained on")
        got = self.source.names_of(len(want))
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                raise SaecError(f"segment {i} of the source is {b!r}, but the run in {self.out} used {a!r} "
                                f"there (to train or test on); it is not the same stream")

    # -- publishing -------------------------------------------------------------------------------------
    @property
    def serving(self) -> Path:
        return self.out / SERVING

    def versions(self) -> list[tuple[int, Path]]:
        """Published versions (segment, folder), oldest first."""
        if not self.serving.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in self.serving.iterdir() if (m := _VERSION.fullmatch(p.name)))

    def _switch(self, target: str | None) -> None:
        link = self.serving / CURRENT
        if target is None:
            if link.is_symlink():
                link.unlink()
            return
        tmp = self.serving / f".{CURRENT}.{os.getpid()}.saec-tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)  # one rename: a reader sees the old version or the new one

    def _rollback_serving(self, segment: int | None) -> None:
        """Withdraw versions newer than the checkpoint (a segment under way when the process died)."""
        newer = [(n, p) for n, p in self.versions() if segment is None or n > segment]
        if not newer:
            return
        keep = [p for n, p in self.versions() if segment is not None and n <= segment]
        self._switch(keep[-1].name if keep else None)
        for _, p in newer:
            if _is_kind(p, "saec-model"):
                shutil.rmtree(p)

    def _publish(self, compressed: nn.Module, row: dict[str, Any]) -> Path:
        from saec.io import save_model

        h = row["segment"]
        info = {"segment": h, "name": row["name"], "test_name": row["test_name"],
                "metrics": {k: row[k] for k in ("compressed_auc", "compressed_logloss", "full_auc", "full_logloss")},
                "sizes": {k: row[k] for k in ("features", "vectors_before", "vectors_after", "bytes_before",
                                              "bytes_after", "ratio")},
                "method": self.cfg.method, "settings": self.settings, "retrain_on": row["retrain_on"],
                "versions": {"saec": __version__, "torch": str(torch.__version__)}}
        path = save_model(self.serving / f"v{h:06d}", compressed, self.stream.vocabs, {"published": _plain(info)},
                          overwrite=True)
        self._switch(path.name)
        versions = self.versions()
        for _, p in versions[: max(0, len(versions) - self.cfg.keep)]:
            if _is_kind(p, "saec-model"):
                shutil.rmtree(p)
        return path

    def _write_log(self) -> None:
        write_jsonl(self.out / LOG_FILE, self.rows)

    # -- the loop ---------------------------------------------------------------------------------------
    def _compress(self) -> tuple[nn.Module, Any, float]:
        from saec.compression import compress

        run, cfg = self.stream, self.cfg
        counts = {PREFIX + n: v.counts for n, v in run.vocabs.items()}
        hyper = dict(cfg.hyper)
        table_hyper = None
        if cfg.warm_start and self.codebooks:
            k = hyper.get("k", 100)
            table_hyper = {PREFIX + n: {"init_codebook": cb, "niter": cfg.warm_niter}
                           for n, cb in self.codebooks.items() if cb.shape[0] == k}
        start = time.perf_counter()
        compressed, report = compress(run.model, cfg.method, counts=counts, budget=cfg.budget, ratio=cfg.ratio,
                                      min_rows=cfg.min_rows, table_hyper=table_hyper, **hyper)
        seconds = time.perf_counter() - start
        if cfg.warm_start:
            for t in report.tables:
                table = compressed.embeddings.tables[t.path[len(PREFIX):]] if t.path.startswith(PREFIX) else None
                if isinstance(table, ClusteredEmbedding):
                    self.codebooks[t.path[len(PREFIX):]] = table.codebook.detach().numpy().copy()
        return compressed, report, seconds

    def _choose_target(self, row: dict[str, Any]) -> str:
        """``labels`` or ``full`` for this segment's retraining (``auto``: decided once, see
        :class:`PeriodicConfig`)."""
        cfg = self.cfg
        if cfg.retrain_on != "auto":
            return cfg.retrain_on
        if self.retrain_choice is not None:
            return self.retrain_choice["chose"]
        run = self.stream
        start = time.perf_counter()
        control = copy.deepcopy(run.model)
        optimizer = make_optimizer(control, cfg.train)
        if cfg.carry_state:  # the control's epoch mirrors retraining's optimizer
            optimizer.load_state_dict(run.optimizer.state_dict())
        train_epoch(control, run.train_data, optimizer, cfg.train.batch_size, seed=cfg.train.seed + 10_007,
                    progress=False, desc="control")
        extra = evaluate(control, run.test_data)
        chose = "labels" if extra["auc"] > row["auc"] else "full"
        self.retrain_choice = {"segment": row["segment"], "test_name": row["test_name"], "full_auc": row["auc"],
                               "extra_epoch_auc": extra["auc"], "extra_epoch_gain": extra["auc"] - row["auc"],
                               "chose": chose, "seconds": time.perf_counter() - start}
        return chose

    def run(self, segments: int | None = None) -> Iterator[dict[str, Any]]:
        """Continue the loop over the first ``segments`` segments (default: all), yielding each segment's
        log row after it is published (and checkpointed)."""
        run, cfg = self.stream, self.cfg
        total = run.check_segments(segments)
        for h in range(self.done, total - 1):
            base = run.step(h)
            compressed, report, compress_s = self._compress()
            compressed_tables = [t for t in report.tables if t.method]
            target = self._choose_target(base) if compressed_tables else "none"
            retrain_s = 0.0
            if compressed_tables:
                frozen = freeze_full_fields(compressed) if cfg.retrain_fields == "compressed" else []
                carried = carry_optimizer(run.model, run.optimizer, compressed, cfg.train) if cfg.carry_state else None
                retrain_s = retrain(compressed, run.train_data, cfg.train, carried,
                                    run.model if target == "full" else None,
                                    fixed=frozen if cfg.retrain_network == "compressed" else ())
            start = time.perf_counter()
            m = evaluate(compressed, run.test_data)
            eval_s = base["eval_s"] + time.perf_counter() - start
            row = {k: base[k] for k in ("segment", "name", "test_segment", "test_name")}
            vectors_after = 0
            for t in report.tables:
                table = compressed.embeddings.tables[t.path[len(PREFIX):]]
                vectors_after += getattr(table, "k", t.rows)  # clustered tables: k codebook rows
            row.update(
                features_before=base["features_before"], features=base["features"],
                vectors_before=sum(t.rows for t in report.tables), vectors_after=vectors_after,
                bytes_before=report.bytes_before, bytes_after=report.bytes_after, ratio=report.ratio,
                compressed_tables=len(compressed_tables), method=cfg.method, retrain_on=target,
                full_auc=base["auc"], full_logloss=base["logloss"], compressed_auc=m["auc"],
                compressed_logloss=m["logloss"])
            if "bayes_auc" in base:
                row.update(bayes_auc=base["bayes_auc"], bayes_logloss=base["bayes_logloss"])
            stats = [t.stats for t in compressed_tables]
            row.update(data_s=base["data_s"], train_s=base["train_s"], compress_s=compress_s,
                       cluster_s=sum(s.get("cluster_s", 0.0) for s in stats),
                       assign_s=sum(s.get("assign_s", 0.0) for s in stats), retrain_s=retrain_s, eval_s=eval_s)
            if target != "none" and self.retrain_choice and self.retrain_choice["segment"] == h:
                row["retrain_choice"] = self.retrain_choice
                row["control_s"] = self.retrain_choice["seconds"]
            start = time.perf_counter()
            self._publish(compressed, row)
            row["publish_s"] = time.perf_counter() - start
            self.done = h + 1
            row["peak_rss_mib"] = peak_rss_mib()
            self.rows.append(row)
            start = time.perf_counter()
            if self.done % cfg.checkpoint_every == 0 or h == total - 2:
                self._save_checkpoint()
            # (the checkpoint just written holds this row without its own checkpoint_s; the next one has it)
            row["checkpoint_s"] = time.perf_counter() - start
            self._write_log()
            yield row


def _is_kind(folder: Path, kind: str) -> bool:
    """``folder`` is a complete saec output of ``kind`` (so saec may remove it)."""
    try:
        return recognise(folder) == kind
    except SaecError:
        return False


def write_file_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file and one rename (ordinary permissions)."""
    from saec.io import atomic_write

    atomic_write(path, lambda f: f.write(data))


__all__ = ["PeriodicConfig", "PeriodicRun", "RETRAIN_ON", "peak_rss_mib", "read_run_file"]
