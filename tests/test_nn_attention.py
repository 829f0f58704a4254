"""Attention, positions, norms and transformer blocks against independent oracles."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genlab.errors import ConfigError
from genlab.nn.attention import KVCache, MultiHeadAttention, attention, causal_mask, padding_mask
from genlab.nn.norms import LayerNorm, RMSNorm, layer_norm, rms_norm
from genlab.nn.positions import LearnedPositions, Rotary, SinusoidalPositions, sinusoidal_table
from genlab.nn.transformer import BlockConfig, DecoderBlock, EncoderBlock, LayerCache

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]


def qkv(B=2, nh=3, Tq=5, Tk=5, hs=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, nh, Tq, hs, generator=g, dtype=dtype), torch.randn(B, nh, Tk, hs, generator=g, dtype=dtype),
            torch.randn(B, nh, Tk, hs, generator=g, dtype=dtype))


# ------------------------------------------------------------------ scaled dot-product attention
def test_attention_hand_computed_example():
    # one query, two keys, d = 2: scores q.k_j / sqrt(2) = [1/sqrt2, 0]
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    a1 = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1.0)
    expected = torch.tensor([a1 * 1 + (1 - a1) * 3, a1 * 2 + (1 - a1) * 4])
    for impl in ("math", "sdpa"):
        out, _ = attention(q, k, v, impl=impl)
        torch.testing.assert_close(out[0, 0, 0], expected)
    _, w = attention(q, k, v, impl="math", need_weights=True)
    torch.testing.assert_close(w[0, 0, 0], torch.tensor([a1, 1 - a1]))


@pytest.mark.parametrize("case", ["plain", "causal", "padding", "causal+padding", "cached-causal"])
def test_attention_math_equals_sdpa(case):
    Tk = 7
    Tq = 3 if case == "cached-causal" else Tk
    q, k, v = qkv(Tq=Tq, Tk=Tk)
    mask = None
    if "padding" in case:
        pad = torch.zeros(2, Tk, dtype=torch.bool)
        pad[0, 5:] = True                          # first sequence has 5 real tokens
        mask = padding_mask(pad)
    causal = "causal" in case
    out_math, w = attention(q, k, v, mask=mask, causal=causal, impl="math", need_weights=True)
    out_sdpa, _ = attention(q, k, v, mask=mask, causal=causal, impl="sdpa")
    torch.testing.assert_close(out_math, out_sdpa)
    torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)))
    # an independent oracle: the same formula through torch's reference kernel with an explicit float mask
    full = torch.ones(Tq, Tk, dtype=torch.bool)
    if causal:
        full = torch.tril(torch.ones(Tq, Tk, dtype=torch.bool), diagonal=Tk - Tq)
    full = full if mask is None else (full & mask)
    additive = torch.zeros(full.shape, dtype=q.dtype).masked_fill(~full, -math.inf)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    torch.testing.assert_close(out_math, ref)


def test_attention_gradients_math_equal_sdpa():
    q, k, v = qkv()
    grads = []
    for impl in ("math", "sdpa"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out, _ = attention(*leaves, causal=True, impl=impl)
        out.pow(2).sum().backward()
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_causal_mask_bottom_right_aligned():
    m = causal_mask(2, 4)
    assert m.tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.equal(causal_mask(4, 4), torch.tril(torch.ones(4, 4, dtype=torch.bool)))


def test_unknown_impl_is_a_config_error():
    with pytest.raises(ConfigError):
        attention(*qkv(), impl="flash")


# ------------------------------------------------------------------ multi-head attention
def test_future_token_never_changes_a_past_output():
    torch.manual_seed(0)
    for block in (MultiHeadAttention(16, 4), DecoderBlock(BlockConfig(16, 4, rotary=True, qk_norm=True))):
        x = torch.randn(2, 9, 16)
        y = block(x, causal=True) if isinstance(block, MultiHeadAttention) else block(x)
        t = 5
        x2 = x.clone()
        x2[:, t:] = torch.randn(2, 9 - t, 16)
        y2 = block(x2, causal=True) if isinstance(block, MultiHeadAttention) else block(x2)
        torch.testing.assert_close(y[:, :t], y2[:, :t])
        assert not torch.allclose(y[:, t:], y2[:, t:])


@pytest.mark.parametrize("rotary,qk_norm", [(False, False), (True, False), (True, True)])
def test_kv_cache_equals_full_recomputation(rotary, qk_norm):
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2, rotary=rotary, qk_norm=qk_norm).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    full = mha(x, causal=True)
    cache = KVCache()
    pieces = [mha(x[:, :4], causal=True, cache=cache)]             # a prompt of 4, then one at a time
    for t in range(4, 11):
        pieces.append(mha(x[:, t:t + 1], causal=True, cache=cache))
    assert len(cache) == 11
    torch.testing.assert_close(torch.cat(pieces, 1), full)


def test_cross_attention_cache_and_padding():
    torch.manual_seed(0)
    block = DecoderBlock(BlockConfig(16, 4, kv_dim=8), cross=True).double().eval()
    memory = torch.randn(2, 6, 8, dtype=torch.float64)
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    mmask = padding_mask(pad)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    full = block(x, memory=memory, memory_mask=mmask)
    cache = LayerCache()
    steps = [block(x[:, t:t + 1], memory=memory if t == 0 else None, memory_mask=mmask, cache=cache) for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    # padded memory positions do not matter
    memory2 = memory.clone()
    memory2[1, 4:] = 100.0
    torch.testing.assert_close(block(x, memory=memory2, memory_mask=mmask), full)


def test_kv_cache_reorder_picks_rows():
    cache = KVCache()
    k = torch.arange(3.0)[:, None, None, None].expand(3, 1, 2, 4)
    cache.append(k, k)
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.get()[0][:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]


def test_padding_mask_equals_truncated_sequence():
    torch.manual_seed(0)
    enc = EncoderBlock(BlockConfig(16, 4)).double()
    x = torch.randn(1, 7, 16, dtype=torch.float64)
    pad = torch.tensor([[False] * 4 + [True] * 3])
    y = enc(x, mask=padding_mask(pad))
    torch.testing.assert_close(y[:, :4], enc(x[:, :4]))


def test_self_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    enc = EncoderBlock(BlockConfig(16, 4)).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    perm = torch.randperm(6)
    torch.testing.assert_close(enc(x[:, perm]), enc(x)[:, perm])
    rot = EncoderBlock(BlockConfig(16, 4, rotary=True)).double()
    assert not torch.allclose(rot(x[:, perm]), rot(x)[:, perm])


def test_record_weights_keeps_the_attention_map():
    mha = MultiHeadAttention(8, 2)
    mha.record_weights = True
    mha(torch.randn(1, 5, 8), causal=True)
    w = mha.weights
    assert w.shape == (1, 2, 5, 5)
    assert torch.all(w.triu(1) == 0)


def test_width_not_divisible_by_heads_is_a_config_error():
    with pytest.raises(ConfigError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ConfigError):
        BlockConfig(16, 4, activation="swish")


# ------------------------------------------------------------------ norms
def test_layernorm_worked_example_and_any_two_vector():
    x1 = torch.tensor([2.0, 1.0])
    torch.testing.assert_close(layer_norm(x1, eps=0.0), torch.tensor([1.0, -1.0]))
    x = torch.randn(100, 2, dtype=torch.float64)
    y = layer_norm(x, eps=0.0)
    torch.testing.assert_close(y.abs(), torch.ones_like(y))
    torch.testing.assert_close(torch.sign(y[:, 0]), torch.sign(x[:, 0] - x[:, 1]))


def test_layernorm_and_rmsnorm_match_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 12)
    ours, ref = LayerNorm(12), torch.nn.LayerNorm(12)
    with torch.no_grad():
        for p in (ours.weight, ours.bias):
            p.normal_()
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    torch.testing.assert_close(ours(x), ref(x))
    r_ours, r_ref = RMSNorm(12, eps=1e-6), torch.nn.RMSNorm(12, eps=1e-6)
    with torch.no_grad():
        r_ours.weight.normal_()
        r_ref.weight.copy_(r_ours.weight)
    torch.testing.assert_close(r_ours(x), r_ref(x))


def test_norm_modules_equal_the_written_out_formulas():
    torch.manual_seed(0)
    x = 3 * torch.randn(4, 7, 10, dtype=torch.float64) + 2
    ln, rms = LayerNorm(10).double(), RMSNorm(10).double()
    with torch.no_grad():
        for p in (ln.weight, ln.bias, rms.weight):
            p.normal_()
    torch.testing.assert_close(ln(x), layer_norm(x, ln.eps) * ln.weight + ln.bias)
    torch.testing.assert_close(rms(x), rms_norm(x, rms.eps) * rms.weight)
    # RMS of the output is 1 (Zhang & Sennrich 2019, Eq. 4) with unit gain
    torch.testing.assert_close(rms_norm(x, 0.0).pow(2).mean(-1), torch.ones(4, 7, dtype=torch.float64))
    assert LayerNorm(10, bias=False).bias is None


def test_post_norm_block_outputs_are_normalized():
    torch.manual_seed(0)
    blk = DecoderBlock(BlockConfig(16, 4, norm="post"))
    y = blk(3 * torch.randn(2, 5, 16) + 1)
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 5), atol=1e-3, rtol=0)


def test_zero_init_block_is_identity():
    blk = DecoderBlock(BlockConfig(16, 4, activation="relu2"), cross=True)
    blk.zero_init_()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(blk(x, memory=torch.randn(2, 3, 16)), x)


def test_relu2_mlp_matches_formula():
    from genlab.nn.transformer import MLP
    mlp = MLP(BlockConfig(8, 2, activation="relu2"))
    x = torch.randn(4, 8)
    h = torch.clamp(x @ mlp.fc.weight.T + mlp.fc.bias, min=0) ** 2
    torch.testing.assert_close(mlp(x), h @ mlp.proj.weight.T + mlp.proj.bias)


# ------------------------------------------------------------------ positions
def test_sinusoidal_table_matches_the_formula():
    dim, n = 6, 9
    table = sinusoidal_table(n, dim)
    for p in range(n):
        for i in range(dim // 2):
            angle = p / 10000 ** (2 * i / dim)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    pos = SinusoidalPositions(dim, max_len=4)
    torch.testing.assert_close(pos(3, offset=6), table[6:9])           # grows past max_len


def test_learned_positions_refuse_past_context():
    from genlab.errors import GenlabError
    with pytest.raises(GenlabError, match="context"):
        LearnedPositions(8, 4)(3, offset=2)


def test_rotary_preserves_norms_and_gives_relative_dot_products():
    torch.manual_seed(0)
    rot = Rotary(8).double()
    q = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 8, dtype=torch.float64)
    for m in (0, 3, 17, 2000):                                          # 2000 also grows the table
        torch.testing.assert_close(rot(q, m).norm(), q.norm())

    def dot(m, n):
        return (rot(q, m) * rot(k, n)).sum()
    torch.testing.assert_close(dot(5, 2), dot(13, 10))
    torch.testing.assert_close(dot(2, 5), dot(0, 3))
    assert not torch.allclose(dot(5, 2), dot(2, 5))


def test_rotary_equals_complex_multiplication():
    # RoFormer Eq. 15: z_j = x_j + i x_{j+h/2} times e^{i m theta_j}, theta_j = 10000^(-2j/d)
    d, m = 8, 7
    x = torch.randn(1, 1, 1, d, dtype=torch.float64)
    z = torch.complex(x[..., : d // 2], x[..., d // 2:])
    theta = torch.tensor([10000 ** (-2 * j / d) for j in range(d // 2)], dtype=torch.float64)
    zr = z * torch.exp(1j * m * theta)
    torch.testing.assert_close(Rotary(d).double()(x, m), torch.cat([zr.real, zr.imag], -1))
