"""Controls over any sampler, as data the one loop (core.py) reads: restart
segments, Karras churn and the detail (lying sigma) adjustment. Pure
functions of the schedule; no model, no tensors.

* Restart (Xu et al. 2023, "Restart Sampling for Improving Generative
  Processes", arXiv:2306.14878, Alg. 1): after the run reaches t_min, add
  fresh noise back up to t_max and integrate down to t_min again with N noise
  levels (N - 1 steps), K times. A segment is [N, K, t_min, t_max] in the
  model's sigma units, N counting both ends of the restart's Karras
  schedule (rho = 7) as the paper's code, A1111 and ComfyUI's restart nodes
  do; t_min moves to the nearest sigma of the schedule (as theirs do).
* Churn (Karras et al. 2022, EDM, arXiv:2206.00364, Alg. 2): before a step
  from sigma the noise is raised to sigma_hat = (1 + gamma) sigma with
  gamma = min(s_churn / steps, sqrt(2) - 1) where s_tmin <= sigma <= s_tmax.
* Detail: the model is told a sigma lower (amount > 0) or higher (amount < 0)
  than the one the sampler integrates at, by a smooth bump over a window of
  the run's steps (the community's "detail daemon" and "lying sigma").
"""
import json
import math
from dataclasses import dataclass
from typing import Optional, Tuple

RESTART_RHO = 7.0
# A1111's automatic segment (its restart sampler, by step count), as noise
# levels sigma / alpha: t_min 0.1, t_max 2.
A1111_T_MIN, A1111_T_MAX = 0.1, 2.0
CHURN_MAX_GAMMA = math.sqrt(2.0) - 1.0

__all__ = ["parse_restart", "restart_segments", "restart_pieces", "Piece", "churn_gamma",
           "Detail", "as_detail"]


# --- restart ---------------------------------------------------------------------

