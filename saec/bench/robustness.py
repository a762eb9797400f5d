"""Fuzzing what saec writes (issue 9's evidence, docs/results/robustness.md): damage saved artifacts at
random and sort what loading them does.

Each *artifact kind* (a saved model, a saved compressed model, a compressed dump folder) is written once
from a small seeded model, then for every case one mutation is applied to a fresh copy and the copy is
loaded:

* ``bitflip``: one random bit of one random file of the artifact;
* ``truncate``: one random file cut at a random length;
* ``swap``: one file replaced by the file of the same name from another artifact of the same kind and
  shapes (written with another seed); only for artifacts of several files (replacing a one-file artifact
  whole gives another valid artifact, not a damaged one);
* ``delete``: one random file removed.

Outcomes: ``clear`` (a :class:`~saec.errors.SaecError` whose message names the artifact), ``unclear`` (a
SaecError that does not name it, or any other exception: a traceback a user would see), ``silent_wrong``
(it loaded and computes something else), ``same`` (it loaded and computes exactly the original: the
mutation touched nothing that matters, e.g. a JSON whitespace). The goal is 0 ``unclear`` and 0
``silent_wrong``.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from saec.errors import SaecError

MUTATIONS = ("bitflip", "truncate", "swap", "delete")
OUTCOMES = ("clear", "unclear", "silent_wrong", "same")


@dataclass(frozen=True)
class RobustnessConfig:
    """What :func:`run` does: ``cases`` per artifact kind and mutation, drawn from ``seed``."""

    cases: int = 250
    seed: int = 0


@dataclass
class Kind:
    """One artifact kind: ``write(folder, seed) -> path`` saves one; ``probe(path) -> tensor`` loads it
    and computes something that differs whenever what was loaded differs."""

    name: str
    write: Callable[[Path, int], Path]
    probe: Callable[[Path], torch.Tensor]


def _tiny_model(seed: int):
    from saec.data import Field, Schema, Vocabulary
    from saec.models import build_model

    schema = Schema((Field("user", 8), Field("item", 8), Field("tag", 4, multi_valued=True)))
    rng = np.random.default_rng(seed)
    vocabs = {n: Vocabulary.from_values(rng.zipf(1.5, 5 * v).clip(max=v).astype(str))
              for n, v in {"user": 2000, "item": 1500, "tag": 30}.items()}
    model = build_model("dssm", schema, {n: len(v) for n, v in vocabs.items()}, hidden=(16,), seed=seed)
    return model, vocabs


def _batch(model) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    ids = {}
    for f in model.embeddings.schema.fields:
        n = model.embeddings.num_embeddings(f.name)
        ids[f.name] = torch.randint(0, n, (64, 3) if f.multi_valued else (64,), generator=g)
    return ids


def _model_probe(path: Path) -> torch.Tensor:
    from saec.io import load_model

    model, _, _ = load_model(path)
    model.eval()
    with torch.no_grad():
        return model(_batch(model))


def _write_model(folder: Path, seed: int) -> Path:
    from saec.io import save_model

    model, vocabs = _tiny_model(seed)
    return save_model(folder / "model.pt", model, vocabs)


def _write_compressed(folder: Path, seed: int) -> Path:
    from saec.cluster.saec import SaecConfig
    from saec.compression import compress_model
    from saec.io import save_model

    model, vocabs = _tiny_model(seed)
    compressed, _ = compress_model(model, {n: v.counts for n, v in vocabs.items()}, SaecConfig(k=16, eligibility=10))
    return save_model(folder / "saec.pt", compressed, vocabs)


def _write_dump(folder: Path, seed: int) -> Path:
    from saec.cluster.saec import SaecConfig, compress_tables
    from saec.dump import save_compressed

    rng = np.random.default_rng(seed)
    tables = {"user": rng.normal(size=(3000, 8)).astype(np.float32), "city": rng.normal(size=(40, 8)).astype(np.float32)}
    cfg = SaecConfig(k=20, eligibility=10)
    return save_compressed(folder / "dump-saec", compress_tables(tables, None, cfg), tables, cfg)


def _dump_probe(path: Path) -> torch.Tensor:
    from saec.dump import load_compressed

    modules = load_compressed(path)
    with torch.no_grad():
        return torch.cat([modules[n](torch.arange(modules[n].num_embeddings)).reshape(-1) for n in sorted(modules)])


KINDS = (Kind("model", _write_model, _model_probe), Kind("compressed model", _write_compressed, _model_probe),
         Kind("compressed dump folder", _write_dump, _dump_probe))


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return dst


def mutate(path: Path, other: Path, mutation: str, rng: random.Random) -> str:
    """Apply ``mutation`` to the artifact at ``path`` (``other``: one of the same kind, for ``swap``);
    returns what was done."""
    files = _files(path)
    target = rng.choice(files)
    rel = target.relative_to(path) if path.is_dir() else Path(target.name)
    data = target.read_bytes()
    if mutation == "bitflip":
        if not data:
            return f"{rel}: empty, nothing to flip"
        pos = rng.randrange(len(data) * 8)
        buf = bytearray(data)
        buf[pos // 8] ^= 1 << (pos % 8)
        target.write_bytes(bytes(buf))
        return f"{rel}: bit {pos}"
    if mutation == "truncate":
        cut = rng.randrange(len(data)) if data else 0
        target.write_bytes(data[:cut])
        return f"{rel}: cut to {cut} of {len(data)} bytes"
    if mutation == "swap":
        source = other / rel if other.is_dir() else other
        shutil.copy2(source, target)
        return f"{rel}: from another artifact"
    if mutation == "delete":
        target.unlink()
        return f"{rel}: deleted"
    raise SaecError(f"mutation must be one of {MUTATIONS}, got {mutation!r}")


def classify(path: Path, probe: Callable[[Path], torch.Tensor], reference: torch.Tensor) -> tuple[str, str]:
    """(outcome, message) of loading the artifact at ``path``."""
    try:
        got = probe(path)
    except SaecError as e:
        named = path.name in str(e) or str(path) in str(e)
        return ("clear" if named else "unclear"), f"{type(e).__name__}: {str(e)[:300]}"
    except Exception as e:  # what a user would see as a traceback: the finding this fuzzing exists for
        return "unclear", f"{type(e).__name__}: {str(e)[:300]}"
    same = got.shape == reference.shape and torch.equal(got, reference)
    return ("same" if same else "silent_wrong"), ""


def run(cfg: RobustnessConfig, command: list[str], progress: bool = True) -> dict[str, Any]:
    """Every kind x mutation, ``cfg.cases`` times; the raw record (counts, examples, environment)."""
    from tqdm.auto import tqdm

    from saec.bench.report import environment, peak_rss_mib

    rng = random.Random(cfg.seed)
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="saec-robustness-") as tmp:
        tmp = Path(tmp)
        for kind in KINDS:
            base = kind.write(_fresh(tmp / f"{kind.name}-a"), 0)
            other = kind.write(_fresh(tmp / f"{kind.name}-b"), 1)
            reference = kind.probe(base)
            for mutation in MUTATIONS:
                if mutation == "swap" and len(_files(base)) < 2:
                    continue
                counts = dict.fromkeys(OUTCOMES, 0)
                examples: dict[str, list[str]] = {o: [] for o in OUTCOMES}
                for _ in tqdm(range(cfg.cases), desc=f"{kind.name} {mutation}", disable=not progress, mininterval=1):
                    case = _fresh(tmp / "case")
                    copy = _copy(base, case / base.name)
                    what = mutate(copy, other, mutation, rng)
                    outcome, message = classify(copy, kind.probe, reference)
                    counts[outcome] += 1
                    if len(examples[outcome]) < 3:
                        examples[outcome].append(f"{what} -> {message}" if message else what)
                results.append({"kind": kind.name, "mutation": mutation, "cases": cfg.cases, **counts,
                                "examples": examples})
    return {"command": command, "config": asdict(cfg), "environment": environment(), "results": results,
            "wall_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def render(record: dict[str, Any]) -> str:
    """The page, from the raw record alone."""
    from saec.bench.report import header, markdown_table

    text = header("Robustness: damaged artifacts", record["command"], record["environment"])
    cfg = record["config"]
    text += (f"\nRun time {record['wall_s'] / 60:.1f} min, peak RSS {record['peak_rss_mib']:,.0f} MiB; "
             f"{cfg['cases']} cases per artifact kind and mutation, seed {cfg['seed']}.\n\n"
             + __doc__.split("\n\n", 1)[1].strip() + "\n\n")
    rows = [["artifact", "mutation", "cases", *OUTCOMES]]
    total = dict.fromkeys(OUTCOMES, 0)
    for r in record["results"]:
        rows.append([r["kind"], r["mutation"], f"{r['cases']:,}", *(f"{r[o]:,}" for o in OUTCOMES)])
        for o in OUTCOMES:
            total[o] += r[o]
    rows.append(["all", "", f"{sum(r['cases'] for r in record['results']):,}", *(f"{total[o]:,}" for o in OUTCOMES)])
    text += markdown_table(rows)
    bad = [r for r in record["results"] if r["unclear"] or r["silent_wrong"]]
    text += (f"\n{len(bad)} of {len(record['results'])} kind x mutation rows have unclear or silently wrong "
             f"loads (goal: none).\n")
    if bad:
        text += "\n## Examples of what went wrong\n\n"
        for r in bad:
            for o in ("unclear", "silent_wrong"):
                for ex in r["examples"][o]:
                    text += f"- {r['kind']}, {r['mutation']}, {o}: `{ex}`\n"
    return text


__all__ = ["KINDS", "MUTATIONS", "OUTCOMES", "Kind", "RobustnessConfig", "classify", "mutate", "render", "run"]
