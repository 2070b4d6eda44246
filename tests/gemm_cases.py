"""Matrix products for the executors' ``gemm``: every operand layout, on non-square shapes (so that
a leading dimension or a transpose flag in the wrong place changes the result), and a reference
written element by element with einsum."""
import numpy as np

# (shape of a, shape of b, transpose_a, transpose_b): op(a) is (m, k) = (5, 3), op(b) (k, n) = (3, 4)
GEMM_CASES = [
    ((5, 3), (3, 4), False, False),
    ((3, 5), (3, 4), True, False),
    ((5, 3), (4, 3), False, True),
    ((3, 5), (4, 3), True, True),
    ((5, 3), (2, 3, 4), False, False),     # a shared by a batch of two
    ((3, 5), (2, 3, 4), True, False),
    ((2, 5, 3), (4, 3), False, True),      # b shared
    ((2, 3, 5), (2, 4, 3), True, True),
]


def gemm_operands(case, dtype, seed=0):
    """a, b and an output-shaped c to accumulate into, random in ``dtype``."""
    a_shape, b_shape, _, _ = case
    batched = len(a_shape) == 3 or len(b_shape) == 3
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype)
                 for shape in (a_shape, b_shape, ((2,) if batched else ()) + (5, 4)))


def gemm_reference(a, b, transpose_a, transpose_b):
    """Σ_k op(a)[z, i, k] · op(b)[z, k, j], the indices spelt out (z only on 3-D operands)."""
    a_subscripts = ("z" if a.ndim == 3 else "") + ("ki" if transpose_a else "ik")
    b_subscripts = ("z" if b.ndim == 3 else "") + ("jk" if transpose_b else "kj")
    out_subscripts = ("z" if 3 in (a.ndim, b.ndim) else "") + "ij"
    return np.einsum(f"{a_subscripts},{b_subscripts}->{out_subscripts}", a, b)
