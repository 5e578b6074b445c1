"""The selective scans of Mamba-1 and Mamba-2 (SSD) in plain PyTorch, pure functions.

Each scan has a sequential reference recurrence, written for clarity and used as ground truth by
the tests (:func:`selective_scan_sequential`, :func:`ssd_sequential`), and a fast path used by
the mixers of :mod:`hear_gram.mamba` (:func:`selective_scan`, :func:`ssd_chunked`). Decays and
carried states are float32; see each function for its output dtype.

Dimension glossary (einops letters, used in the shape comments):
    b     batch
    l     sequence length (tokens)
    d     model width (``d_model``)
    e     inner width (``d_inner = expand * d_model``)
    n     SSM state size (``d_state``)
    r     rank of the Mamba-1 time-step projection (``dt_rank``)
    k     causal convolution width (``d_conv``)
    h     Mamba-2 heads (``d_inner / headdim``)
    p     Mamba-2 head width (``headdim``)
    g     Mamba-2 groups that share B and C (``ngroups``)
    j     heads inside one group (``h / g``)
    c     chunks of the SSD scan
    q, s  positions inside one chunk (output side, input side)
The tensors named ``B`` and ``C`` are the SSM input and output matrices of the Mamba papers, not
the batch and chunk letters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

# Longest chunk of the plain-PyTorch SSD scan; the result does not depend on it. GRAM's 201
# tokens make one chunk, which needs no state between chunks (a (p, n) matrix per head, larger
# than a chunk's inputs at GRAM-M's sizes).
SSD_CHUNK_SIZE = 256
# Longest chunk of the decay-matrix form. On a 2-core CPU with GRAM's 201 tokens, chunks of
# 40-80 steps made it 2.5x faster than one 201-step chunk, whose per-head (q, q) decay matrices
# then dominate the memory traffic.
SSD_DECAY_MATRIX_CHUNK_SIZE = 80
# Largest |exponent| of the factored SSD form's input and output scales. e^60 ~ 1e26 leaves
# 1e12 of headroom below float32's (and bfloat16's) 3e38 for |dt * x * C.B| summed over a chunk,
# and e^-60 ~ 9e-27 keeps scaled inputs above float32's smallest normal for |dt * x| > 1e-11.
SSD_FACTOR_LOG_LIMIT = 60.0


def selective_scan_sequential(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor
) -> Tensor:
    """Reference Mamba-1 selective scan: the recurrence written out one step at a time.

    ``state_t = exp(dt_t * A) * state_{t-1} + dt_t * x_t * B_t`` and
    ``y_t = <state_t, C_t> + D * x_t``, per channel, as ``selective_scan_ref`` in
    ``mamba_ssm/ops/selective_scan_interface.py`` (without its gate, which the mixer applies).

    Args:
        x: (b, l, e) input.
        dt: (b, l, e) positive time steps (bias and softplus already applied).
        A: (e, n) negative decay rates.
        B: (b, l, n) input matrix.
        C: (b, l, n) output matrix.
        D: (e,) skip weights.
    Returns:
        (b, l, e) float32 output.
    """
    x, dt, A, B, C, D = (t.float() for t in (x, dt, A, B, C, D))
    state = x.new_zeros(x.shape[0], *A.shape)  # (b, e, n)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t, :, None] * A)  # (b, e, n)
        update = (dt[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]  # (b, e, n)
        state = decay * state + update
        ys.append(torch.einsum("ben,bn->be", state, C[:, t]))
    return torch.stack(ys, dim=1) + x * D  # (b, l, e)


def selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """Mamba-1 selective scan, the default plain-PyTorch path. Same contract as the reference.

    The state has its own decay for every (channel, state) pair, so unlike Mamba-2 there is no
    matmul (dual) form, and the parallel forms lose on a CPU: the chunked ``exp(cumsum)``
    factorisation overflows within 16 steps already for random inputs, and stable log-depth
    scans make several passes over a (b, l, e, n) tensor (356 MB for GRAM-M v1 at batch 8),
    measured 2-10x slower than this loop. So this path keeps the recurrence, with everything
    that does not depend on the state hoisted out of the loop, and each step reduced to a few
    kernels on a cache-resident (b, e, n) state. It only ever multiplies by decays in (0, 1], so
    it is stable for any step size.
    """
    x, dt, A, B, C, D = (t.float() for t in (x, dt, A, B, C, D))
    # Time-major copies, so that step t reads one contiguous block.
    dt_steps = rearrange(dt, "b l e -> l b e 1").contiguous()
    input_steps = rearrange(dt * x, "b l e -> l b e 1").contiguous()
    B_steps = rearrange(B, "b l n -> l b 1 n").contiguous()
    C_steps = rearrange(C, "b l n -> l b n 1").contiguous()
    tracked = torch.is_grad_enabled() and any(t.requires_grad for t in (x, dt, A, B, C))
    recurrence = _recurrence_for_autograd if tracked else _recurrence_in_place
    y = recurrence(dt_steps, input_steps, A, B_steps, C_steps)  # (l, b, e, 1)
    return torch.addcmul(rearrange(y, "l b e 1 -> b l e"), x, D)


def _recurrence_in_place(
    dt_steps: Tensor, input_steps: Tensor, A: Tensor, B_steps: Tensor, C_steps: Tensor
) -> Tensor:
    """Mamba-1 recurrence on preallocated buffers, updated in place (faster; no autograd).

    Args:
        dt_steps: (l, b, e, 1) time steps.
        input_steps: (l, b, e, 1) time steps times inputs.
        A: (e, n) decay rates.
        B_steps: (l, b, 1, n).
        C_steps: (l, b, n, 1).
    Returns:
        (l, b, e, 1) outputs without the skip term.
    """
    state = dt_steps.new_zeros(dt_steps.shape[1], *A.shape)  # (b, e, n)
    decay = torch.empty_like(state)
    y = torch.empty_like(dt_steps)
    for t in range(dt_steps.shape[0]):
        torch.mul(dt_steps[t], A, out=decay).exp_()
        state.mul_(decay).addcmul_(input_steps[t], B_steps[t])
        torch.bmm(state, C_steps[t], out=y[t])
    return y


def _recurrence_for_autograd(
    dt_steps: Tensor, input_steps: Tensor, A: Tensor, B_steps: Tensor, C_steps: Tensor
) -> Tensor:
    """Same as :func:`_recurrence_in_place`, out of place so that autograd can record it."""
    state = dt_steps.new_zeros(dt_steps.shape[1], *A.shape)  # (b, e, n)
    ys = []
    for t in range(dt_steps.shape[0]):
        state = torch.addcmul(torch.exp(dt_steps[t] * A) * state, input_steps[t], B_steps[t])
        ys.append(torch.bmm(state, C_steps[t]))  # (b, e, 1)
    return torch.stack(ys)


def ssd_sequential(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor) -> Tensor:
    """Reference Mamba-2 (SSD) scan: the recurrence written out one step at a time.

    Per head, ``state_t = exp(dt_t * A) * state_{t-1} + dt_t * outer(x_t, B_t)`` and
    ``y_t = state_t @ C_t + D * x_t``; heads ``[i * j, (i + 1) * j)`` share group i's B and C,
    as in ``mamba_ssm``.

    Args:
        x: (b, l, h, p) input.
        dt: (b, l, h) positive time steps (bias and softplus already applied).
        A: (h,) negative decay rates.
        B: (b, l, g, n) input matrix.
        C: (b, l, g, n) output matrix.
        D: (h,) skip weights.
    Returns:
        (b, l, h, p) float32 output.
    """
    x, dt, A, B, C, D = (t.float() for t in (x, dt, A, B, C, D))
    heads_per_group = x.shape[2] // B.shape[2]
    B = B.repeat_interleave(heads_per_group, dim=2)  # (b, l, h, n)
    C = C.repeat_interleave(heads_per_group, dim=2)  # (b, l, h, n)
    state = x.new_zeros(x.shape[0], *x.shape[2:], B.shape[-1])  # (b, h, p, n)
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # (b, h, 1, 1)
        update = torch.einsum("bh,bhp,bhn->bhpn", dt[:, t], x[:, t], B[:, t])
        state = decay * state + update
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    return torch.stack(ys, dim=1) + x * D[:, None]  # (b, l, h, p)


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    chunk_size: int = SSD_CHUNK_SIZE,
    matmul_dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Mamba-2 (SSD) scan in chunked dual form, the default plain-PyTorch path.

    Same contract as :func:`ssd_sequential`, except the output dtype: float32, or
    ``matmul_dtype`` when that is bfloat16/float16, as ``mamba_ssm``'s fused scan returns its
    input's dtype (``_chunk_scan_fwd`` in ``mamba_ssm/ops/triton/ssd_chunk_scan.py``).

    Following the SSD algorithm (Dao & Gu 2024, section 6; ``mamba_ssm/modules/ssd_minimal.py``),
    the sequence is cut into equal chunks of at most ``chunk_size`` steps. Inside a chunk the
    output is a masked "attention" product ``(C B^T * L) @ (dt * x)``, where
    ``L[t, s] = exp(a_t - a_s)`` for ``s <= t`` and ``a`` is the cumulative log decay; the rest
    comes from the state carried in from earlier chunks. ``L`` is applied in one of two ways:

    * factored (:func:`_ssd_factored`), for every head whose log decay spans at most
      ``2 * SSD_FACTOR_LOG_LIMIT`` inside every chunk (float32 and bfloat16 products only):
      ``L[t, s] = exp(a_t - m) * exp(m - a_s)`` with ``m`` the middle of the chunk's span, so
      the decay scales the inputs and the outputs, and all heads of a group share one ``C B^T``
      product: one wide matmul instead of a (q, q) decay matrix per head, whose memory traffic
      dominated on a CPU (one GRAM-M layer, 24 clips on 2 cores: 2.7x faster in bf16, 1.4x in
      float32);
    * through the explicit per-head decay matrix (:func:`_ssd_decay_matrix`) for the other,
      fast-forgetting heads: built from differences of ``a``, it never overflows whatever the
      step sizes.

    ``matmul_dtype`` is the dtype of the matrix products' operands: float32 (default), or
    bfloat16/float16 for fast low-precision inference (their kernels accumulate in float32; on
    CPUs with AVX-512 BF16 a bf16 batched matmul ran 10-40x faster than a float32 one at GRAM-M's
    sizes). Either way the decays and the state carried between chunks stay float32.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if matmul_dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"matmul_dtype must be float32, bfloat16 or float16, got {matmul_dtype}")
    dt, A, D = (t.float() for t in (dt, A, D))
    decay_matrix_chunk = min(chunk_size, SSD_DECAY_MATRIX_CHUNK_SIZE)
    if matmul_dtype == torch.float16:
        # float16 tops out at 6.5e4, too narrow for the factored form's scales
        return _ssd_decay_matrix(x, dt, A, B, C, D, decay_matrix_chunk, matmul_dtype).half()
    heads, groups = x.shape[2], B.shape[2]
    n_chunks = -(-x.shape[1] // chunk_size)
    q = -(-x.shape[1] // n_chunks)  # equal chunks keep the padding short (201 steps: 3 x 67)
    cum = _split_chunks(dt * A, q, n_chunks * q - x.shape[1]).cumsum(dim=2)  # (b, c, q, h)
    with torch.no_grad():
        span = (cum[:, :, 0] - cum[:, :, -1]).amax(dim=(0, 1))  # (h,), over the whole batch
        factored = span <= 2 * SSD_FACTOR_LOG_LIMIT
        n_factored = int(factored.sum())
    if n_factored == heads:
        return _ssd_factored(x, dt, cum, B, C, D, matmul_dtype)
    if n_factored == 0 or groups > 1:
        # (a subset of heads would split the groups that share B and C; GRAM-M has one group)
        y = _ssd_decay_matrix(x, dt, A, B, C, D, decay_matrix_chunk, matmul_dtype)
        return y.to(_ssd_out_dtype(matmul_dtype))
    y = _ssd_factored(x, dt, cum, B, C, D, matmul_dtype, heads_kept=factored)
    rest = (~factored).nonzero().squeeze(1)
    y_rest = _ssd_decay_matrix(
        x.index_select(2, rest), dt.index_select(2, rest), A[rest], B, C, D[rest],
        decay_matrix_chunk, matmul_dtype,
    )  # fmt: skip
    if torch.is_grad_enabled():
        return y.index_copy(2, rest, y_rest.to(y.dtype))
    return y.index_copy_(2, rest, y_rest.to(y.dtype))  # inference: no copy of the whole output


def _ssd_out_dtype(matmul_dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if matmul_dtype == torch.float32 else matmul_dtype


def _ssd_factored(
    x: Tensor,
    dt: Tensor,
    cum: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    matmul_dtype: torch.dtype,
    heads_kept: Tensor | None = None,
) -> Tensor:
    """SSD scan with the decay factored into input and output scales (see :func:`ssd_chunked`).

    Exact in exact arithmetic. In floating point every term ``C_t.B_s dt_s x_s`` is scaled by
    ``exp(m - a_s)`` and, after the sum, by ``exp(a_t - m)``; both exponents lie within
    ``[-SSD_FACTOR_LOG_LIMIT, SSD_FACTOR_LOG_LIMIT]`` (the caller checks the span), so each term
    keeps the relative rounding of the direct form, and a row's terms all share one scale, so
    the sum cancels no more than the true one does.

    Args:
        x: (b, l, h, p); dt: (b, l, h) float32; D: (h,) float32.
        cum: (b, c, q, h) float32 cumulative log decay, restarting in each chunk of q steps.
        B, C: (b, l, g, n).
        heads_kept: (h,) bool, or None for all heads. The others get zero inputs and states (and
            no overflowing factor); the caller replaces their outputs.
    Returns:
        (b, l, h, p) in :func:`_ssd_out_dtype`.
    """
    mm, out_dtype = matmul_dtype, _ssd_out_dtype(matmul_dtype)
    (batch, length, heads, headdim), groups = x.shape, B.shape[2]
    n_chunks, q = cum.shape[1:3]
    pad = n_chunks * q - length
    mid = 0.5 * (cum[:, :, :1] + cum[:, :, -1:])  # (b, c, 1, h)
    to_mid, from_mid = mid - cum, cum - mid  # (b, c, q, h), both within +-the factor limit
    dt = _split_chunks(dt, q, pad)
    if heads_kept is not None:
        # Zeroed exponents, not masked exponentials: exp(inf) * 0 would be NaN in gradients.
        dropped = ~heads_kept
        to_mid, from_mid = to_mid.masked_fill(dropped, 0.0), from_mid.masked_fill(dropped, 0.0)
        dt = dt.masked_fill(dropped, 0.0)
    in_scale = dt * torch.exp(to_mid)  # (b, c, q, h)
    x_chunks = _split_chunks(x, q, pad)  # (b, c, q, h, p)
    if x.dtype == mm:
        # one pass in the narrow dtype (a mixed-dtype product makes float32 copies on a CPU)
        x_in = x_chunks * in_scale.to(mm)[..., None]
    else:
        x_in = _mul_to(x_chunks, in_scale[..., None], mm)
    # (b, c, g, q, j * p): a view when there is one group
    x_in = rearrange(x_in, "b c q (g j) p -> b c g q (j p)", g=groups).contiguous()
    B, C = (rearrange(_split_chunks(t.to(mm), q, pad), "b c q g n -> b c g q n") for t in (B, C))
    # Causal C B^T, shared by the heads of a group; its upper triangle is exactly zero.
    y = torch.tril(C @ B.transpose(-1, -2)) @ x_in  # (b, c, g, q, j * p)
    if n_chunks > 1:
        y = _add_factored_states(y, x_in, B, C, cum, mid, heads_kept, headdim)
    y = rearrange(y, "b c g q (j p) -> b (c q) (g j) p", p=headdim)[:, :length]
    out_scale = torch.exp(from_mid).reshape(batch, n_chunks * q, heads)[:, :length, :, None]
    if out_dtype == torch.float32:
        return torch.addcmul(x * D[:, None], y.float(), out_scale)
    # low precision: two passes in the narrow dtype, each rounding once
    return (y * out_scale.to(out_dtype)).addcmul_(x.to(out_dtype), D.to(out_dtype)[:, None])


def _add_factored_states(
    y: Tensor,
    x_in: Tensor,
    B: Tensor,
    C: Tensor,
    cum: Tensor,
    mid: Tensor,
    heads_kept: Tensor | None,
    headdim: int,
) -> Tensor:
    """``y`` of :func:`_ssd_factored` plus the part carried in from earlier chunks.

    With the state entering chunk i held as ``P_i = exp(m_i) * state_i`` (float32), its part of
    chunk i's output is ``C_t @ P_i``, scaled by ``exp(a_t - m_i)`` with the rest, and
    ``P_{i+1} = exp(m_{i+1}) * exp(a_end_i - m_i) * (own_i + P_i)``, where ``own_i`` sums
    ``B_s x_in_s`` over chunk i. Both factors are at most 1, so nothing overflows.

    Shapes: y, x_in (b, c, g, q, j * p) in the matmul dtype; B, C (b, c, g, q, n); cum
    (b, c, q, h); mid (b, c, 1, h).
    """
    mm = x_in.dtype
    batch, n_chunks, groups = y.shape[:3]
    own = B[:, :-1].transpose(-1, -2) @ x_in[:, :-1]  # (b, c - 1, g, n, j * p)
    carry = torch.exp(mid[:, 1:, 0]) * torch.exp(cum[:, :-1, -1] - mid[:, :-1, 0])  # (b, c-1, h)
    if heads_kept is not None:
        carry = carry * heads_kept
    # per head, broadcast over the state's (n, p) entries: (b, c - 1, g, 1, j * p)
    carry = carry.reshape(batch, n_chunks - 1, groups, 1, -1).repeat_interleave(headdim, dim=-1)
    parts, carried = [y[:, 0]], None  # carried: P_i, float32
    for i in range(1, n_chunks):
        own_i = own[:, i - 1].float()
        carried = (own_i if carried is None else own_i + carried) * carry[:, i - 1]
        parts.append(y[:, i] + C[:, i] @ carried.to(mm))
    return torch.stack(parts, dim=1)


def _ssd_decay_matrix(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor,
    chunk_size: int,
    matmul_dtype: torch.dtype,
) -> Tensor:
    """SSD scan through an explicit (q, q) decay matrix per head and chunk.

    Same arguments as :func:`ssd_chunked`; returns float32. The decays are only ever
    exponentials of non-positive differences, so nothing overflows for any step size. Bound by
    the memory traffic of those matrices on a CPU, so :func:`ssd_chunked` keeps it for the heads
    that the factored form cannot take.
    """
    # x is promoted to float32 by the products below (exactly); B and C feed matmuls only.
    dt, A, D = (t.float() for t in (dt, A, D))
    B, C = B.to(matmul_dtype), C.to(matmul_dtype)
    (batch, length, heads, headdim), groups = x.shape, B.shape[2]
    n_chunks = -(-length // chunk_size)
    q = -(-length // n_chunks)  # equal chunks keep the padding short (201 steps: 3 x 67)
    pad = n_chunks * q - length
    x_dt = _split_chunks(_mul_to(x, dt[..., None], matmul_dtype), q, pad)  # (b, c, q, h, p)
    x_dt = rearrange(x_dt, "b c q (g j) p -> b c q g j p", g=groups)
    B, C = _split_chunks(B, q, pad), _split_chunks(C, q, pad)  # (b, c, q, g, n)
    log_decay = rearrange(_split_chunks(dt * A, q, pad), "b c q (g j) -> b c q g j", g=groups)
    cum_decay = log_decay.cumsum(dim=2)  # (b, c, q, g, j), restarting in each chunk

    y = _ssd_within_chunks(x_dt, B, C, cum_decay)  # (b, c, q, g, j, p)
    if matmul_dtype != torch.float32:
        # one pass to a contiguous float32 copy, so that the reshape below is a view
        y = y.to(torch.float32, memory_format=torch.contiguous_format)
    if n_chunks > 1:
        _add_from_earlier_chunks(y, x_dt, B, C, cum_decay)
    y = y.reshape(batch, n_chunks * q, heads, headdim)[:, :length]
    return torch.addcmul(y, x, D[:, None])  # (b, l, h, p)


def _mul_to(a: Tensor, b: Tensor, dtype: torch.dtype) -> Tensor:
    """``(a * b).to(dtype)``, computed in the promoted dtype; in one pass (no float32
    intermediate) when the result is narrower and autograd does not record the product."""
    if dtype == torch.result_type(a, b):
        return a * b
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return (a * b).to(dtype)
    out = torch.empty(torch.broadcast_shapes(a.shape, b.shape), dtype=dtype, device=a.device)
    return torch.mul(a, b, out=out)


def _split_chunks(t: Tensor, chunk_size: int, pad: int) -> Tensor:
    """(b, l, ...) -> (b, c, q, ...), zero-padding the end of the sequence by ``pad`` steps.

    The padding is inert in a scan: dt = 0 means no decay and no input.
    """
    if pad:
        t = F.pad(t, (0, 0) * (t.ndim - 2) + (0, pad))
    return rearrange(t, "b (c q) ... -> b c q ...", q=chunk_size)


def _ssd_within_chunks(x_dt: Tensor, B: Tensor, C: Tensor, cum_decay: Tensor) -> Tensor:
    """SSD output from the inputs of the same chunk: the quadratic (dual) form.

    Args:
        x_dt: (b, c, q, g, j, p) inputs scaled by their time steps, in the matmul dtype.
        B, C: (b, c, q, g, n), in the matmul dtype.
        cum_decay: (b, c, q, g, j) float32 cumulative log decay inside each chunk.
    Returns:
        (b, c, q, g, j, p) in the matmul dtype.
    """
    q = cum_decay.shape[2]
    cum = rearrange(cum_decay, "b c q g j -> b c g j q").contiguous()  # small; fast broadcasts
    # decay[t, s] = exp(cum[t] - cum[s]) for s <= t, else 0. The upper triangle is -inf
    # *before* exp, so it neither overflows nor leaks NaN into gradients. The in-place steps
    # are safe for autograd (neither add nor sub needs its output) and save two allocations.
    upper = torch.full((q, q), -math.inf, device=cum.device).triu(diagonal=1)
    decay = (cum[..., :, None] + upper).sub_(cum[..., None, :]).exp_()  # (b, c, g, j, q, s)
    # Decay times C B^T in float32, rounded once to the matmul dtype.
    weights = _mul_to(decay, torch.einsum("bcqgn,bcsgn->bcgqs", C, B)[:, :, :, None], x_dt.dtype)
    # An explicit heads-major copy of the inputs makes this one batched matmul; einsum's own
    # rearrangement was measured slower.
    y = weights @ rearrange(x_dt, "b c s g j p -> b c g j s p").contiguous()
    return rearrange(y, "b c g j q p -> b c q g j p")


def _add_from_earlier_chunks(
    y: Tensor, x_dt: Tensor, B: Tensor, C: Tensor, cum_decay: Tensor
) -> None:
    """Add to ``y[:, 1:]`` (in place) the SSD output of chunks 1..c-1 from the state carried in
    from earlier chunks.

    Shapes as in :func:`_ssd_within_chunks`; ``y`` is (b, c, q, g, j, p) float32. B and C are
    shared by the heads of a group, so the state products are matmuls ``j * p`` columns wide
    rather than ``h`` narrow ones. The products run in ``x_dt``'s dtype; the carried state and
    the added output are float32. Each chunk's part is scaled by its decay and added in one pass
    (``addcmul_``), not stacked, scaled and added in three.
    """
    mm = x_dt.dtype
    # State at the end of chunks 0..c-2 from their own inputs.
    to_end = torch.exp(cum_decay[:, :-1, -1:] - cum_decay[:, :-1])  # (b, c - 1, s, g, j)
    x_to_end = _mul_to(x_dt[:, :-1], to_end[..., None], mm)
    own = torch.einsum("bcsgjp,bcsgn->bcgjpn", x_to_end, B[:, :-1])
    chunk_decay = torch.exp(cum_decay[:, :, -1])[..., None, None]  # (b, c, g, j, 1, 1)
    from_start = torch.exp(cum_decay[:, 1:])[..., None]  # (b, c - 1, q, g, j, 1)
    # A Python loop over the (few) chunks, not over time. The state entering chunk i + 1 is the
    # one entering chunk i, decayed over chunk i, plus chunk i's own.
    state = own[:, 0].float()  # (b, g, j, p, n) entering chunk 1
    for i in range(1, x_dt.shape[1]):
        if i > 1:
            state = torch.addcmul(own[:, i - 1], chunk_decay[:, i - 1], state)  # float32
        part = torch.einsum("bqgn,bgjpn->bqgjp", C[:, i], state.to(mm))
        y[:, i].addcmul_(part, from_start[:, i - 1])
