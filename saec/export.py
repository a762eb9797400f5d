"""ONNX export of a saved CTR model, embedding lookups included (the ``onnx`` extra).

The exported graph takes one int64 tensor of ids per field, in schema order, named after the fields: shape
``(batch,)`` for a single-valued field, ``(batch, length)`` for a multi-valued one padded with
:data:`~saec.data.vocab.PAD_ID`; :data:`~saec.data.vocab.OOV_ID` takes the field's out-of-vocabulary
vector, as in :class:`saec.nn.collection.EmbeddingBagCollection`. It returns ``probability`` (batch,). The
ids are those :meth:`saec.predict.Predictor.encode` gives for raw records.

Every table becomes plain gathers and arithmetic ONNX Runtime runs: a full or float16 table is a Gather (float16
rows cast in-graph), Saec is a Gather of the mask then of the codebook, and the row-wise integer tables of
:mod:`saec.nn.quantized` (int8, int4, int2, and Saec's int8 codebook) keep their codes as uint8 and are
dequantized in-graph, ``code * scale + bias`` of each looked-up row (4 and 2-bit codes unpacked by integer division
and remainder; scale and bias kept in their float16), so the file is as small as the table. The hashing family,
QR, MEmCom, truncation, low-dimensional, factorized, mixed-dimension and TT tables are exported through their
own lookups (mixed-dimension and TT rewritten without data-dependent shapes). ``tests/test_export.py`` checks
every method of :data:`saec.nn.registry.METHODS` against PyTorch in ONNX Runtime
(:class:`saec.onnx_model.OnnxModel`). A model whose tensors take at least :data:`EXTERNAL_BYTES` (and any over
protobuf's 2 GiB) keeps them in ONNX's external data (``model.onnx.data``), which ONNX Runtime memory-maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saec.data.vocab import PAD_ID
from saec.errors import SaecError
from saec.nn.mixed_dim import block_vectors
from saec.nn.quantized import _CODES_PER_BYTE, _SCALE_BIAS, QuantizedEmbedding

OPSET = 18
LIMIT = 2**31 - 2**24
"""Most tensor bytes one ONNX file holds (protobuf caps a message at 2 GiB, less room for the graph)."""
EXTERNAL_BYTES = 64 << 20
"""A graph whose tensors take at least this many bytes keeps them in external data (as it must from :data:`LIMIT`
on): ONNX Runtime maps an external file instead of copying the tensors into the process."""


class RowwiseDequant(nn.Module):
    """Rows of a packed row-wise integer table (:class:`~saec.nn.quantized.QuantizedEmbedding`, 8/4/2 bits):
    codes, scale and bias split out of torch's packed layout once, each looked-up row dequantized."""

    def __init__(self, table: QuantizedEmbedding) -> None:
        super().__init__()
        bits = table.bits
        dtype, nbytes = _SCALE_BIAS[bits]
        packed = table.packed
        self.bits, self.per_byte, self.dim = bits, _CODES_PER_BYTE[bits], table.embedding_dim
        self.register_buffer("codes", packed[:, :-nbytes].contiguous())  # uint8 (v, d / per_byte)
        sb = packed[:, -nbytes:].contiguous().view(dtype)  # (v, 2): scale, bias in the table's own dtype
        self.register_buffer("scale_bias", sb.clone())
        self.register_buffer("place", 2 ** (torch.arange(self.per_byte, dtype=torch.int32) * bits))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        codes = self.codes[ids]  # (..., d / per_byte) uint8
        if self.per_byte > 1:  # FBGEMM packs the lowest bits first: code j is bits (j % p) * b.. of byte j // p
            # (integer division and remainder: the exporter's shifts and masks on uint8 mix int8 in, which
            # ONNX Runtime refuses)
            parts = torch.div(codes.to(torch.int32).unsqueeze(-1), self.place, rounding_mode="floor") % (1 << self.bits)
            codes = parts.reshape(*codes.shape[:-1], self.dim)
        sb = self.scale_bias[ids].float()
        return codes.float() * sb[..., :1] + sb[..., 1:]


