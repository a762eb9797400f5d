"""An exported model (``saec export --onnx``) run by ONNX Runtime, without torch (the ``onnx`` extra).

:class:`OnnxModel` verifies the folder like any saved model (:func:`saec.artifact.read_artifact`: every
checksum) before ONNX Runtime sees a byte, then runs the graph on ids as
:meth:`saec.predict.Predictor.encode` makes them. It imports numpy and onnxruntime only, so a process that
serves through it (or measures it, :mod:`saec.bench.latency`) holds no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saec.errors import SaecError

FORMAT = "saec-model"  # saec.io.FORMAT, kept here so that this module needs no torch
ONNX_FILES = ("model.onnx", "onnx.json")  # saec.io.ONNX_FILES
ONNX_DATA = "model.onnx.data"  # saec.io.ONNX_DATA
UNREAD = ("tensors.safetensors", ONNX_DATA)  # hashed in chunks, not kept: PyTorch's tensors; ONNX Runtime maps the data


class OnnxModel:
    """An exported model run by ONNX Runtime: ``OnnxModel(folder)(ids)`` gives the probabilities of ids as
    :meth:`saec.predict.Predictor.encode` makes them. The folder is verified like any saved model first. A
    graph with external data (``model.onnx.data``, :class:`saec.export.OnnxGraph`) has ONNX Runtime map that
    file, after its SHA-256 was checked, and is refused if the file changed in between."""

    def __init__(self, folder: str | Path, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise SaecError("running an ONNX model needs the onnx extra: pip install 'saec[onnx]'") from None
        from saec.artifact import _identity, read_artifact

        folder = Path(folder)
        art = read_artifact(folder, FORMAT, "saved model", unread=UNREAD)
        if ONNX_FILES[0] not in art.data:
            raise SaecError(f"{folder} holds no {ONNX_FILES[0]}; write one with saec export MODEL --out DIR --onnx")
        self.description = art.json(ONNX_FILES[1])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        if ONNX_DATA in art.mapped:  # the verified graph names its data file, which ORT finds in this folder
            opts.add_session_config_entry("session.model_external_initializers_file_folder_path", str(art.folder))
        self.session = ort.InferenceSession(art.data[ONNX_FILES[0]], opts, providers=["CPUExecutionProvider"])
        if ONNX_DATA in art.mapped:
            path, hashed = art.mapped[ONNX_DATA]
            if _identity(path) != hashed:
                raise SaecError(f"{path} changed after its SHA-256 was checked: refusing to run it")
        self.names = [i["name"] for i in self.description["inputs"]]

    def __call__(self, ids: dict[str, Any]) -> Any:
        import numpy as np

        feeds = {n: np.ascontiguousarray(ids[n], dtype=np.int64) for n in self.names}
        return self.session.run(None, feeds)[0].astype(np.float64)


__all__ = ["OnnxModel"]
