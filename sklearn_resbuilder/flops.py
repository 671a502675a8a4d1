"""FLOP accounting from the spec alone, and MorphNet's width step.

The paper's count (§3): a conv costs ``C_j = 2 s_j u_j v_j c_j c_{j+1}``
(kernel area s, output size u x v, in/out channels c); a dense layer
``2 in out``. This is exactly what ``torch.utils.flop_counter`` counts for
conv and linear ops (tests check it), so the two are interchangeable.

The width step is Algorithm 1, step 3: find the largest ``omega`` with
``F(omega * c') <= zeta``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .architecture import Architecture


def conv_flops(kernel, h_out: int, w_out: int, c_in: int, c_out: int) -> int:
    """``2 * s * h_out * w_out * c_in * c_out`` (paper §3, ``C_j``), s the kernel area.

    Parameters
    ----------
    kernel : int or (int, int)
        Square size ``k`` (area ``k^2``) or ``(kh, kw)`` (area ``kh * kw``:
        ``(1, 3)`` for a conv of a 1-D network).
    h_out, w_out : int
        Output size.
    c_in, c_out : int
        Input and output channels.

    Returns
    -------
    int
    """
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return 2 * kh * kw * h_out * w_out * c_in * c_out


def dense_flops(n_in: int, n_out: int) -> int:
    """``2 * n_in * n_out`` (the bias add is not counted, as in torch)."""
    return 2 * n_in * n_out


def torch_flops(module, input_shape) -> int:
    """FLOPs that ``torch.utils.flop_counter`` reports for one image.

    The independent check of :func:`count_flops`; runs a forward pass.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    try:
        p = next(module.parameters())
        x = torch.zeros((1, *input_shape), dtype=p.dtype, device=p.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def largest_omega(arch: Architecture, budget: float, *, multiple: int = 1,
                  tol: float = 1e-4, max_width: int = 1 << 16) -> tuple[float, Architecture]:
    """Largest ``omega`` with ``FLOPs(arch.scaled(omega, multiple)) <= budget``
    (Alg. 1, step 3).

    Widths are rounded (to multiples of ``multiple`` from ``4 * multiple`` up,
    see :meth:`Architecture.scaled`) and kept >= 1, so FLOPs are a
    non-decreasing step function of ``omega`` and bisection finds the largest
    feasible value (to a relative ``tol``).

    Returns
    -------
    omega : float
    arch : Architecture
        ``arch.scaled(omega, multiple)``, whose FLOPs are ``<= budget``.

    Raises
    ------
    ValueError
        If even the narrowest network of this depth (every width 1) needs more
        than ``budget`` FLOPs.
    """
    if not budget > 0:
        raise ValueError(f"flop budget must be > 0, got {budget!r}")
    widths = arch.group_widths() + [m for mids in arch.block_widths() for m in mids]
    narrow = arch.narrowest()
    if narrow.flops() > budget:
        raise ValueError(
            f"flop budget {budget:,.0f} is below the narrowest network of this depth "
            f"({narrow.n_blocks} blocks, every width 1): {narrow.flops():,} FLOPs"
        )
    # omega_max: every width reaches max_width; beyond that growth stops.
    lo, hi = 1e-9, max_width / min(widths)
    if arch.scaled(hi, multiple).flops() <= budget:
        return hi, arch.scaled(hi, multiple)
    while (hi - lo) > tol * lo:
        mid = 0.5 * (lo + hi)
        if arch.scaled(mid, multiple).flops() <= budget:
            lo = mid
        else:
            hi = mid
    return lo, arch.scaled(lo, multiple)

