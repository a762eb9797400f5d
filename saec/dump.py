"""Saec on raw tables, e.g. a parameter-server dump (Saec §2.2), with nothing but numpy.

One ``NAME.npy`` matrix per field plus an optional ``NAME.counts.npy`` frequency vector in one folder
(:func:`load_dump`, memory-mapped), compressed with :func:`saec.cluster.saec.compress_tables` and written by
:func:`save_compressed` as ``NAME.codebook.npy`` + ``NAME.mask.npy`` per clustered field, ``NAME.npy`` per
field left full, and a ``manifest.json`` with the configuration, the size accounting and the SHA-256 of
every file (an artifact of kind ``saec-compressed-tables``, :mod:`saec.artifact`; the ``.npy`` files stay
readable by numpy alone); :func:`load_compressed` verifies it and gives back serving modules. Models are
compressed by :func:`saec.compress`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from saec.artifact import MANIFEST, check_finite, npy_bytes, read_artifact, write_file, write_folder
from saec.cluster.saec import FieldCompression, SaecConfig, size_report
from saec.errors import SaecError, SaecFileNotFoundError

if TYPE_CHECKING:  # torch is imported only to load tables back as modules
    from torch import nn

COUNTS_SUFFIX = ".counts.npy"
FORMAT = "saec-compressed-tables"


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
    """The size accounting and configuration of a compression, as JSON-ready data (the manifest's own fields;
    :mod:`saec.artifact` adds the format, versions and checksums)."""
    report = size_report(results.values())
    fields = {}
    for name, r in results.items():
        fields[name] = {**asdict(r.size), "bytes_before": r.size.bytes_before, "bytes_after": r.size.bytes_after,
                        "mask_dtype": None if r.mask is None else str(r.mask.dtype), "trained_on": r.trained_on,
                        "objective": r.objective, "cluster_s": r.cluster_s, "assign_s": r.assign_s,
                        "phases": r.phases}
    return {"config": asdict(cfg), "fields": fields,
            "total": {k: report.total(k) for k in ("vectors_before", "vectors_after", "bytes_before", "bytes_after")},
            "ratio": report.ratio}


def field_files(name: str, clustered: bool) -> tuple[str, ...]:
    """The files of field ``name`` in a compressed table set."""
    return (f"{name}.codebook.npy", f"{name}.mask.npy") if clustered else (f"{name}.npy",)


def save_compressed(folder: str | Path, results: Mapping[str, FieldCompression], tables: Mapping[str, np.ndarray],
                    cfg: SaecConfig, overwrite: bool = False, *, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Write a compressed table set; the folder appears complete (renamed into place) or not at all. An
    existing folder is replaced only with ``overwrite`` and only if saec wrote it, never when it overlaps one
    of ``inputs`` (:func:`saec.artifact.check_output`)."""
    for name, r in results.items():
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise SaecError(f"field name {name!r} cannot name a file of a compressed table set")

    def fill(tmp: Path) -> None:
        for name, r in results.items():
            if r.size.clustered:
                codebook, mask = field_files(name, True)
                write_file(tmp / codebook, npy_bytes(r.codebook))
                write_file(tmp / mask, npy_bytes(r.mask))
            else:
                write_file(tmp / field_files(name, False)[0], npy_bytes(np.asarray(tables[name])))

    return write_folder(folder, FORMAT, fill, manifest(results, cfg), overwrite=overwrite, inputs=inputs)


def _count(path: Path, f: Any, key: str, name: str, none: bool = False) -> int | None:
    v = f.get(key) if isinstance(f, dict) else None
    if none and v is None and isinstance(f, dict) and key in f:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SaecError(f"{path}: field {name!r}: {key} is {v!r}, expected a positive integer")
    return v


def load_compressed(folder: str | Path) -> dict[str, nn.Module]:
    """Serving modules of a folder written by :func:`save_compressed`: a ClusteredEmbedding per
    clustered field, an ``nn.Embedding`` per field left full. Every file is checked against its SHA-256
    before it is read, then every array against the manifest (shape, dtype, mask < k, no NaN)."""
    import torch
    from torch import nn

    from saec.nn.clustered import ClusteredEmbedding

    art = read_artifact(folder, FORMAT, "compressed table set")
    mpath = art.path(MANIFEST)
    fields = art.meta("fields", dict)
    art.meta("config", dict), art.meta("total", dict), art.meta("ratio", (int, float))
    expected = {}
    for name, f in fields.items():
        if not name or "/" in name or name.startswith("."):
            raise SaecError(f"{mpath}: field name {name!r} cannot name a file of the set")
        k = _count(mpath, f, "k", name, none=True)
        features, dim = _count(mpath, f, "features", name), _count(mpath, f, "dim", name)
        expected[name] = (k, features, dim)
    art.need([n for name, (k, _, _) in expected.items() for n in field_files(name, k is not None)])
    modules: dict[str, nn.Module] = {}
    for name, (k, features, dim) in expected.items():
        if k is not None:
            cname, mname = field_files(name, True)
            codebook, mask = art.npy(cname), art.npy(mname)
            if codebook.shape != (k, dim) or codebook.dtype != np.float32:
                raise SaecError(f"{art.path(cname)}: codebook is {codebook.dtype} {codebook.shape}, the manifest "
                                f"says float32 ({k}, {dim})")
            check_finite(art.path(cname), "codebook", codebook)
            if mask.shape != (features,) or str(mask.dtype) != fields[name].get("mask_dtype") or mask.dtype.kind not in "iu":
                raise SaecError(f"{art.path(mname)}: mask is {mask.dtype} {mask.shape}, the manifest says "
                                f"{fields[name].get('mask_dtype')} ({features},)")
            if int(mask.min()) < 0 or int(mask.max()) >= k:
                raise SaecError(f"{art.path(mname)}: mask values must lie in [0, {k}) (the codebook's rows), got "
                                f"[{mask.min()}, {mask.max()}]")
            modules[name] = ClusteredEmbedding.from_codebook(codebook, mask)
        else:
            tname = field_files(name, False)[0]
            table = art.npy(tname)
            if table.shape != (features, dim) or table.dtype.kind != "f":
                raise SaecError(f"{art.path(tname)}: table is {table.dtype} {table.shape}, the manifest says a "
                                f"float table of ({features}, {dim})")
            check_finite(art.path(tname), "table", table)
            modules[name] = nn.Embedding.from_pretrained(torch.from_numpy(table.copy()), freeze=False)
    return modules
