"""``saec check PATH``: verify a folder saec wrote the way its loader does, and say what it holds.

Every kind of :data:`saec.artifact.KINDS` is read by the same code that loads it for use
(:func:`saec.io.load_model`, :func:`saec.dump.load_compressed`, :func:`saec.compression.load_tables`), so a
folder that passes here loads, and one that fails names its first problem (file, field, value). A run folder
(``saec train``/``run``) is checked with every model inside it; a ``saec periodic`` folder with its run file,
every published version and every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from saec.artifact import MANIFEST, read_artifact, read_manifest, recognise
from saec.errors import SaecError, SaecFileNotFoundError


@dataclass
class Checked:
    """One verified artifact: where, what kind, its files and bytes, the saec that wrote it, and a summary."""

    path: Path
    kind: str
    files: int
    bytes: int
    saec_version: str
    summary: str

    def line(self) -> str:
        return (f"ok  {self.path}  {self.kind}  {self.files} files, {self.bytes:,} bytes, written by saec "
                f"{self.saec_version}{'; ' + self.summary if self.summary else ''}")


def _model(path: Path) -> str:
    from saec.io import load_model
    from saec.nn.base import CompressedEmbedding
    from saec.nn.registry import method_of

    model, vocabs, _ = load_model(path)
    methods: dict[str, int] = {}
    for table in model.embeddings.tables.values():
        name = method_of(table) if isinstance(table, CompressedEmbedding) else "full"
        methods[name] = methods.get(name, 0) + 1
    return (f"{type(model).__name__}, {len(vocabs)} fields ("
            + ", ".join(f"{n} {m}" for m, n in sorted(methods.items())) + ")")


def _compressed_tables(path: Path) -> str:
    from saec.dump import load_compressed

    return f"{len(load_compressed(path))} tables"


def _state_dict(path: Path) -> str:
    from saec.compression import load_tables

    return f"{len(load_tables(path))} compressed tables"


def _run(path: Path) -> str:
    read_artifact(path, "saec-run", "run folder")
    models = [p.parent for p in sorted(path.glob(f"*/{MANIFEST}"))]
    for m in models:
        _model(m)
    return f"{len(models)} models: " + ", ".join(m.name for m in models)


def _checkpoint(path: Path) -> str:
    art = read_artifact(path, "saec-checkpoint", "checkpoint")
    art.need(["state.json", "tensors.safetensors"])
    state, tensors = art.json("state.json"), art.tensors("tensors.safetensors")
    if not isinstance(state, dict) or not isinstance(state.get("next_segment"), int):
        raise SaecError(f"{art.path('state.json')}: expected an object with an integer 'next_segment'")
    return f"after segment {state['next_segment'] - 1}, {len(tensors)} tensors"


CHECKS: dict[str, Callable[[Path], str]] = {
    "saec-model": _model, "saec-compressed-tables": _compressed_tables, "saec-compressed-state-dict": _state_dict,
    "saec-run": _run, "saec-checkpoint": _checkpoint,
}


def check_artifact(path: str | Path) -> Checked:
    """Verify the artifact at ``path`` (any kind saec writes) as loading it would; a :class:`SaecError`
    names the first problem."""
    path = Path(path)
    if not path.exists():
        raise SaecFileNotFoundError(f"{path} does not exist")
    # a symlink to an artifact (a periodic folder's serving/current) is checked where it points
    target = path.resolve() if path.is_symlink() else path
    kind = recognise(target)
    summary = CHECKS[kind](target)
    manifest = read_manifest(target)  # the files were verified by the kind's reader: only the manifest again
    return Checked(path, kind, len(manifest["files"]), sum(f["bytes"] for f in manifest["files"].values()),
                   str(manifest["saec_version"]), summary)


def check(path: str | Path) -> list[Checked]:
    """Every artifact at ``path``: the artifact itself, or for a ``saec periodic`` folder its run file and log, every
    published version in ``serving/`` and every checkpoint."""
    from saec.io import read_jsonl
    from saec.pipeline.periodic import CHECKPOINTS, LOG_FILE, RUN_FILE, SERVING, read_run_file

    path = Path(path)
    if path.is_dir() and not (path / MANIFEST).exists() and (path / RUN_FILE).exists():
        read_run_file(path / RUN_FILE)
        if (path / LOG_FILE).exists():
            read_jsonl(path / LOG_FILE)
        inner = sorted(p for p in (path / SERVING).glob("v*") if p.is_dir() and not p.is_symlink())
        inner += sorted(p for p in (path / CHECKPOINTS).glob("*") if p.is_dir())
        if not inner:
            raise SaecError(f"{path}: a saec periodic folder with no published version and no checkpoint")
        return [check_artifact(p) for p in inner]
    return [check_artifact(path)]


__all__ = ["CHECKS", "Checked", "check", "check_artifact"]
