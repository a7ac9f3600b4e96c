"""quant/smoothquant.py: the rescaling is exact in float and is what makes outlier channels survive dynamic int8."""
import pytest
import torch
from torch import nn

from quant import smoothquant, xnnpack_pt2e


class TwoLayer(nn.Module):
    """Activations with one outlier channel (x100), as BERT's LayerNorm outputs have, into two Linears."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(64, 96), nn.Linear(96, 8)
        self.register_buffer("boost", torch.ones(64))
        self.boost[3] = 100.0

    def forward(self, x):
        return self.b(torch.relu(self.a(x * self.boost)))


def batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, 32, 64, generator=g),) for _ in range(n)]


def test_smoothing_is_exact_in_float_and_rescales_every_linear():
    model = TwoLayer().eval()
    factors = smoothquant.smoothing_factors(model, batches(4, 0))
    assert set(factors) == {"a", "b"}
    assert factors["a"].shape == (64,) and factors["b"].shape == (96,)
    assert factors["a"][3] > 5 * factors["a"].median()  # the outlier channel is scaled down hardest
    smoothed = smoothquant.smooth_linears(model, factors)
    assert isinstance(smoothed.a, smoothquant.SmoothedLinear) and isinstance(model.a, nn.Linear)  # a copy
    x = batches(1, 9)[0]
    with torch.no_grad():
        torch.testing.assert_close(smoothed(*x), model(*x), rtol=1e-5, atol=1e-5)


def test_smoothing_shrinks_dynamic_int8_error_on_outlier_channels():
    model = TwoLayer().eval()
    smoothed = smoothquant.smooth_linears(model, smoothquant.smoothing_factors(model, batches(4, 0)))
    x = batches(1, 9)[0]
    with torch.no_grad():
        ref = model(*x)
        errors = {name: (xnnpack_pt2e.quantize_pt2e(m, x, "int8dyn", quantize_embeddings=False)(*x) - ref).abs().mean()
                  for name, m in (("plain", model), ("smoothed", smoothed))}
    assert errors["smoothed"] < 0.5 * errors["plain"], errors


def test_smoothing_needs_calibration():
    with pytest.raises(ValueError, match="calibration"):
        smoothquant.smoothing_factors(TwoLayer(), [])
