"""Real low-precision tables (saec.nn.quantized): torch's packed row-wise layout, error bounds against a
plain-torch reference, fused pooling, true saved sizes."""

import io

import pytest
import torch
import torch.nn.functional as F

from saec.errors import SaecError
from saec.nn.bag import CompressedEmbeddingBag
from saec.nn.quantized import BITS, QuantizedEmbedding, row_bytes

INT_BITS = (8, 4, 2)
FP16_EPS = 2.0**-11  # float16's relative rounding (half an ulp)


def trained_weight(v=300, d=16, seed=0):
    """Rows of very different ranges and offsets, like a trained table's."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, d, generator=g) * torch.rand(v, 1, generator=g) * 3 + torch.randn(v, 1, generator=g)


def ids_and_offsets(v, n=200, bags=37, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, v, (n,), generator=g)
    cuts = torch.randint(0, n + 1, (bags - 1,), generator=g).sort().values
    return ids, torch.cat([torch.zeros(1, dtype=torch.long), cuts])  # includes empty bags


@pytest.mark.parametrize("bits", INT_BITS)
def test_rows_within_half_a_step_of_the_float_rows(bits):
    w = trained_weight()
    table = QuantizedEmbedding.from_float(w, bits=bits)
    out = table(torch.arange(len(w)))
    assert out.dtype == torch.float32 and out.shape == w.shape
    lo, hi = w.aminmax(dim=1)
    levels = 2**bits - 1
    step = (hi - lo) / levels  # the reference scale, in float32
    bound = step / 2 + 1e-6 * w.abs().amax(dim=1)
    if bits != 8:  # bias (the minimum) and scale are float16: add their rounding
        bound = bound + FP16_EPS * lo.abs() + levels * FP16_EPS * step
    assert ((out - w).abs() <= bound.unsqueeze(1)).all()
    # the stored scale and bias are the reference's (float16-rounded for 4 and 2 bits)
    scale, bias = table.scale_bias()
    if bits == 8:
        assert torch.equal(bias, lo)
        assert torch.allclose(scale, step, rtol=1e-6, atol=0)
    else:
        assert torch.equal(bias, lo.half().float())
        assert torch.equal(scale, ((hi - bias) / levels).half().float())
    # every value sits on its row's grid bias + q * scale with q in [0, 2^b - 1]
    q = (out - bias.unsqueeze(1)) / scale.unsqueeze(1)
    assert (q - q.round()).abs().max() < 1e-3 and q.round().min() >= 0 and q.round().max() <= levels


@pytest.mark.parametrize("bits", INT_BITS)
def test_codes_match_a_plain_torch_affine_quantization(bits):
    w = trained_weight(v=50, d=8)
    table = QuantizedEmbedding.from_float(w, bits=bits)
    scale, bias = (t.unsqueeze(1) for t in table.scale_bias())
    ref = bias + (((w - bias) / scale).round().clamp(0, 2**bits - 1)) * scale
    out = table(torch.arange(len(w)))
    # the operator multiplies by 1/scale where the reference divides: a code may differ by one at a tie
    diff = (out - ref).abs()
    off = diff > 1e-5
    assert off.float().mean() < 0.01 and (diff[off] <= 1.001 * scale.abs().expand_as(diff)[off]).all()
    assert torch.equal(table.dequantize(), out)


def test_float16_is_the_half_precision_copy():
    w = trained_weight()
    table = QuantizedEmbedding.from_float(w, bits=16)
    assert table.weight.dtype == torch.float16
    assert torch.equal(table(torch.arange(len(w))), w.half().float())
    assert torch.equal(table.dequantize(), w.half().float())


def test_layout_is_torchs_packed_rows():
    d = 16
    for bits, width in ((8, d + 8), (4, d // 2 + 4), (2, d // 4 + 4)):
        table = QuantizedEmbedding(10, d, bits=bits)
        assert table.packed.dtype == torch.uint8 and table.packed.shape == (10, width) == (10, row_bytes(d, bits))
        assert list(table.parameters()) == [] and [n for n, _ in table.named_buffers()] == ["packed"]
        assert not table.packed.any()  # the constructor's table is zeros
    table = QuantizedEmbedding(10, d, bits=16)
    assert [n for n, _ in table.named_buffers()] == ["weight"] and table.weight.dtype == torch.float16
    # the buffer is exactly what torch's prepack operator writes
    w = trained_weight(v=10, d=d)
    for bits, op in ((8, "byte"), (4, "4bit"), (2, "2bit")):
        expected = getattr(torch.ops.quantized, f"embedding_bag_{op}_prepack")(w)
        assert torch.equal(QuantizedEmbedding.from_float(w, bits=bits).packed, expected)


@pytest.mark.parametrize("bits", BITS)
def test_constant_rows_round_trip(bits):
    values = torch.tensor([0.0, 0.5, -2.0, 3.0, 0.7, -0.3, 1 / 3, 123.456, 1e-3, 1e-7])
    w = values.unsqueeze(1).repeat(1, 8)
    out = QuantizedEmbedding.from_float(w, bits=bits)(torch.arange(len(w)))
    if bits == 8:
        assert torch.equal(out, w)  # float32 bias, scale unused
    elif bits == 16:
        assert torch.equal(out, w.half().float())
    else:
        exact = w.half().float() == w  # float16 numbers come back exactly
        assert torch.equal(out[exact], w[exact]) and not exact.all()
        # others within float16's rounding of the value (half an ulp, or 2^-25 among its subnormals);
        # FBGEMM folds the bias's rounding into the scale, which is often much closer (0.7: 4e-7)
        assert ((out - w).abs() <= FP16_EPS * w.abs() + 2.0**-25).all()
        assert (out - w).abs().max() < 1e-5


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_pooled_equals_pooling_the_looked_up_rows(bits, mode):
    w = trained_weight()
    table = QuantizedEmbedding.from_float(w, bits=bits)
    ids, offsets = ids_and_offsets(len(w))
    bag = CompressedEmbeddingBag(table, mode=mode)
    ref = F.embedding_bag(ids, table.dequantize(), offsets, mode=mode)
    assert torch.allclose(bag(ids, offsets), ref, atol=1e-5, rtol=1e-5)
    assert torch.allclose(table.pooled(ids, offsets, mode, None), ref, atol=1e-5, rtol=1e-5)
    if mode == "sum":
        psw = torch.rand(len(ids), generator=torch.Generator().manual_seed(2))
        ref = F.embedding_bag(ids, table.dequantize(), offsets, mode="sum", per_sample_weights=psw)
        assert torch.allclose(bag(ids, offsets, per_sample_weights=psw), ref, atol=1e-5, rtol=1e-5)
    # 2-D input and int32 ids
    two_d = ids[:180].reshape(20, 9)
    ref = F.embedding_bag(two_d, table.dequantize(), mode=mode)
    assert torch.allclose(bag(two_d.int()), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bits", BITS)
def test_saved_file_takes_the_reported_bytes(bits):
    v, d = 10_000, 64
    table = QuantizedEmbedding.from_float(trained_weight(v, d), bits=bits)
    expected = {16: 2 * d, 8: d + 8, 4: d // 2 + 4, 2: d // 4 + 4}[bits] * v
    assert table.nbytes() == expected == QuantizedEmbedding.footprint(v, d, bits=bits).nbytes
    assert QuantizedEmbedding.footprint(v, d, bits=bits).params == table.param_count() == 0
    state = table.state_dict()
    assert sum(t.numel() * t.element_size() for t in state.values()) == expected
    buf = io.BytesIO()
    torch.save(state, buf)
    assert 0 <= buf.tell() - expected < 2048  # torch's zip and pickle overhead (1641 bytes in torch 2.13)
    float_bytes = 4 * v * d
    # float32 / this: 2, 256/72 = 3.6, 256/36 = 7.1, 256/20 = 12.8 (the per-row scale and bias cost 8 or 4 bytes)
    assert float_bytes / buf.tell() > {16: 1.99, 8: 3.5, 4: 7.0, 2: 12.5}[bits]
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    rebuilt = QuantizedEmbedding.from_config(v, d, table.config())
    rebuilt.load_state_dict(loaded)
    ids = torch.randint(0, v, (500,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(rebuilt(ids), table(ids))


@pytest.mark.parametrize("bits", BITS)
def test_config_is_bits_only(bits):
    table = QuantizedEmbedding(8, 8, bits=bits, seed=3)
    assert table.config() == {"bits": bits}
    assert QuantizedEmbedding.from_config(8, 8, table.config()).config() == {"bits": bits}


def test_lookup_contract():
    table = QuantizedEmbedding.from_float(trained_weight(v=20, d=8), bits=4)
    ids = torch.tensor([[0, 19, 5], [7, 7, 3]])
    out = table(ids)
    assert out.shape == (2, 3, 8) and torch.equal(out[1, 0], out[1, 1])
    assert table(torch.zeros(0, 2, dtype=torch.long)).shape == (0, 2, 8)
    with pytest.raises(IndexError, match="id 20"):
        table(torch.tensor([20]))
    with pytest.raises(IndexError, match="id -1"):
        table(torch.tensor([-1]))


@pytest.mark.parametrize("bits, d, need", [(4, 7, "multiple of 2"), (2, 6, "multiple of 4"), (2, 10, "multiple of 4")])
def test_dimension_the_packing_cannot_take(bits, d, need):
    for build in (lambda: QuantizedEmbedding(10, d, bits=bits),
                  lambda: QuantizedEmbedding.footprint(10, d, bits=bits),
                  lambda: QuantizedEmbedding.from_float(torch.randn(10, d), bits=bits)):
        with pytest.raises(SaecError, match=f"embedding_dim must be a {need} for bits={bits}.*embedding_dim={d}"):
            build()


def test_bad_bits_and_bad_rows():
    with pytest.raises(SaecError, match="bits must be one of"):
        QuantizedEmbedding(10, 8, bits=3)
    w = torch.zeros(5, 8)
    w[3, 2] = float("nan")
    for bits in BITS:
        with pytest.raises(SaecError, match="row 3 of the weight has NaN or infinite values"):
            QuantizedEmbedding.from_float(w, bits=bits)
    w[3, 2] = float("-inf")
    with pytest.raises(SaecError, match="row 3"):
        QuantizedEmbedding.from_float(w, bits=8)
    big = torch.zeros(5, 8)
    big[2, 0] = 1e6  # fine in float32; beyond float16 (bits=16) and a float16 scale (4 and 2 bits)
    assert QuantizedEmbedding.from_float(big, bits=8)(torch.tensor([2]))[0, 0] == 1e6
    for bits in (16, 4, 2):
        with pytest.raises(SaecError, match="row 2 of the weight"):
            QuantizedEmbedding.from_float(big, bits=bits)


def test_from_float_reads_modules_and_leaves_them_alone():
    emb = torch.nn.EmbeddingBag(30, 8, mode="sum")
    before = emb.weight.detach().clone()
    table = QuantizedEmbedding.from_float(emb, bits=8)
    assert torch.equal(emb.weight, before) and emb.weight.requires_grad
    assert (table.dequantize() - before).abs().max() <= (before.amax(1) - before.amin(1)).max() / 255
    with torch.no_grad():  # nothing in the table refers to the module's storage
        emb.weight.add_(1.0)
    assert (table.dequantize() - before).abs().max() < 0.1


def test_lookup_benchmark_records_and_renders_from_its_json(tmp_path):
    """saec.bench.lookup on a toy table: the record is plain JSON, the page comes from it alone."""
    import json

    from saec.bench.lookup import BARE, REFERENCE, LookupConfig, render, run

    cfg = LookupConfig(rows=500, dims=(8,), bag_lengths=(1, 3), id_dists=("uniform", "zipf"), threads=(1,),
                       batch=16, repeats=3, warmup=1, batches=4, retry_budget_s=0.0)
    threads = torch.get_num_threads()
    record = json.loads(json.dumps(run(cfg, ["python", "benchmarks/quantized_lookup.py"], progress=False)))
    assert torch.get_num_threads() == threads  # restored
    assert len(record["cells"]) == 4 * 6 and all(len(c["times_s"]) == 3 for c in record["cells"])
    sizes = {t["variant"]: t["nbytes"] for t in record["tables"]}
    assert sizes == {REFERENCE: 500 * 8 * 4, "fp16": 500 * 8 * 2, "int8": 500 * 16, "int4": 500 * 8, "int2": 500 * 6,
                     BARE: 500 * 16}
    errors = {c["variant"]: c["max_abs_error"] for c in record["cells"] if c["bag_length"] == 3}
    assert errors[REFERENCE] == 0 and errors["fp16"] < errors["int8"] < errors["int4"] < errors["int2"] < 1
    md, png = tmp_path / "page.md", tmp_path / "page.png"
    render(record, md, png)
    text = md.read_text()
    assert "| 8 | int4 | 4,000 |" in text and png.stat().st_size > 0
    assert f"- date: {record['environment']['date']}" in text  # the run's environment, not the renderer's
    render(json.loads(json.dumps(record, sort_keys=True)), md, png)
    assert md.read_text() == text
