"""``saec serve``: an HTTP prediction service over a saved model, switching to newly published versions.

FastAPI on uvicorn (the ``serve`` extra). Endpoints:

* ``POST /predict`` with ``{"records": [{"field": value, ...}, ...]}`` (raw values as in training; lists for
  multi-valued fields) returns ``{"probabilities": [...], "version": ..., "unknown": [[field, ...], ...]}``:
  probabilities in the records' order, the version that answered, and per record the fields whose value
  took the out-of-vocabulary path. A request the model cannot answer gets ``422`` (a body that is not JSON,
  a missing, unknown or wrongly typed field, an empty batch) or ``413`` (more records or bytes than the
  limits), with ``{"error": message}`` naming the record, the field and the problem
  (:class:`saec.predict.RequestError`).
* ``GET /health``: ``{"status": "ok", "version": ...}``.
* ``GET /model``: the served version's fields and methods, sizes, its published record (segment, metrics,
  ratio) and the SHA-256 of its manifest (which covers every file).

Given a folder of published versions (``saec periodic``'s ``DIR`` or ``DIR/serving``), a watcher thread reads
the ``current`` link every ``poll`` seconds; when it names another version, that version is loaded (every
file verified), warmed with one prediction, and only then swapped in with one assignment. A request holds
the predictor it started with, so a switch never drops or fails one; a version that fails to load is
reported on stderr and the old one keeps serving (it is tried again only once the link moves on).

Each process runs the model with ``SAEC_SERVE_THREADS`` torch threads (1 by default: with ``--workers`` the
processes, not threads, use the cores).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at definition
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from saec.errors import SaecError
from saec.predict import MAX_RECORDS, Predictor, RequestError, current_of, resolve

MAX_BODY = 16 << 20
"""Default largest request body in bytes."""
WORKER_TIMEOUT = 300
"""Seconds a worker may take to answer uvicorn's health check: its start loads and verifies the whole model
(minutes for 10^8 features; uvicorn's 5 s default kills a worker still hashing its files, again and again)."""
ENV = "SAEC_SERVE_CONFIG"
"""Environment variable carrying :func:`app_from_env`'s settings to uvicorn's worker processes."""


class ModelHolder:
    """The predictor being served and the watcher that replaces it when the ``current`` link moves."""

    def __init__(self, path: str | Path, poll: float = 1.0, max_records: int = MAX_RECORDS) -> None:
        self.path, self.poll, self.max_records = Path(path), poll, max_records
        self.source = resolve(self.path)
        self.predictor = Predictor.from_folder(self.source.folder, self.source.version, max_records)
        self._failed: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0

    def check(self) -> bool:
        """Switch to the version ``current`` names if it is another one; True if it switched."""
        if self.source.watch is None:
            return False
        try:
            now = current_of(self.source.watch)
        except SaecError:
            return False  # the link is being replaced or gone: keep serving, look again next time
        if now.version in (self.predictor.version, self._failed):
            return False
        try:
            predictor = Predictor.from_folder(now.folder, now.version, self.max_records)
        except (SaecError, OSError) as e:  # a damaged or vanished version: the old one keeps serving
            self._failed = now.version
            print(f"saec serve: not switching to {now.folder}: {e}", file=sys.stderr, flush=True)
            return False
        self.predictor, self._failed = predictor, None  # one assignment: a request sees old or new
        self.reloads += 1
        print(f"saec serve: now serving {now.folder}", file=sys.stderr, flush=True)
        return True

    def start(self) -> None:
        if self.source.watch is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="saec-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            self.check()


def model_info(p: Predictor) -> dict[str, Any]:
    """What ``GET /model`` says of a predictor."""
    from saec.nn.base import CompressedEmbedding
    from saec.nn.registry import method_of

    tables, nbytes = {}, p.model.embeddings.table_bytes()
    for name, t in p.model.embeddings.tables.items():
        f = p.fields[name]
        tables[name] = {"method": method_of(t) if isinstance(t, CompressedEmbedding) else "full",
                        "features": len(p.vocabs[name]), "dim": f.dim, "multi_valued": f.multi_valued,
                        "bytes": nbytes[name]}
    return {"version": p.version, "model": type(p.model).__name__, "fields": tables,
            "published": p.info.get("published"), "manifest_sha256": p.digest}


def create_app(path: str | Path, *, poll: float = 1.0, max_records: int = MAX_RECORDS,
               max_body: int = MAX_BODY) -> Any:
    """The FastAPI application serving the model at ``path`` (see the module docstring)."""
    from contextlib import asynccontextmanager

    import torch
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool

    torch.set_num_threads(int(os.environ.get("SAEC_SERVE_THREADS", "1")))
    holder = ModelHolder(path, poll, max_records)

    @asynccontextmanager
    async def lifespan(app: Any):
        holder.start()
        yield
        holder.stop()

    app = FastAPI(title="saec", lifespan=lifespan)
    app.state.holder = holder

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.post("/predict")
    async def predict(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body:
            return error(413, f"request body of {int(declared)} bytes; at most {max_body} are accepted")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                return error(413, f"request body over {max_body} bytes; at most {max_body} are accepted")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return error(422, f"the body is not JSON: {e}")
        if not isinstance(payload, dict) or "records" not in payload:
            return error(422, 'expected a JSON object {"records": [{"field": value, ...}, ...]}')
        extra = [k for k in payload if k != "records"]
        if extra:
            return error(422, f"unknown key {extra[0]!r} in the body; it holds only 'records'")
        p = holder.predictor  # this request's model, whatever a reload does meanwhile
        try:
            ids = p.encode(payload["records"])
        except RequestError as e:
            return error(e.status, str(e))
        probs = await run_in_threadpool(p.forward, ids)
        return {"probabilities": probs.tolist(), "version": p.version, "unknown": p.unknown(ids)}

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok", "version": holder.predictor.version}

    @app.get("/model")
    async def model() -> Any:
        return model_info(holder.predictor)

    return app


def app_from_env() -> Any:
    """:func:`create_app` with the settings ``saec serve`` put in :data:`ENV` (for ``--workers`` > 1)."""
    cfg = json.loads(os.environ[ENV])
    return create_app(cfg["path"], poll=cfg["poll"], max_records=cfg["max_records"], max_body=cfg["max_body"])


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, poll: float = 1.0,
          max_records: int = MAX_RECORDS, max_body: int = MAX_BODY, log_level: str = "warning") -> None:
    """Run the service until interrupted; the model is verified before the port is opened."""
    try:
        import uvicorn
    except ImportError:
        raise SaecError("saec serve needs the serve extra: pip install 'saec[serve]'") from None
    resolve(path)
    for name, value, least in (("--port", port, 0), ("--workers", workers, 1), ("--max-records", max_records, 1),
                               ("--max-body", max_body, 1)):
        if value < least:
            raise SaecError(f"{name} is {value}; expected at least {least}")
    if not poll > 0:
        raise SaecError(f"--poll is {poll}; expected a positive number of seconds")
    if workers == 1:
        app = create_app(path, poll=poll, max_records=max_records, max_body=max_body)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    os.environ[ENV] = json.dumps({"path": str(Path(path).resolve()), "poll": poll, "max_records": max_records,
                                  "max_body": max_body})
    Predictor.load(path, max_records)  # a model that does not verify fails here, not in each worker
    uvicorn.run("saec.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_worker_healthcheck=WORKER_TIMEOUT)


__all__ = ["MAX_BODY", "ModelHolder", "create_app", "model_info", "serve"]
