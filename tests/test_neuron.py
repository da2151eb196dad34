"""The shared LIF step: equal to snnTorch's Leaky, strict threshold, reset to zero, AND."""

from __future__ import annotations

import pytest
import snntorch
import torch

from mksgn.core.neuron import COINCIDENCE, LeakyParams, LIFParams, heaviside, lif_fire, lif_step
from mksgn.train.neuron import LIF


@pytest.mark.parametrize(("beta", "threshold"), [(0.5, 1.0), (0.9, 0.7), (0.0, 1.5), (1.0, 2.0)])
def test_equals_snntorch_leaky_spike_for_spike(beta, threshold):
    torch.manual_seed(0)
    steps, shape = 30, (64, 8)
    currents = torch.randn(steps, *shape) * 1.2 + 0.4
    leaky = snntorch.Leaky(beta=beta, threshold=threshold, reset_mechanism="zero")
    mem = leaky.reset_mem()
    v = torch.zeros(shape)
    params = LIFParams(beta, threshold)
    total = 0.0
    for t in range(steps):
        ref_spk, mem = leaky(currents[t], mem)
        spk, v = lif_step(currents[t], v, params)
        assert torch.equal(spk, ref_spk), f"step {t}"
        # where no spike, both membranes agree; after a spike ours is reset at once
        assert torch.allclose(v[spk == 0], mem[spk == 0], atol=1e-6)
        total += float(spk.sum())
    assert 0 < total < steps * currents[0].numel()  # the comparison means something


def test_strict_threshold_and_reset_to_zero():
    params = LIFParams(beta=0.5, threshold=1.0)
    spk, v = lif_step(torch.tensor([1.0, 1.0001, 0.5]), torch.zeros(3), params)
    assert spk.tolist() == [0.0, 1.0, 0.0]
    assert v.tolist() == [1.0, 0.0, 0.5]
    spk, v = lif_step(torch.tensor([0.0, 0.0, 0.8]), v, params)
    assert spk.tolist() == [0.0, 0.0, 1.0]  # 0.25 + 0.8 = 1.05 > 1
    assert v.tolist() == [0.5, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reset_to_zero_equals_where_bit_for_bit(dtype):
    """The reset to zero (a product, for speed) gives torch.where's values bit for bit, the
    gradient too, for membranes of both signs, zeros of both signs and values at threshold."""
    g = torch.Generator().manual_seed(0)
    v = torch.cat([torch.randn(4000, generator=g, dtype=dtype) * 3,
                   torch.tensor([0.0, -0.0, 1.0, 1.0 + 1e-6, -1.0], dtype=dtype)]).requires_grad_()
    spikes, after = lif_fire(v, LeakyParams(a=0.5, threshold=1.0))
    expected = torch.where(spikes > 0, 0.0, v)
    assert after.dtype == dtype and torch.equal(after, expected)
    assert torch.equal(torch.signbit(after), torch.signbit(expected))
    grad, = torch.autograd.grad(after.sum(), v)
    grad_ref, = torch.autograd.grad(expected.sum(), v)
    assert torch.equal(grad, grad_ref)
    other = lif_fire(v.detach(), LeakyParams(a=0.5, threshold=1.0, reset=-0.25))[1]  # another reset: where
    assert torch.equal(other, torch.where(spikes > 0, -0.25, v.detach()))


def test_coincidence_neuron_is_an_and():
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    b = torch.tensor([0.0, 1.0, 0.0, 1.0])
    v = torch.zeros(4)
    for _ in range(3):  # no memory: the same answer every step
        spk, v = lif_step(a + b, v, COINCIDENCE)
        assert spk.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_surrogate_gradient_and_identical_forward():
    lif = LIF(LIFParams())
    x = torch.randn(100, requires_grad=True)
    spk_train, _ = lif(x * 2)
    spk_train.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        spk_eval, _ = lif(x * 2)
    assert torch.equal(spk_train.detach(), spk_eval)
    assert torch.equal(spk_eval, heaviside(x.detach() * 2 - 1.0))


@pytest.mark.parametrize(("kwargs", "match"), [({"beta": 1.5}, "beta"), ({"threshold": 0.0}, "threshold")])
def test_invalid_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LIFParams(**kwargs)
