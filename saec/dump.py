"""Saec on raw tables, e.g. a parameter-server dump (Saec §2.2), with nothing but numpy.

One ``NAME.npy`` matrix per field plus an optional ``NAME.counts.npy`` frequency vector in one folder
(:func:`load_dump`, memory-mapped), compressed with :func:`saec.cluster.saec.compress_tables` and written by
:func:`save_compressed` as ``NAME.codebook.npy`` + ``NAME.mask.npy`` per clustered field, ``NAME.npy`` per
field left full, and a ``manifest.json`` with the configuration and the size accounting;
:func:`load_compressed` gives back serving modules. Models are compressed by :func:`saec.compress`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from saec.cluster.saec import FieldCompression, SaecConfig, size_report
from saec.errors import SaecError, SaecFileExistsError, SaecFileNotFoundError
from saec.io import umask

if TYPE_CHECKING:  # torch is imported only to load tables back as modules
    from torch import nn

COUNTS_SUFFIX = ".counts.npy"
MANIFEST = "manifest.json"


def load_dump(folder: str | Path, mmap: bool = True) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tables (``NAME.npy``) and counts (``NAME.counts.npy``) of a dump folder, memory-mapped by default."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SaecFileNotFoundError(f"no dump folder at {folder}")
    tables, counts = {}, {}
    for path in sorted(folder.glob("*.npy")):
        is_counts = path.name.endswith(COUNTS_SUFFIX)
        name = path.name[: -len(COUNTS_SUFFIX)] if is_counts else path.stem
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except Exception as e:
            raise SaecError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from None
        (counts if is_counts else tables)[name] = arr
    if not tables:
        raise SaecError(f"{folder} holds no NAME.npy tables")
    orphans = sorted(set(counts) - set(tables))
    if orphans:
        raise SaecError(f"{folder}: counts for {orphans} but no table NAME.npy for them")
    return tables, counts


def manifest(results: Mapping[str, FieldCompression], cfg: SaecConfig) -> dict:
    """The size accounting and configuration of a compression, as JSON-ready data."""
    report = size_report(results.values())
    fields = {}
    for name, r in results.items():
        fields[name] = {**asdict(r.size), "bytes_before": r.size.bytes_before, "bytes_after": r.size.bytes_after,
                        "mask_dtype": None if r.mask is None else str(r.mask.dtype), "trained_on": r.trained_on,
                        "objective": r.objective, "cluster_s": r.cluster_s, "assign_s": r.assign_s}
    return {"format": "saec-compressed-tables", "version": 1, "config": asdict(cfg), "fields": fields,
            "total": {k: report.total(k) for k in ("vectors_before", "vectors_after", "bytes_before", "bytes_after")},
            "ratio": report.ratio}


def save_compressed(folder: str | Path, results: Mapping[str, FieldCompression], tables: Mapping[str, np.ndarray],
                    cfg: SaecConfig, overwrite: bool = False) -> Path:
    """Write a compressed table set; the folder appears complete (renamed into place) or not at all."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise SaecFileExistsError(f"{folder} exists; choose another output or allow overwriting")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    tmp.chmod(0o777 & ~umask())  # mkdtemp makes it private; the folder the user gets has normal permissions
    try:
        for name, r in results.items():
            if r.size.clustered:
                np.save(tmp / f"{name}.codebook.npy", r.codebook)
                np.save(tmp / f"{name}.mask.npy", r.mask)
            else:
                np.save(tmp / f"{name}.npy", np.asarray(tables[name]))
        (tmp / MANIFEST).write_text(json.dumps(manifest(results, cfg), indent=2) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_compressed(folder: str | Path) -> dict[str, nn.Module]:
    """Serving modules of a folder written by :func:`save_compressed`: a ClusteredEmbedding per
    clustered field, an ``nn.Embedding`` per field left full."""
    import torch
    from torch import nn

    from saec.nn.clustered import ClusteredEmbedding

    folder = Path(folder)
    try:
        info = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise SaecFileNotFoundError(f"{folder} has no {MANIFEST}: not a compressed table set") from None
    except json.JSONDecodeError as e:
        raise SaecError(f"{folder / MANIFEST} is damaged: {e}") from None
    modules: dict[str, nn.Module] = {}
    for name, f in info["fields"].items():
        try:
            if f["k"] is not None:
                modules[name] = ClusteredEmbedding.from_codebook(np.load(folder / f"{name}.codebook.npy"),
                                                                 np.load(folder / f"{name}.mask.npy"))
            else:
                modules[name] = nn.Embedding.from_pretrained(torch.from_numpy(np.load(folder / f"{name}.npy")),
                                                             freeze=False)
        except (OSError, ValueError) as e:
            raise SaecError(f"{folder}: field {name!r} cannot be read: {e}") from None
        if modules[name].num_embeddings != f["features"]:
            raise SaecError(f"{folder}: field {name!r} has {modules[name].num_embeddings} features, manifest says "
                             f"{f['features']}")
    return modules
