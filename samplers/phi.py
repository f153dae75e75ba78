"""The phi-functions of exponential integrators, once, in host floats.

    phi_0(z) = e^z,    phi_(k+1)(z) = (phi_k(z) - 1/k!) / z,
    phi_k(z) = sum_(i>=0) z^i / (i + k)!  = int_0^1 e^((1-t) z) t^(k-1) / (k-1)! dt

(Hochbruck & Ostermann 2010, "Exponential integrators", Acta Numerica, eq. 2.10).
The data-prediction solvers here evaluate them at z = -h with h >= 0 the step
in half-log-SNR lambda: for those the recurrence cancels catastrophically as
h -> 0, so small |z| uses the series; h = inf (a step from pure noise, or to
sigma = 0) gives phi_k(-inf) = 0 for k >= 1.

`etd_weights(nodes, h)` turns the phi-functions into the weights every
exponential Adams / Runge-Kutta method of this package uses: the exact
integral of the polynomial through the nodes against the step's kernel.
"""
import math

__all__ = ["phi", "etd_weights"]

_SERIES_TERMS = 30  # |z| < 1: z^30 / 30! < 1e-32, below double rounding


def phi(k, z):
    """phi_k(z) for an integer k >= 0 and a real z (float; -inf allowed).

    Raises ValueError for k < 0, NaN or z = +inf."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"phi: k must be an integer >= 0, got {k!r}")
    z = float(z)
    if math.isnan(z) or z == math.inf:
        raise ValueError(f"phi: z must be finite or -inf, got {z}")
    if z == -math.inf:
        return 0.0 if k >= 1 else 0.0
    if k == 0:
        return math.exp(z)
    if abs(z) < 1.0:
        term = 1.0 / math.factorial(k)
        total = term
        for i in range(1, _SERIES_TERMS):
            term *= z / (i + k)
            total += term
        return total
    value = math.expm1(z) / z  # phi_1, without the cancellation of e^z - 1
    for j in range(1, k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def _monomial_coeffs(nodes, j):
    """Coefficients c_m of the Lagrange basis polynomial l_j(v) = sum_m c_m v^m
    through `nodes` (l_j(nodes[j]) = 1, 0 at the others), lowest power first."""
    coeffs = [1.0]
    denom = 1.0
    for k, nk in enumerate(nodes):
        if k == j:
            continue
        # multiply by (v - nk)
        coeffs = [(coeffs[m - 1] if m >= 1 else 0.0) - nk * (coeffs[m] if m < len(coeffs) else 0.0)
                  for m in range(len(coeffs) + 1)]
        denom *= nodes[j] - nk
    if denom == 0.0:
        raise ValueError(f"etd_weights: two nodes coincide: {nodes}")
    return [c / denom for c in coeffs]


def etd_weights(nodes, h, span=None, moments=None):
    """Weights w_j with

        int_0^H e^-(H - u) P(u / H) du = sum_j w_j P(nodes[j])

    for every polynomial P of degree < len(nodes), where H = `span` (default
    h). Nodes are positions in units of the step h (0 = the step's start,
    negative = history, 1 = the step's end); the integral runs over the
    kernel of the step, whose length H may differ from h: a stochastic step
    (Lu et al. 2023, SDE-DPM-Solver++) integrates the elapsed h against a
    kernel of rate (1 + eta), i.e. H = (1 + eta) h, and the data trend is
    still read in units of h, so P is evaluated at u h / H / h = u / H.

    Uses int_0^H e^-(H-u) (u/H)^m du = H m! phi_(m+1)(-H). `moments`, if
    given, replaces the list [H m! phi_(m+1)(-H) for m] (a method whose
    published formula weights a power differently, e.g. k-diffusion's
    DPM-Solver++(3M)). H = inf (a step to sigma = 0) puts all weight on the
    constant term: w_j = l_j(0) * 1."""
    big_h = h if span is None else span
    n = len(nodes)
    if moments is None:
        if math.isinf(big_h):
            moments = [1.0] + [0.0] * (n - 1)
        else:
            moments = [big_h * math.factorial(m) * phi(m + 1, -big_h) for m in range(n)]
    out = []
    for j in range(n):
        c = _monomial_coeffs(list(nodes), j)
        out.append(sum(cm * mm for cm, mm in zip(c, moments)))
    return out