def _segment(item, k):
    where = f"restart segment {k + 1}"
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise ValueError(f"{where} must be [N, K, t_min, t_max], got {item!r}")
    n, times, t_min, t_max = item
    for name, v in (("N", n), ("K", times)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise ValueError(f"{where}: {name} must be an integer, got {v!r}")
    n, times = int(n), int(times)
    if not 2 <= n <= 1000:
        raise ValueError(f"{where}: N (noise levels of a restart, both ends counted) must be "
                         f"in [2, 1000], got {n}")
    if not 0 <= times <= 100:
        raise ValueError(f"{where}: K (restarts) must be in [0, 100], got {times}")
    for name, v in (("t_min", t_min), ("t_max", t_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: {name} must be a finite number, got {v!r}")
    if not 0.0 < t_min < t_max:
        raise ValueError(f"{where}: needs 0 < t_min < t_max (sigmas), got t_min = {t_min}, "
                         f"t_max = {t_max}")
    return n, times, float(t_min), float(t_max)


def parse_restart(value):
    """Restart segments from a list, a tuple or text: None (also "", "none")
    for no restart, "default" for A1111's rule by step count, else a list of
    (N, K, t_min, t_max). Text is JSON, with or without the outer brackets:
    "[[10, 1, 0.1, 2]]", "[10, 1, 0.1, 2]" and "[3,2,0.06,0.3],[3,1,0.3,0.59]"
    (ComfyUI restart nodes' form) all parse; it is never evaluated.

    Raises ValueError naming the segment and the allowed range."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none", "off"):
            return None
        if text.lower() == "default":
            return "default"
        try:
            value = json.loads(f"[{text}]")
        except ValueError:
            raise ValueError(f"restart must be 'default', empty, or segments "
                             f"[[N, K, t_min, t_max], ...] as numbers, got {text!r}") from None
        if len(value) == 1 and isinstance(value[0], list) and value[0] and \
                all(isinstance(v, list) for v in value[0]):
            value = value[0]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"restart must be 'default', None or a list of [N, K, t_min, t_max], "
                         f"got {value!r}")
    if len(value) == 4 and not any(isinstance(v, (list, tuple)) for v in value):
        value = [value]
    return [_segment(item, k) for k, item in enumerate(value)] or None


def _nearest(sig, target, lo_index=1):
    """Index (>= lo_index) of the positive grid sigma nearest `target`."""
    best = None
    for k in range(lo_index, len(sig)):
        if sig[k] > 0.0 and (best is None or abs(sig[k] - target) < abs(sig[best] - target)):
            best = k
    return best


def _a1111_segments(sig, proc):
    """A1111's restart sampler by step count n: none below 20 steps; one
    restart of 9 steps below 36; else two of n // 4 steps; from the schedule's
    sigma nearest noise level 0.1 up to the one nearest 2 (both snapped to the
    schedule, skipped where they do not fit, as A1111 does). A1111 also
    shortens its main Karras schedule so that the total stays n; ours keeps the
    schedule it is given and adds the restart steps, as the paper and ComfyUI's
    restart nodes do."""
    steps = len(sig) - 1
    if steps < 20:
        return []
    n, times = (10, 1) if steps < 36 else (steps // 4 + 1, 2)
    k_min = _nearest(sig, proc.sigma_from_snr_sigma(A1111_T_MIN))
    k_max = _nearest(sig, proc.sigma_from_snr_sigma(A1111_T_MAX), 0)
    if k_min is None or k_max is None or not k_max < k_min:
        return []
    return [(n, times, sig[k_min], sig[k_max])]


def restart_segments(sig, segments, proc):
    """[(index of t_min in sig, N, K, t_min, t_max)] sorted by index, for
    segments as parse_restart returns them. sig: the schedule (floats, strictly
    decreasing). Raises ValueError where a segment does not fit it."""
    if segments is None:
        return []
    if segments == "default":
        segments = _a1111_segments(sig, proc)
    out = {}
    top = sig[0]
    for k, (n, times, t_min, t_max) in enumerate(segments):
        if times == 0:
            continue
        where = f"restart segment {k + 1} [{n}, {times}, {t_min}, {t_max}]"
        if t_max > top:
            raise ValueError(f"{where}: t_max must be at most the schedule's first sigma "
                             f"{top:.6g}")
        i = _nearest(sig, t_min)
        if i is None:
            raise ValueError(f"{where}: the schedule has no sigma > 0 after its first to "
                             f"restart from")
        if not sig[i] < t_max:
            raise ValueError(f"{where}: t_min moves to the schedule's nearest sigma "
                             f"{sig[i]:.6g}, which is not below t_max")
        if i in out:
            raise ValueError(f"{where}: t_min moves to sigma {sig[i]:.6g}, as segment "
                             f"{out[i][0] + 1}'s does; give each segment its own t_min")
        out[i] = (k, n, times, sig[i], t_max)
    return [(i, n, times, t_min, t_max) for i, (_, n, times, t_min, t_max) in sorted(out.items())]


def karras_levels(n, sigma_max, sigma_min, rho=RESTART_RHO):
    """n noise levels from sigma_max down to sigma_min, uniform in sigma^(1/rho)
    (Karras et al. 2022, eq. 5), with exact ends."""
    top, bottom = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    out = [(top + (bottom - top) * k / (n - 1)) ** rho for k in range(n)]
    out[0], out[-1] = sigma_max, sigma_min
    return out


@dataclass(frozen=True)
class Piece:
    """A stretch of a restart run: the schedule it integrates and, for a
    restart, the jump (t_min, t_max) that re-noises first."""
    sig: Tuple[float, ...]
    jump: Optional[Tuple[float, float]] = None


def restart_pieces(sig, segments, proc):
    """The run as pieces, in order: the schedule split at each segment's
    t_min, with its K restarts in between."""
    pieces, start = [], 0
    for i, n, times, t_min, t_max in restart_segments(sig, segments, proc):
        pieces.append(Piece(tuple(sig[start:i + 1])))
        levels = tuple(karras_levels(n, t_max, t_min))
        pieces.extend(Piece(levels, (t_min, t_max)) for _ in range(times))
        start = i
    if len(sig) - start > 1:  # a schedule may end at a restart's t_min
        pieces.append(Piece(tuple(sig[start:])))
    return pieces


# --- churn -------------------------------------------------------------------------

def churn_gamma(s_churn, steps):
    """EDM's gamma: min(s_churn / steps, sqrt(2) - 1) (Karras et al. 2022, Alg. 2)."""
    if s_churn == 0.0 or steps <= 0:
        return 0.0
    return min(s_churn / steps, CHURN_MAX_GAMMA)


# --- detail ------------------------------------------------------------------------

@dataclass(frozen=True)
class Detail:
    """The model is evaluated at sigma * (1 - amount * w(p)) while the sampler
    keeps its own sigma; p in [0, 1] is the run's progress (the fractional
    step index of sigma on the run's schedule over its steps - 1, as the
    community's detail daemon counts), and w a bump that rises from 0 at
    `start` to 1 at start + bias (end - start) and falls back to 0 at `end`,
    each side the smooth step (1 - cos(pi u)) / 2 raised to `exponent`.

    amount: fraction of sigma taken off at the peak, in [-1, 0.9]; > 0 makes
    the model see less noise than there is, so it adds detail; < 0 smooths.
    The detail daemon's (detail_amount d, cfg c) is amount 0.1 d c here."""
    amount: float = 0.0
    start: float = 0.2
    end: float = 0.8
    bias: float = 0.5
    exponent: float = 1.0

    def __post_init__(self):
        for name, lo, hi in (("amount", -1.0, 0.9), ("start", 0.0, 1.0), ("end", 0.0, 1.0),
                             ("bias", 0.0, 1.0), ("exponent", 0.0, 10.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not lo <= v <= hi:
                raise ValueError(f"detail {name} must be a number in [{lo}, {hi}], got {v!r}")
        if self.start > self.end:
            raise ValueError(f"detail start ({self.start}) must not be after its end "
                             f"({self.end}): both are fractions of the run, 0 first step, "
                             f"1 last")

    def weight(self, p):
        """w(p) in [0, 1]."""
        if not self.start <= p <= self.end or self.end == self.start:
            return 0.0
        mid = self.start + self.bias * (self.end - self.start)
        if p <= mid:
            u = 1.0 if mid == self.start else (p - self.start) / (mid - self.start)
        else:
            u = (self.end - p) / (self.end - mid)
        return (0.5 - 0.5 * math.cos(math.pi * u)) ** self.exponent

    def factors(self, sig, proc):
        """sigma -> the factor the model's sigma is multiplied by, for the
        run's schedule `sig` (floats, monotone). The model's sigma stays
        within the process (at most its largest sigma)."""
        grid = list(sig[:-1]) if len(sig) > 2 else list(sig[:1])
        last = max(1, len(grid) - 1)
        down = grid[0] > grid[-1]

        def progress(sigma):
            # fractional index of sigma on the grid, clamped to its ends
            if (sigma >= grid[0]) if down else (sigma <= grid[0]):
                return 0.0
            for k in range(len(grid) - 1):
                a, b = grid[k], grid[k + 1]
                if (b <= sigma <= a) if down else (a <= sigma <= b):
                    return (k + (sigma - a) / (b - a)) / last
            return 1.0

        def factor(sigma):
            f = 1.0 - self.amount * self.weight(progress(sigma))
            if sigma * f > proc.sigma_limit:
                f = proc.sigma_limit / sigma
            return f
        return factor

    @property
    def active(self):
        return self.amount != 0.0 and self.end > self.start


def as_detail(value):
    """None, a Detail, or a dict of its fields -> a Detail or None."""
    if value is None or isinstance(value, Detail):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"amount", "start", "end", "bias", "exponent"})
        if unknown:
            raise ValueError(f"detail has no field {', '.join(unknown)}; its fields: amount, "
                             f"start, end, bias, exponent")
        return Detail(**value)
    raise ValueError(f"detail must be None, a dict (amount, start, end, bias, exponent) or a "
                     f"Detail, got {value!r}")
