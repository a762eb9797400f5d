"""Fuzzing what saec writes and reads (issue 9's evidence, docs/results/robustness.md): damage saved
artifacts and input files at random and sort what loading them does (inputs: see :data:`INPUTS_DOC`).

Each *artifact kind* (a saved model, a saved compressed model, a compressed dump folder, a compressed
``state_dict`` from ``saec compress --state-dict``) is written once
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
INPUT_MUTATIONS = ("toml value", "toml unknown key", "toml missing key", "csv label", "csv time", "csv header",
                   "csv truncate")
INPUT_OUTCOMES = ("clear", "unclear", "silent_wrong", "accepted", "refused_valid")


@dataclass(frozen=True)
class RobustnessConfig:
    """What :func:`run` does: ``cases`` per artifact kind and mutation, drawn from ``seed``."""

    cases: int = 500
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


def _write_state_dict(folder: Path, seed: int) -> Path:
    from saec.compression import compress_state_dict, save_tables

    g = torch.Generator().manual_seed(seed)
    state = {"emb.user.weight": torch.randn(3000, 8, generator=g), "emb.item.weight": torch.randn(2000, 8, generator=g),
             "mlp.weight": torch.randn(4, 16, generator=g)}
    record, _ = compress_state_dict(state, ["emb.*.weight"], "saec", k=20, eligibility=10)
    return save_tables(folder / "tables-saec", record)


def _state_dict_probe(path: Path) -> torch.Tensor:
    from saec.compression import load_tables, read_tables

    tables = load_tables(path)
    rest = read_tables(path)["state_dict"]
    with torch.no_grad():
        looked_up = [tables[n](torch.arange(tables[n].num_embeddings)).reshape(-1) for n in sorted(tables)]
    return torch.cat(looked_up + [rest[k].reshape(-1).float() for k in sorted(rest) if not k.startswith("emb.")])


KINDS = (Kind("model", _write_model, _model_probe), Kind("compressed model", _write_compressed, _model_probe),
         Kind("compressed dump folder", _write_dump, _dump_probe),
         Kind("compressed state_dict", _write_state_dict, _state_dict_probe))


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
        inputs = run_inputs(cfg, tmp, rng, progress)
    return {"command": command, "config": asdict(cfg), "environment": environment(), "results": results,
            "inputs": inputs, "wall_s": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


# -- inputs: a click log and its TOML description ---------------------------------------------------
_VALUES = (0, 1, 7, -3, 2.5, 16.7, True, False, "no", "yes", "mean", "sum", "|", "", [1, 2], [0.8, 0.1, 0.1],
           {"a": 1})
_FIELD_RULES = {  # key -> is this value valid for it (the oracle; saec's own checks must agree)
    "dim": lambda v: _is_int(v) and v >= 1, "max_len": lambda v: _is_int(v) and v >= 1,
    "min_count": lambda v: _is_int(v) and v >= 1, "multi_valued": lambda v: isinstance(v, bool),
    "pooling": lambda v: v in ("mean", "sum"), "sep": lambda v: isinstance(v, str) and v != "",
}
_DATA_RULES = {"dim": _FIELD_RULES["dim"],
               "splits": lambda v: isinstance(v, list) and len(v) == 3 and all(_is_num(x) and x > 0 for x in v)
               and abs(sum(v) - 1) < 1e-9,
               "label_threshold": lambda v: None if _is_num(v) else False}  # None: valid or a clear refusal


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _toml(doc: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    lines = ["[data]"] + [f"{k} = {value(v)}" for k, v in doc["data"].items()]
    for f in doc["fields"]:
        lines += ["", "[[fields]]"] + [f"{k} = {value(v)}" for k, v in f.items()]
    return "\n".join(lines + [k + " = 1" for k in doc.get("_top", [])]) + "\n"


def _base_input(folder: Path, rng: random.Random) -> tuple[dict[str, Any], list[list[str]]]:
    rows = [["ts", "user", "item", "tags", "click"]]
    for i in range(300):
        rows.append([str(1000 + i), f"u{rng.randrange(40)}", f"i{rng.randrange(60)}",
                     "|".join(f"t{rng.randrange(9)}" for _ in range(rng.randrange(1, 4))), str(i % 2)])
    doc = {"data": {"path": "clicks.csv", "label": "click", "time": "ts"},
           "fields": [{"name": "user", "dim": 8}, {"name": "item"}, {"name": "tags", "multi_valued": True, "sep": "|"}]}
    return doc, rows


def mutate_input(doc: dict[str, Any], rows: list[list[str]], mutation: str, rng: random.Random
                 ) -> tuple[dict[str, Any], list[list[str]], bool | None, str, int | None]:
    """``(doc, rows, valid, what, cut)``: a mutated copy; ``valid`` is the oracle's verdict (None: either a
    clean load or a clear refusal is right); ``cut`` truncates the written CSV to that many bytes."""
    doc = {"data": dict(doc["data"]), "fields": [dict(f) for f in doc["fields"]]}
    rows = [list(r) for r in rows]
    if mutation == "toml value":
        value = rng.choice(_VALUES)
        if rng.random() < 0.3:
            key = rng.choice(sorted(_DATA_RULES))
            doc["data"][key] = value
            valid = _DATA_RULES[key](value)
            return doc, rows, valid, f"[data] {key} = {value!r}", None
        i, key = rng.randrange(len(doc["fields"])), rng.choice(sorted(_FIELD_RULES))
        doc["fields"][i][key] = value
        valid = _FIELD_RULES[key](value)
        if valid and key == "multi_valued" and value and doc["fields"][i].get("sep", " ") == "":
            valid = False
        if key == "sep" and value == "" and not doc["fields"][i].get("multi_valued", False):
            valid = True  # a single-valued field never splits
        return doc, rows, valid, f"field {doc['fields'][i]['name']!r} {key} = {value!r}", None
    if mutation == "toml unknown key":
        where = rng.choice(("data", "field", "top"))
        if where == "data":
            doc["data"]["colour"] = 1
        elif where == "field":
            doc["fields"][rng.randrange(len(doc["fields"]))]["colour"] = 1
        else:
            doc["_top"] = ["colour"]
        return doc, rows, False, f"unknown key 'colour' in {where}", None
    if mutation == "toml missing key":
        key = rng.choice(("path", "label", "name"))
        if key == "name":
            del doc["fields"][rng.randrange(len(doc["fields"]))]["name"]
        else:
            del doc["data"][key]
        return doc, rows, False, f"no {key!r}", None
    if mutation == "csv label":
        r, value = rng.randrange(1, len(rows)), rng.choice(("yes", "", "2", "nan", "-1", "0.5", "0", "1"))
        rows[r][4] = value
        return doc, rows, value in ("0", "1"), f"row {r} click = {value!r}", None
    if mutation == "csv time":
        r, value = rng.randrange(1, len(rows)), rng.choice(("soon", "", "12:00", "1e3x", str(rng.randrange(2000))))
        rows[r][0] = value
        return doc, rows, value.isdigit(), f"row {r} ts = {value!r}", None
    if mutation == "csv header":
        c = rng.randrange(5)
        other = rng.choice([i for i in range(5) if i != c])
        rows[0][c] = rows[0][other]
        return doc, rows, False, f"column {c} renamed to {rows[0][other]!r}", None
    if mutation == "csv truncate":
        return doc, rows, None, "cut at a random byte", rng.randrange(1, 9000)
    raise SaecError(f"input mutation must be one of {INPUT_MUTATIONS}, got {mutation!r}")


def classify_input(folder: Path, valid: bool | None) -> tuple[str, str]:
    """(outcome, message) of reading the click log ``folder/clicks.csv`` through ``folder/data.toml``."""
    from saec.data.tabular import load_spec, tabular_ctr

    try:
        tabular_ctr(load_spec(folder / "data.toml"))
    except SaecError as e:
        named = "data.toml" in str(e) or "clicks.csv" in str(e)
        if not named:
            return "unclear", f"{type(e).__name__}: {str(e)[:300]}"
        return ("refused_valid" if valid else "clear"), f"{str(e)[:300]}"
    except Exception as e:  # a traceback a user would see
        return "unclear", f"{type(e).__name__}: {str(e)[:300]}"
    return ("silent_wrong" if valid is False else "accepted"), ""


def run_inputs(cfg: RobustnessConfig, tmp: Path, rng: random.Random, progress: bool) -> list[dict[str, Any]]:
    """Every input mutation ``cfg.cases`` times on a click log and its TOML description."""
    from tqdm.auto import tqdm

    doc, rows = _base_input(tmp, rng)
    results = []
    for mutation in INPUT_MUTATIONS:
        counts = dict.fromkeys(INPUT_OUTCOMES, 0)
        examples: dict[str, list[str]] = {o: [] for o in INPUT_OUTCOMES}
        for _ in tqdm(range(cfg.cases), desc=f"click log {mutation}", disable=not progress, mininterval=1):
            case = _fresh(tmp / "input")
            d, r, valid, what, cut = mutate_input(doc, rows, mutation, rng)
            (case / "data.toml").write_text(_toml(d))
            text = "\n".join(",".join(x) for x in r) + "\n"
            (case / "clicks.csv").write_bytes(text.encode()[:cut] if cut else text.encode())
            outcome, message = classify_input(case, valid)
            counts[outcome] += 1
            if len(examples[outcome]) < 3:
                examples[outcome].append(f"{what} -> {message}" if message else what)
        results.append({"kind": "click log + TOML", "mutation": mutation, "cases": cfg.cases, **counts,
                        "examples": examples})
    return results


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def render(record: dict[str, Any]) -> str:
    """The page, from the raw record alone."""
    from saec.bench.report import checksums, header, markdown_table

    text = header("Robustness: damaged artifacts", record["command"], record["environment"], checksums(record))
    cfg = record["config"]
    n = sum(r["cases"] for r in record["results"]) + sum(r["cases"] for r in record["inputs"])
    text += (f"\nRun time {record['wall_s'] / 60:.1f} min, peak RSS {record['peak_rss_mib']:,.0f} MiB; "
             f"{cfg['cases']} cases per artifact kind and mutation, seed {cfg['seed']}. Crashes: every one of the "
             f"{n:,} cases ran in this one process and the run finished, so none killed it (a crash would "
             f"have left no record).\n\n"
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
    text += "\n## Damaged inputs\n\n" + INPUTS_DOC + "\n\n"
    rows = [["input", "mutation", "cases", *INPUT_OUTCOMES]]
    for r in record["inputs"]:
        rows.append([r["kind"], r["mutation"], f"{r['cases']:,}", *(f"{r[o]:,}" for o in INPUT_OUTCOMES)])
    rows.append(["all", "", f"{sum(r['cases'] for r in record['inputs']):,}",
                 *(f"{sum(r[o] for r in record['inputs']):,}" for o in INPUT_OUTCOMES)])
    text += markdown_table(rows)
    bad_inputs = [r for r in record["inputs"] if r["unclear"] or r["silent_wrong"] or r["refused_valid"]]
    text += (f"\n{len(bad_inputs)} of {len(record['inputs'])} input mutation rows have unclear errors, silently "
             f"accepted bad input or refused good input (goal: none).\n")
    if bad or bad_inputs:
        text += "\n## Examples of what went wrong\n\n"
        for r in bad:
            for o in ("unclear", "silent_wrong"):
                for ex in r["examples"][o]:
                    text += f"- {r['kind']}, {r['mutation']}, {o}: `{ex}`\n"
        for r in bad_inputs:
            for o in ("unclear", "silent_wrong", "refused_valid"):
                for ex in r["examples"][o]:
                    text += f"- {r['kind']}, {r['mutation']}, {o}: `{ex}`\n"
    return text


INPUTS_DOC = """A 300-row click log (`ts,user,item,tags,click`, tags multi-valued with `|`) described by a TOML file
is damaged once per case and read with `tabular_ctr(load_spec(...))`: a TOML value set to a random value
of a random type (`toml value`), an unknown key, a required key removed, a label or time cell set to a random
string, a header column renamed to another's name (a duplicate), the CSV cut at a random byte. An oracle
in the script says whether the damaged input is still valid. Outcomes: `clear` (refused with a SaecError
naming the file), `unclear` (any other exception, or a SaecError that names neither file), `silent_wrong`
(invalid input accepted), `accepted` (valid input accepted), `refused_valid` (valid input refused). A cut
CSV may be valid or not: either a load or a clear refusal counts as right."""


__all__ = ["INPUT_MUTATIONS", "INPUT_OUTCOMES", "KINDS", "MUTATIONS", "OUTCOMES", "Kind", "RobustnessConfig",
           "classify", "classify_input", "mutate", "mutate_input", "render", "run", "run_inputs"]
