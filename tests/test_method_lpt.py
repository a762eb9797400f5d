"""Low-precision training (lpt, alpt): integer storage, dequantized lookups, unbiased stochastic rounding, the
update inside backward (only looked-up rows, duplicates coalesced), eval leaves the table alone, ALPT's step
learns, codes stay in range."""

import pytest
import torch

from saec.nn.lpt import code_range, row_bytes
from saec.nn.registry import make_embedding

V, D = 50, 8


@pytest.mark.parametrize("bits,dtype", [(2, torch.uint8), (4, torch.uint8), (8, torch.int8), (16, torch.int16)])
@pytest.mark.parametrize("method", ["lpt", "alpt"])
def test_codes_are_integers_of_the_right_bytes_and_lookups_are_codes_times_step(method, bits, dtype):
    table = make_embedding(method, V, D, bits=bits, init_std=0.05)
    assert table.codes.dtype == dtype
    assert table.codes.numel() * table.codes.element_size() == V * row_bytes(D, bits) == V * D * bits // 8
    codes = table.read(torch.arange(V))
    lo, hi = code_range(bits)
    assert codes.min() >= lo and codes.max() <= hi and codes.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(table(torch.arange(V)), codes.float() * table.step_value())


def test_stochastic_rounding_is_unbiased():
    table = make_embedding("lpt", V, D, bits=8, seed=1)
    x = torch.full((20000,), 3.3)
    r = table.round(x)
    assert set(r.unique().tolist()) == {3.0, 4.0}
    se = (0.3 * 0.7 / len(x)) ** 0.5
    assert abs(r.mean().item() - 3.3) < 4 * se


@pytest.mark.parametrize("method", ["lpt", "alpt"])
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_a_step_moves_the_looked_up_rows_only_and_coalesces_duplicates(method, optimizer):
    a = make_embedding(method, V, D, bits=16, optimizer=optimizer, lr=1e-4, seed=2)
    b = make_embedding(method, V, D, bits=16, optimizer=optimizer, lr=1e-4, seed=2)
    before = a.read(torch.arange(V)).clone()
    w = torch.randn(3, D, generator=torch.Generator().manual_seed(0))
    (a(torch.tensor([4, 9, 4])) * w).sum().backward()
    after = a.read(torch.arange(V))
    changed = (after != before).any(1).nonzero().flatten().tolist()
    assert changed == [4, 9]
    (b(torch.tensor([4, 9])) * torch.stack([w[0] + w[2], w[1]])).sum().backward()  # the same summed gradient
    assert torch.equal(b.read(torch.arange(V)), after)
    if optimizer == "sgd":  # fp update w - lr g, rounded to within one code of it
        step = float(a.step_value().detach()) if method == "alpt" else a.step_value()
        want = before[4].float() * step - 1e-4 * (w[0] + w[2])
        assert torch.all((after[4].float() * step - want).abs() <= step + 1e-6)


@pytest.mark.parametrize("method", ["lpt", "alpt"])
def test_eval_and_no_grad_leave_the_table_alone(method):
    table = make_embedding(method, V, D, bits=4)
    before = table.codes.clone()
    with torch.no_grad():
        table(torch.arange(V)).sum()
    table.eval()
    out = table(torch.arange(V))
    if out.requires_grad:
        out.sum().backward()
    assert torch.equal(table.codes, before)


def test_alpt_step_gets_a_gradient_and_moves_under_the_optimizer():
    table = make_embedding("alpt", V, D, bits=4, init_std=0.05)
    opt = torch.optim.Adagrad(table.parameters(), lr=0.01)
    before = float(table.step_value())
    (table(torch.arange(V)) * 3).sum().backward()
    assert table.log_step.grad is not None and table.log_step.grad.abs() > 0
    opt.step()
    assert float(table.step_value()) != before
    assert table.param_count() == 1 and make_embedding("lpt", V, D).param_count() == 0


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_codes_are_clamped_to_their_range(bits):
    table = make_embedding("lpt", V, D, bits=bits, lr=1e6)
    (table(torch.arange(V)) * torch.linspace(-1, 1, D)).sum().backward()
    lo, hi = code_range(bits)
    codes = table.read(torch.arange(V))
    assert codes.min() == lo and codes.max() == hi


def test_budget_sets_the_bits():
    assert make_embedding("lpt", 1000, 16, budget_bytes=1000 * 4).bits == 2
    assert make_embedding("lpt", 1000, 16, budget_bytes=1000 * 16).bits == 8
    with pytest.raises(ValueError, match="too small"):
        make_embedding("alpt", 1000, 16, budget_bytes=1000 * 4)  # its step's 4 bytes do not fit
