"""One verified on-disk format for everything saec writes, and the one rule for replacing outputs.

An *artifact* is a folder: its files plus a ``manifest.json`` that names the format (the artifact's kind,
e.g. ``"saec-model"``), the format ``version``, the ``saec_version`` that wrote it, every file it holds
(relative paths) with its size and SHA-256, whatever the kind describes about itself, and
``manifest_sha256``: the SHA-256 of the manifest's canonical JSON (sorted keys, indent 2) without that field.
Tensors are stored in safetensors files (a JSON header and raw bytes: nothing in them can run code), the
rest as JSON; the compressed dump of :mod:`saec.dump` keeps ``.npy`` files so numpy alone reads it.

Why a folder and not one file with a checksummed header: the parts are readable by ordinary tools (a
safetensors reader, a JSON viewer, numpy), a dump's tables can be memory-mapped by others, and a run folder
(``saec train --out``) holds several artifacts under one manifest the same way.

Reading (:func:`read_artifact`) runs no code and trusts nothing before it is checked: the manifest must be
in saec's canonical form with a matching ``manifest_sha256``, its kind and version known; every name it
lists must stay inside the folder (no absolute paths, ``..``, or symlinks anywhere); the files on disk must be
exactly those listed; and each file's bytes are read once and checked against its SHA-256 before any of
them are parsed. The kinds' readers (:func:`saec.io.load_model`, :func:`saec.dump.load_compressed`,
:func:`saec.compression.load_tables`) then check shapes, dtypes and ranges against what the artifact says.

Writing (:func:`write_folder`): the folder is filled under a temporary name beside the target
(``.NAME.<random>.saec-tmp``), sealed with its manifest and renamed into place, so it appears complete or not
at all. :func:`check_output` is the rule shared by every command that writes (train, run, compress): an
existing output is replaced only when ``overwrite`` is given *and* it is a folder saec wrote (its manifest
verifies and it holds exactly the files listed), and never when it is, holds or lies inside one of the
command's inputs. Temporary folders a killed write left beside the target are removed on the next write.
Files and folders get the permissions new ones normally get (``0o666`` / ``0o777`` less the umask).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from saec import __version__
from saec.errors import SaecError, SaecFileExistsError, SaecFileNotFoundError, SaecTypeError

MANIFEST = "manifest.json"
VERSION = 1
"""Version of the artifact envelope; each kind's readers also check the kind's own ``version``."""
KINDS = ("saec-model", "saec-compressed-tables", "saec-compressed-state-dict", "saec-run", "saec-checkpoint")
"""Every kind saec writes; an output of one of these kinds (and only these) may be replaced."""
RESERVED = ("format", "version", "saec_version", "files", "manifest_sha256")
TMP_SUFFIX, OLD_SUFFIX = ".saec-tmp", ".saec-old"
MAX_MANIFEST_BYTES = 256 << 20


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical(obj: Any) -> bytes:
    """The exact bytes saec writes for a manifest (sorted keys, indent 2, ASCII, final newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("ascii")


def sign(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` with its ``manifest_sha256`` (over its canonical form without that field)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return {**body, "manifest_sha256": sha256(canonical(body))}


def umask() -> int:
    """The process's file-creation mask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- writing -------------------------------------------------------------------------------------
def _storable(tensors: Mapping[str, Any]) -> dict[str, Any]:
    """``tensors`` as safetensors takes them: detached, contiguous, none sharing memory (copied where needed)."""
    seen: set[int] = set()
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        if not t.is_contiguous() or t.untyped_storage().data_ptr() in seen:
            t = t.contiguous().clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def write_tensors(path: Path, tensors: Mapping[str, Any]) -> None:
    """Write a new safetensors file of torch tensors (copied only where they share memory or are not contiguous),
    streamed: safetensors writes each tensor from its own memory, so a model of many GiB is saved without a
    second copy of it in memory."""
    from safetensors.torch import save_file

    if path.exists():
        raise FileExistsError(path)
    save_file(_storable(tensors), path)
    os.chmod(path, 0o666 & ~umask())  # safetensors creates it private (0o600)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def npy_bytes(array: np.ndarray) -> bytes:
    """A ``.npy`` file of ``array`` (plain dtypes only: ``allow_pickle=False``)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def json_bytes(obj: Any) -> bytes:
    """A JSON file of plain data, keys in their order (Python's NaN / Infinity spelling for metrics that have them)."""
    try:
        return (json.dumps(obj, indent=1) + "\n").encode("utf-8")
    except (TypeError, ValueError) as e:
        raise SaecTypeError(f"cannot write {obj!r:.200} as JSON: {e}") from None


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file inside a temporary folder (ordinary permissions: open() applies the umask)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _walk(folder: Path) -> list[str]:
    """Relative posix paths of the files under ``folder``; a symlink or special file anywhere is an error."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                raise SaecError(f"{p} is a symlink; saec artifacts hold none")
            if name in files and not p.is_file():
                raise SaecError(f"{p} is not a regular file")
        out += [(Path(root) / n).relative_to(folder).as_posix() for n in files]
    return sorted(out)


def seal(folder: Path, kind: str, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``folder``'s manifest: every file under it with its size and SHA-256, plus ``meta``."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    meta = dict(meta or {})
    clash = sorted(set(meta) & set(RESERVED))
    if clash:
        raise ValueError(f"manifest fields {clash} are reserved")
    files = {}
    for name in _walk(folder):
        with open(folder / name, "rb") as fh:  # in chunks: a table file may be larger than free memory
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        files[name] = {"bytes": (folder / name).stat().st_size, "sha256": digest}
    manifest = sign({**meta, "format": kind, "version": VERSION, "saec_version": __version__, "files": files})
    write_file(folder / MANIFEST, canonical(manifest))
    return manifest


def reseal(folder: str | Path) -> dict[str, Any]:
    """Write ``folder``'s manifest again over its files as they are now, keeping its kind and fields: for
    tools and tests that edit an artifact on purpose (loading checks everything else a manifest implies)."""
    folder = Path(folder)
    old = read_manifest(folder)
    (folder / MANIFEST).unlink()
    return seal(folder, old["format"], {k: v for k, v in old.items() if k not in RESERVED})


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _overlaps(a: Path, b: Path) -> bool:
    """``a`` is, holds, or lies inside ``b``."""
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _leftovers(target: Path) -> list[Path]:
    """Temporary folders and files a killed write to ``target`` left beside it."""
    if not target.parent.is_dir():
        return []
    return [p for p in target.parent.glob(f".{target.name}.*")
            if p.name.endswith((TMP_SUFFIX, OLD_SUFFIX)) and not p.is_symlink()]


def recognise(folder: Path) -> str:
    """The kind of the saec output at ``folder``, or a :class:`SaecError` saying why it is not one (so it is
    not saec's to replace): not a folder, no valid manifest, or files the manifest does not list."""
    if folder.is_symlink() or not folder.is_dir():
        raise SaecError(f"{folder} is {'a symlink' if folder.is_symlink() else 'a file'}, not a folder saec wrote")
    if not (folder / MANIFEST).exists():  # (only its first entries listed: the folder may be huge)
        entries = sorted(p.name for _, p in zip(range(5), folder.iterdir()))
        raise SaecError(f"{folder} has no {MANIFEST}; it holds {[str(folder / n) for n in entries]}")
    manifest = read_manifest(folder)
    listed = set(manifest["files"])
    present = set(_walk(folder)) - {MANIFEST}
    extra, missing = sorted(present - listed), sorted(listed - present)
    if extra:
        raise SaecError(f"{folder} holds files saec did not write: {[str(folder / n) for n in extra[:5]]}")
    if missing:
        raise SaecError(f"{folder} lacks files its manifest lists: {[str(folder / n) for n in missing[:5]]}")
    return manifest["format"]


def check_output(out: str | Path, *, inputs: Iterable[str | Path | None] = (), overwrite: bool = False,
                 option: str = "--out") -> Path:
    """Refuse, before any work, an output folder saec may not write; returns it as a :class:`Path`.

    Refused: an output that is, holds or lies inside one of ``inputs``; a path whose parent is a file; an
    existing file or symlink; an existing folder without ``overwrite``; with ``overwrite``, a folder that is
    not one saec wrote (see :func:`recognise`).
    """
    out = Path(out)
    target = _resolved(out)
    for given in inputs:
        if given is None:
            continue
        src = _resolved(Path(given))
        if _overlaps(target, src):
            raise SaecError(f"{option} {out} is, holds or lies inside the input {given}; saec never writes over "
                            f"its inputs: choose another {option}")
    for parent in out.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise SaecError(f"{option} {out}: {parent} is a file, not a folder")
            break
    if not (out.exists() or out.is_symlink()):
        return out
    if out.is_symlink() or not out.is_dir():
        raise SaecFileExistsError(f"{option} {out} is an existing {'symlink' if out.is_symlink() else 'file'}; "
                                  f"saec writes a folder there, and --overwrite never replaces what saec did not write")
    if not overwrite:
        raise SaecFileExistsError(f"{out} exists; choose another {option} or pass --overwrite to replace it")
    try:
        recognise(out)
    except SaecError as e:
        raise SaecFileExistsError(f"{option} {out} exists and is not an output saec wrote, so --overwrite does not "
                                  f"replace it ({e})") from None
    return out


def write_folder(target: str | Path, kind: str, fill: Callable[[Path], None], meta: Mapping[str, Any] | None = None,
                 *, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Fill a temporary folder beside ``target`` with ``fill(tmp)``, seal it (:func:`seal`) and rename it to
    ``target``, replacing an existing output only as :func:`check_output` allows (checked again here)."""
    target = Path(target)
    inputs = list(inputs)
    check_output(target, inputs=inputs, overwrite=overwrite)
    for p in _leftovers(target):  # a write that was killed; its names are saec's own
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    tmp.mkdir(0o777 & ~umask())
    try:
        fill(tmp)
        seal(tmp, kind, meta)
        if target.exists():
            check_output(target, inputs=inputs, overwrite=overwrite)
            old = target.with_name(f".{target.name}.{secrets.token_hex(4)}{OLD_SUFFIX}")
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(old, target)  # the previous output goes back where it was
                raise
            shutil.rmtree(old)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# -- reading -------------------------------------------------------------------------------------
def _check_name(folder: Path, name: Any) -> str:
    """``name`` if it is a relative path that stays inside ``folder``."""
    if not isinstance(name, str) or not name:
        raise SaecError(f"{folder / MANIFEST}: file name {name!r} is not a relative path")
    parts = PurePosixPath(name).parts
    if (name.startswith("/") or "\\" in name or "\0" in name or PurePosixPath(name).is_absolute()
            or any(p in ("", ".", "..") for p in name.split("/")) or not parts):
        raise SaecError(f"{folder / MANIFEST}: file name {name!r} leaves the artifact's folder or is not a plain "
                        f"relative path")
    path = folder
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise SaecError(f"{path} is a symlink; saec artifacts hold none")
    if not _resolved(folder / name).is_relative_to(_resolved(folder)):
        raise SaecError(f"{folder / name} lies outside {folder}")
    return name


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the artifact ``folder``, verified (its own checksum, form, kind, version and file entries; the
    files themselves are verified by :func:`read_artifact`)."""
    path = folder / MANIFEST
    if path.is_symlink():
        raise SaecError(f"{path} is a symlink; saec artifacts hold none")
    if not path.is_file():
        raise SaecFileNotFoundError(f"{folder} has no {MANIFEST}: not an artifact saec wrote")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise SaecError(f"{path} is larger than any manifest saec writes")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw.decode("ascii"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise SaecError(f"{path} is damaged: not saec's JSON ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(manifest, dict):
        raise SaecError(f"{path} is damaged: a {type(manifest).__name__}, not a JSON object")
    if "manifest_sha256" not in manifest:
        raise SaecError(f"{path} has no manifest_sha256: not written by this saec (folders written before saec "
                        f"checksummed its outputs must be written again)")
    if manifest.get("manifest_sha256") != sign(manifest)["manifest_sha256"]:
        raise SaecError(f"{path} is damaged or was edited: its manifest_sha256 does not match its content")
    if canonical(manifest) != raw:
        raise SaecError(f"{path} is damaged or was edited: not in the form saec writes")
    missing = [k for k in RESERVED if k not in manifest]
    if missing:
        raise SaecError(f"{path}: fields {missing} are missing")
    if manifest["format"] not in KINDS:
        raise SaecError(f"{path}: format {manifest['format']!r} is not one saec writes {list(KINDS)}")
    if manifest["version"] != VERSION:
        raise SaecError(f"{path}: artifact version {manifest['version']!r} is not supported (this saec reads "
                        f"version {VERSION})")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise SaecError(f"{path}: 'files' is a {type(files).__name__}, not an object of files")
    for name, f in files.items():
        _check_name(folder, name)
        if name == MANIFEST:
            raise SaecError(f"{path}: lists itself as a file")
        if (not isinstance(f, dict) or set(f) != {"bytes", "sha256"} or not isinstance(f["sha256"], str)
                or isinstance(f["bytes"], bool) or not isinstance(f["bytes"], int) or f["bytes"] < 0):
            raise SaecError(f"{path}: the entry of {name!r} is damaged: {f!r:.200}")
    return manifest


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@dataclass
class Artifact:
    """A verified artifact: its folder, manifest, and the checked bytes of each file it lists (``data``), or, for
    the files :func:`read_artifact` was told to map, their checked identity (``mapped``: path and
    ``(inode, size, mtime)`` as hashed), read later without a copy (:meth:`tensors`)."""

    folder: Path
    manifest: dict[str, Any]
    data: dict[str, bytes]
    mapped: dict[str, tuple[Path, tuple[int, int, int]]] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return set(self.data) | set(self.mapped)

    @property
    def kind(self) -> str:
        return self.manifest["format"]

    def path(self, name: str) -> Path:
        return self.folder / name

    def need(self, names: Iterable[str]) -> None:
        """The files of the artifact must be exactly ``names``."""
        names = set(names)
        missing, extra = sorted(names - self.names), sorted(self.names - names)
        if missing:
            raise SaecError(f"{self.path(missing[0])} is missing ({self.kind} at {self.folder} needs "
                            f"{sorted(names)})")
        if extra:
            raise SaecError(f"{self.path(extra[0])} is not part of a {self.kind} ({self.folder} should hold "
                            f"{sorted(names)})")

    def json(self, name: str) -> Any:
        """A JSON file of the artifact."""
        try:
            return json.loads(self.data[name].decode("utf-8"))
        except KeyError:
            raise SaecError(f"{self.path(name)} is missing") from None
        except (UnicodeDecodeError, ValueError) as e:
            raise SaecError(f"{self.path(name)} is not valid JSON: {e}") from None

    def tensors(self, name: str) -> dict[str, Any]:
        """The torch tensors of a safetensors file of the artifact; those of a mapped file are memory-mapped
        (copy on write: changing a tensor never changes the file), after checking that the file is still the
        one whose bytes were hashed."""
        from safetensors.torch import load, load_file

        try:
            if name in self.mapped:
                path, hashed = self.mapped[name]
                if _identity(path) != hashed:
                    raise SaecError(f"{path} changed after its SHA-256 was checked: refusing to map it")
                return load_file(path)
            return load(self.data[name])
        except SaecError:
            raise
        except KeyError:
            raise SaecError(f"{self.path(name)} is missing") from None
        except Exception as e:  # safetensors raises its own error type for a bad header
            raise SaecError(f"{self.path(name)} is not a readable safetensors file ({type(e).__name__}: "
                            f"{str(e)[:200]})") from None

    def npy(self, name: str) -> np.ndarray:
        """An array of a ``.npy`` file of the artifact (no pickled objects)."""
        try:
            return np.load(io.BytesIO(self.data[name]), allow_pickle=False)
        except KeyError:
            raise SaecError(f"{self.path(name)} is missing") from None
        except Exception as e:  # numpy raises ValueError or others for a bad header
            raise SaecError(f"{self.path(name)} is not a readable .npy file ({type(e).__name__}: "
                            f"{str(e)[:200]})") from None

    def meta(self, key: str, types: type | tuple[type, ...] = object) -> Any:
        """A field of the manifest (written by the kind) of the given type."""
        if key not in self.manifest:
            raise SaecError(f"{self.path(MANIFEST)}: field {key!r} is missing")
        value = self.manifest[key]
        if not isinstance(value, types):
            raise SaecError(f"{self.path(MANIFEST)}: field {key!r} is {value!r:.100}, not of the expected type")
        return value


def _identity(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_artifact(folder: str | Path, kinds: str | Iterable[str], what: str = "artifact",
                  map_over: int | None = None, mappable: Iterable[str] = (), unread: Iterable[str] = ()) -> Artifact:
    """The verified files of the artifact at ``folder``, of one of ``kinds`` (see the module docstring).

    Files named in ``mappable`` of at least ``map_over`` bytes, and those in ``unread`` whatever their size, are
    hashed as they are read, in chunks, and not kept (:attr:`Artifact.mapped`): a reader memory-maps them
    afterwards (so a table larger than free memory can still be loaded and served), or has no use for them."""
    folder = Path(folder)
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not folder.exists():
        raise SaecFileNotFoundError(f"no {what} at {folder}")
    if not folder.is_dir():
        raise SaecError(f"{folder} is a file; a {what} is a folder with a {MANIFEST} (written by saec)")
    manifest = read_manifest(folder)
    if manifest["format"] not in kinds:
        hint = f"; its model is {folder / 'model'}" if manifest["format"] == "saec-run" and "saec-model" in kinds \
            else ""
        raise SaecError(f"{folder / MANIFEST}: a {manifest['format']}, not a {' or '.join(kinds)}{hint}")
    present = set(_walk(folder)) - {MANIFEST}
    listed = set(manifest["files"])
    if present - listed:
        raise SaecError(f"{folder / sorted(present - listed)[0]} is not listed in {folder / MANIFEST}: not "
                        f"written by saec")
    if listed - present:
        raise SaecError(f"{folder / sorted(listed - present)[0]} is missing (listed in {folder / MANIFEST})")
    data, mapped = {}, {}
    mappable = set(mappable) if map_over is not None else set()
    unread = set(unread)
    for name, f in sorted(manifest["files"].items()):
        path = folder / name
        if name in unread or (name in mappable and f["bytes"] >= map_over):
            before = _identity(path)
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            if before[1] != f["bytes"]:
                raise SaecError(f"{path} has {before[1]:,} bytes, {folder / MANIFEST} says {f['bytes']:,}: damaged "
                                f"or replaced")
            if digest != f["sha256"] or _identity(path) != before:
                raise SaecError(f"{path} is damaged or was replaced: its SHA-256 does not match {folder / MANIFEST}")
            mapped[name] = (path, before)
            continue
        with open(path, "rb") as fh:
            raw = fh.read(f["bytes"] + 1)
        if len(raw) != f["bytes"]:
            raise SaecError(f"{path} has {len(raw):,}{'+' if len(raw) > f['bytes'] else ''} bytes, "
                            f"{folder / MANIFEST} says {f['bytes']:,}: damaged or replaced")
        if sha256(raw) != f["sha256"]:
            raise SaecError(f"{path} is damaged or was replaced: its SHA-256 does not match {folder / MANIFEST}")
        data[name] = raw
    return Artifact(folder, manifest, data, mapped)


# -- checks the kinds' readers share -------------------------------------------------------------
def check_finite(path: Path, name: str, t: Any) -> None:
    """Float tensors or arrays hold no NaN or infinity."""
    import torch

    if isinstance(t, torch.Tensor):
        if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
            raise SaecError(f"{path}: {name} holds NaN or infinite values")
    elif np.asarray(t).dtype.kind == "f" and np.asarray(t).size and not np.isfinite(t).all():
        raise SaecError(f"{path}: {name} holds NaN or infinite values")


def check_state(path: Path, got: Mapping[str, Any], want: Mapping[str, Any], what: str = "tensor") -> None:
    """``got`` holds exactly ``want``'s keys, each of the same shape and dtype, and no NaN."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise SaecError(f"{path}: {what}s do not match what the saved configuration rebuilds: missing "
                        f"{missing[:5]}, unexpected {extra[:5]}")
    for key, w in want.items():
        g = got[key]
        if tuple(g.shape) != tuple(w.shape) or g.dtype != w.dtype:
            raise SaecError(f"{path}: {what} {key!r} is {g.dtype} {tuple(g.shape)}, the saved configuration "
                            f"rebuilds {w.dtype} {tuple(w.shape)}")
        check_finite(path, f"{what} {key!r}", g)


def check_ranges(path: Path, module: Any) -> None:
    """Index buffers of compressed tables point inside what they index (Saec's mask < k, PQ's codes < 2^bits)."""
    import torch

    for name, m in module.named_modules():
        for index, bound, what in (("mask", "k", "the codebook's rows"), ("codes", "num_centroids",
                                                                          "each subspace's centroids")):
            mask, k = getattr(m, index, None), getattr(m, bound, None)
            if isinstance(mask, torch.Tensor) and isinstance(k, int) and mask.numel():
                lo, hi = int(mask.min()), int(mask.max())
                if lo < 0 or hi >= k:
                    raise SaecError(f"{path}: table {name or 'table'!r}: {index} values must lie in [0, {k}) "
                                    f"({what}), got [{lo}, {hi}]")
        rows = getattr(m, "num_embeddings", None)
        for attr in ("kept_ids", "frequent_ids"):
            ids = getattr(m, attr, None)
            if isinstance(ids, torch.Tensor) and ids.numel() and isinstance(rows, int):
                if int(ids.min()) < 0 or int(ids.max()) >= rows:
                    raise SaecError(f"{path}: table {name!r}: {attr} must lie in [0, {rows})")


__all__ = ["Artifact", "KINDS", "MANIFEST", "VERSION", "check_finite", "check_output", "check_ranges",
           "check_state", "read_artifact", "recognise", "reseal", "seal", "sign", "write_folder"]
