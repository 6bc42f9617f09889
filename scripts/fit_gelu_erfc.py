#!/usr/bin/python3
"""Prints the erfc polynomial of runtime/gelu.c (half_erfc) and its accuracy.

erfc(z) = t * exp(-z^2 + g(u)) for z >= 0, t = 2 / (2 + z), u = a t + b maps
z in [0, ZMAX] to u in [-1, 1]; g is a degree-12 Chebyshev least-squares
fit of log(erfc(z) / t) + z^2 (against Python's math.erfc) on 4000
Chebyshev nodes, converted to monomials for Horner's rule.

Run: /usr/bin/python3 scripts/fit_gelu_erfc.py
"""
import math

import numpy as np
from numpy.polynomial import chebyshev as C

ZMAX, DEGREE, NODES = 10.5, 12, 4000

s_min = 4.0 / (2.0 + ZMAX) - 1.0            # s = 2t - 1 at z = ZMAX
a, b = 4.0 / (1.0 - s_min), (-1.0 - s_min) / (1.0 - s_min) * 2.0 - 1.0
u = np.cos(np.pi * (np.arange(NODES) + 0.5) / NODES)
t = (u - b) / a
z = 2.0 / t - 2.0
g = np.array([math.log(math.erfc(v)) for v in z]) - np.log(t) + z * z
coef = C.cheb2poly(C.chebfit(u, g, DEGREE))

zz = np.linspace(0.0, ZMAX, 200001)
tt = 2.0 / (2.0 + zz)
uu = a * tt + b
h = np.zeros_like(uu)
for c in coef[::-1]:
    h = h * uu + c
ref = np.array([math.erfc(v) for v in zz])
print(f"u = {a!r} * t + {b!r}")
print("g[] = {" + ", ".join(f"{c:.17g}" for c in coef) + "}")
print(f"max relative error of erfc on [0, {ZMAX}]: {np.max(np.abs(tt * np.exp(-zz * zz + h) / ref - 1)):.3g}")
