"""The statistics every figure is quoted with, numpy's, so that a median means the same thing everywhere
(numpy's median averages the two middle values of an even count, as the C++ runner does)."""
from __future__ import annotations

from typing import Iterable

import numpy as np


def median(values: Iterable[float]) -> float:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("median of no values")
    return float(np.median(v))

