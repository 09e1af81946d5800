"""AWQ GEMM packing: bench.synthetic's numpy packer against autoawq's own code."""
from __future__ import annotations

import numpy as np
import pytest

from bench import synthetic


def unpack_awq_gemm(packed: np.ndarray) -> np.ndarray:
    """Inverse of synthetic.pack_awq_gemm: int32 [R, N/8] -> uint8 [R, N] int4 values in natural column order."""
    p = np.asarray(packed).view(np.uint32)
    out = np.empty((p.shape[0], p.shape[1], 8), dtype=np.uint8)
    for i, col in enumerate(synthetic.AWQ_ORDER):
        out[:, :, col] = (p >> np.uint32(4 * i)) & np.uint32(0xF)
    return out.reshape(p.shape[0], -1)


def dequantize_awq_gemm(qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, group_size: int) -> np.ndarray:
    """(q - z) * s as float32 [K, N] (the transpose of nn.Linear.weight), from the packed tensors."""
    q = unpack_awq_gemm(qweight).astype(np.float32)
    z = np.repeat(unpack_awq_gemm(qzeros).astype(np.float32), group_size, axis=0)
    s = np.repeat(np.asarray(scales, dtype=np.float32), group_size, axis=0)
    return (q - z) * s

K, N, G = 256, 384, 128


@pytest.fixture
def quantized():
    rng = np.random.default_rng(7)
    q = rng.integers(0, 16, size=(K, N), dtype=np.uint8)
    z = rng.integers(0, 16, size=(K // G, N), dtype=np.uint8)
    s = rng.uniform(1e-3, 1e-2, size=(K // G, N)).astype(np.float16)
    return q, z, s


def test_pack_unpack_round_trip(quantized):
    q, z, _ = quantized
    packed = synthetic.pack_awq_gemm(q)
    assert packed.dtype == np.int32 and packed.shape == (K, N // 8)
    assert np.array_equal(unpack_awq_gemm(packed), q)
    assert np.array_equal(unpack_awq_gemm(synthetic.pack_awq_gemm(z)), z)


def test_pack_order_is_awq_gemm():
    # One group of 8 columns holding 0..7: column order[i] lands in bits 4i..4i+3.
    packed = synthetic.pack_awq_gemm(np.arange(8, dtype=np.uint8)[None, :])
    word = int(packed.view(np.uint32)[0, 0])
    assert [(word >> (4 * i)) & 0xF for i in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]


def test_pack_matches_autoawq_from_linear(stack, quantized):
    """WQLinear_GEMM.from_linear packs a linear whose weight is (q - z) * s into exactly our qweight/qzeros."""
    import torch
    from awq.modules.linear.gemm import WQLinear_GEMM

    q, z, s = quantized
    s32 = torch.from_numpy(s.astype(np.float32))
    w = (torch.from_numpy(q.astype(np.float32)) - torch.from_numpy(z.astype(np.float32)).repeat_interleave(G, 0)) \
        * s32.repeat_interleave(G, 0)  # [K, N]
    linear = torch.nn.Linear(K, N, bias=False)
    linear.weight.data = w.t().contiguous()
    awq_linear = WQLinear_GEMM.from_linear(linear, 4, G, scales=torch.from_numpy(s),
                                           zeros=torch.from_numpy(z.astype(np.float32)))
    # .cpu(): on a GPU machine from_linear packs the zeros on autoawq's "best device"
    assert np.array_equal(awq_linear.qweight.cpu().numpy(), synthetic.pack_awq_gemm(q))
    assert np.array_equal(awq_linear.qzeros.cpu().numpy(), synthetic.pack_awq_gemm(z))


def test_dequantize_matches_autoawq(stack, quantized):
    import torch
    from awq.utils.packing_utils import dequantize_gemm

    q, z, s = quantized
    qweight, qzeros = synthetic.pack_awq_gemm(q), synthetic.pack_awq_gemm(z)
    theirs = dequantize_gemm(torch.from_numpy(qweight), torch.from_numpy(qzeros), torch.from_numpy(s), 4, G)
    ours = dequantize_awq_gemm(qweight, qzeros, s, G)
    expected = (q.astype(np.float32) - np.repeat(z, G, 0)) * np.repeat(s.astype(np.float32), G, 0)
    assert theirs.shape == (K, N)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=0)
    # autoawq computes in fp16: equal up to fp16 rounding of the product
    np.testing.assert_allclose(theirs.float().numpy(), expected, rtol=1e-3, atol=1e-6)


def test_generated_tensors_unpack_to_int4_and_scales_in_range(stack):
    """The generator's qzeros go through pack_awq_gemm; scales are small fp16; qweight is int32 words."""
    cfg = synthetic.load_config("tiny")[1]
    specs = {s.kind: s for s in synthetic.tensor_specs(cfg)}
    qz = np.concatenate(list(synthetic.tensor_chunks(specs["qzeros"], seed=0))).reshape(specs["qzeros"].shape)
    vals = unpack_awq_gemm(qz)
    assert vals.max() <= 15 and len(np.unique(vals)) == 16
    sc = np.concatenate(list(synthetic.tensor_chunks(specs["scales"], seed=0)))
    assert sc.dtype == np.float16 and sc.min() >= np.float16(1e-3) * 0.999 and sc.max() <= np.float16(1e-2) * 1.001
    qw = np.concatenate(list(synthetic.tensor_chunks(specs["qweight"], seed=0)))
    assert qw.dtype == np.int32 and qw.size == int(np.prod(specs["qweight"].shape))
    nibbles = unpack_awq_gemm(qw.reshape(specs["qweight"].shape))
    counts = np.bincount(nibbles.ravel(), minlength=16)
    assert counts.min() > 0.8 * counts.mean()  # uniform int4 values