class CodebookRows(nn.Module):
    """Saec's rows, ``codebook[mask[id]]``, the codebook any row module (float or dequantized)."""

    def __init__(self, mask: torch.Tensor, codebook: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.codebook = codebook

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.codebook(self.mask[ids].long())


class HalfRows(nn.Module):
    """A float16 table's rows, cast to float32 in-graph."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids].float()


class GatherRows(nn.Module):
    """A float table's rows."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids]


def rows_module(table: nn.Module) -> nn.Module:
    """A module giving ``table``'s float32 rows for ids in range, in operations ONNX has."""
    from saec.nn.clustered import ClusteredEmbedding, QuantizedClusteredEmbedding
    from saec.nn.full import FullEmbedding

    if isinstance(table, nn.Embedding):
        return GatherRows(table.weight)
    if isinstance(table, FullEmbedding):
        return GatherRows(table.weight)
    if isinstance(table, QuantizedEmbedding):
        return HalfRows(table.weight) if table.bits == 16 else RowwiseDequant(table)
    if isinstance(table, QuantizedClusteredEmbedding):
        return CodebookRows(table.mask, rows_module(table.codebook))
    if isinstance(table, ClusteredEmbedding):
        return CodebookRows(table.mask, GatherRows(table.codebook))
    from saec.nn.memcom_int8 import MEmComInt8Embedding
    from saec.nn.mixed_dim import MixedDimEmbedding
    from saec.nn.tt import TTEmbedding

    if isinstance(table, MEmComInt8Embedding):
        return MEmComInt8Rows(table)

    if isinstance(table, MixedDimEmbedding):
        return MixedDimRows(table)
    if isinstance(table, TTEmbedding):
        return TTRows(table)
    return EmbedRows(table)  # the other methods: their own lookup is already gathers and arithmetic


class EmbedRows(nn.Module):
    """A compressed table's own lookup (:meth:`~saec.nn.base.CompressedEmbedding.embed`), without the id
    range check of its ``forward`` (the graph's ids come from the vocabularies)."""

    def __init__(self, table: nn.Module) -> None:
        super().__init__()
        self.table = table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table.embed(ids)


class MEmComInt8Rows(nn.Module):
    """MEmCom's rows with an int8 ``U`` (:mod:`saec.nn.memcom_int8`): ``U`` dequantized in-graph, times ``V`` (+ ``W``)."""

    def __init__(self, table: nn.Module) -> None:
        super().__init__()
        self.U, self.num_buckets, self.bias = RowwiseDequant(table.U), table.num_buckets, table.bias
        self.register_buffer("V", table.V)
        self.register_buffer("W", table.W)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.U(ids % self.num_buckets) * self.V[ids].float().unsqueeze(-1)
        return out + self.W[ids].float().unsqueeze(-1) if self.bias else out


class MixedDimRows(nn.Module):
    """Mixed-dimension rows (Ginart et al.) without data-dependent shapes: every block looks up every id
    (clamped into the block) and the id's own block is selected."""

    def __init__(self, table: nn.Module) -> None:
        super().__init__()
        self.table = table
        self.bounds = [(int(table.offsets[k]), int(table.offsets[k + 1])) for k in range(len(table.tables))]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = None
        for k, (lo, hi) in enumerate(self.bounds):
            x = block_vectors(self.table.tables, self.table.projections, k, (ids - lo).clamp(0, hi - lo - 1))
            inside = ((ids >= lo) & (ids < hi)).unsqueeze(-1)
            out = x if out is None else torch.where(inside, x, out)
        return out


class TTRows(nn.Module):
    """Tensor-train rows (TT-Rec) as one chain of batched products per id (the table's own lookup shares
    work between ids with torch.unique, whose output size depends on the data)."""

    def __init__(self, table: nn.Module) -> None:
        super().__init__()
        self.table = table

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = self.table
        out = torch.ones(ids.shape[0], 1, 1, dtype=t.cores[0].weight.dtype)
        width = 1
        for k, (stride, n) in enumerate(zip(t.strides, t.row_factors)):
            e, r = t.dim_factors[k], t.ranks[k + 1]
            g = t.cores[k](torch.div(ids, stride, rounding_mode="floor") % n).view(ids.shape[0], t.ranks[k], e * r)
            width *= e
            out = torch.bmm(out, g).view(ids.shape[0], width, r)
        return out.view(ids.shape[0], t.embedding_dim)


class ExportedModel(nn.Module):
    """``model`` as a function of positional id tensors (schema order) returning probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        coll = model.embeddings
        self.model = model
        self.fields = [f for f in coll.schema.fields]
        self.rows = nn.ModuleList([rows_module(coll.tables[f.name]) for f in self.fields])
        self.oov = [coll.oov[f.name].detach() for f in self.fields]

    def forward(self, *ids: torch.Tensor) -> torch.Tensor:
        vecs = []
        for f, rows, oov, x in zip(self.fields, self.rows, self.oov, ids):
            known = x >= 0
            found = rows(x.clamp(min=0).reshape(-1)).reshape(*x.shape, f.dim)
            v = torch.where(known.unsqueeze(-1), found, oov)
            if f.multi_valued:
                present = (x != PAD_ID).unsqueeze(-1).to(v.dtype)
                v = (v * present).sum(dim=1)
                if f.pooling == "mean":
                    v = v / present.sum(dim=1).clamp(min=1.0)
            vecs.append(v)
        return torch.sigmoid(self.model.head(vecs))


def example_ids(model: nn.Module, batch: int = 4, length: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """Random ids for every field (some unknown, and padding in multi-valued fields), in schema order."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for f in model.embeddings.schema.fields:
        n = model.embeddings.num_embeddings(f.name)
        shape = (batch, length) if f.multi_valued else (batch,)
        x = torch.randint(-1, n, shape, generator=gen)
        if f.multi_valued:
            x[:, -1] = PAD_ID
        out.append(x)
    return out


@dataclass
class OnnxGraph:
    """An exported model's ONNX graph, ready to be written into a saved model (:func:`saec.io.save_model`):
    ``model.onnx``, with the tensors in ``model.onnx.data`` beside it when ``external`` (ONNX's external data:
    protobuf cannot hold over 2 GiB, and ONNX Runtime memory-maps external tensors instead of copying them), and
    ``description``, what it takes and gives (``onnx.json``)."""

    model: Any  # an onnx_ir.Model
    description: dict[str, Any]
    external: bool

    def to_bytes(self) -> bytes:
        """The graph as one ONNX file (not for an external-data graph)."""
        if self.external:
            raise SaecError("this graph keeps its tensors in external data; write it with write()")
        import onnx_ir as ir

        return ir.to_proto(self.model).SerializeToString()

    def write(self, folder: Path) -> None:
        """Write ``model.onnx`` (and ``model.onnx.data``) as new files in ``folder``."""
        import os

        import onnx_ir as ir

        path = folder / ONNX_FILE
        if path.exists() or (folder / ONNX_DATA).exists():
            raise FileExistsError(path)
        ir.save(self.model, path, external_data=ONNX_DATA if self.external else None)
        for name in (ONNX_FILE, ONNX_DATA) if self.external else (ONNX_FILE,):
            with open(folder / name, "rb+") as f:
                os.fsync(f.fileno())


ONNX_FILE, ONNX_DATA = "model.onnx", "model.onnx.data"  # (saec.io and saec.onnx_model name them too)


def to_onnx(model: nn.Module, external: bool | None = None) -> OnnxGraph:
    """The graph of :class:`ExportedModel` for ``model``, batch size and list lengths dynamic, and what it takes and
    gives. ``external``: keep the tensors in ``model.onnx.data`` (None: when they take at least
    :data:`EXTERNAL_BYTES`)."""
    try:
        import onnx  # torch.onnx's exporter needs onnx and onnxscript
        import onnxscript  # noqa: F401
    except ImportError:
        raise SaecError("ONNX export needs the onnx extra: pip install 'saec[onnx]'") from None
    import warnings

    model.eval()
    wrapped = ExportedModel(model).eval()
    tensors = [*wrapped.rows.parameters(), *wrapped.rows.buffers(),
               *(p for n, p in model.named_parameters() if not n.startswith("embeddings.tables."))]
    size = sum(t.numel() * t.element_size() for t in tensors)
    args = tuple(example_ids(model))
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch, 1: torch.export.Dim(f"length_{i}", min=1)} if f.multi_valued else {0: batch}
                   for i, f in enumerate(wrapped.fields))
    names = [f.name for f in wrapped.fields]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapped, args, input_names=names, output_names=["probability"],
                                    dynamic_shapes=(shapes,), opset_version=OPSET, dynamo=True, verbose=False)
    graph = program.model
    for node in graph.graph.all_nodes():  # the exporter records each node's Python stack: not the model's business
        node.metadata_props.clear()
        node.doc_string = None
    description = {
        "opset": OPSET, "output": "probability", "oov_id": -1, "pad_id": PAD_ID,
        "inputs": [{"name": f.name, "dtype": "int64", "shape": ["batch", "length"] if f.multi_valued else ["batch"]}
                   for f in wrapped.fields],
        "torch": torch.__version__, "onnx": onnx.__version__,
    }
    if external is False and size >= LIMIT:
        raise SaecError(f"the model's tensors take {size:,} bytes; one ONNX file holds at most {LIMIT:,} (protobuf's "
                        f"2 GiB): export it with external data")
    return OnnxGraph(graph, description, size >= EXTERNAL_BYTES if external is None else bool(external))
