"""The noise process: how a model family relates a noise level sigma to the
signal scale alpha, and the half-log-SNR lambda = log(alpha / sigma).

ComfyUI hands every sampler a plain `sigma`. What that number means depends on
the model family (Karras et al. 2022 for VE, Lipman et al. 2023 / Esser et al.
2024 for rectified flow):

* ``ve``   -- eps and v models in ComfyUI's sigma space: x = x0 + sigma * n,
              so alpha = 1 and sigma in (0, inf).
* ``flow`` -- ComfyUI's CONST models (SD3, Flux): x = (1 - sigma) x0 + sigma n,
              so alpha = 1 - sigma and sigma in (0, 1].

Both share the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma, so
the derivative-based samplers (Euler, Heun, LMS, ...) run unchanged. What
differs is everything that involves alpha: the exponential integrators and how
fresh noise is mixed in. Those go through the methods below, which all work in
"normalised" coordinates x / alpha, sigma / alpha (a VE process) and map back.

All scalar arithmetic is float64 on the host: the sampler reads the sigma
schedule once and then never synchronises with the device for coefficients.
"""
import math

__all__ = ["Process", "VE", "FLOW", "get_process"]


class Process:
    """Scalar maps between sigma, alpha and lambda for one model family."""

    name = "abstract"
    sigma_limit = math.inf  # largest admissible sigma

    def alpha(self, sigma):
        raise NotImplementedError

    def sigma_from_snr_sigma(self, snr_sigma):
        """Inverse of sigma / alpha(sigma)."""
        raise NotImplementedError

    def lam(self, sigma):
        """Half-log-SNR, finite for every admissible sigma > 0."""
        raise NotImplementedError

    def sigma_from_lam(self, lam):
        raise NotImplementedError

    # --- derived, shared by both processes -------------------------------
    def snr_sigma(self, sigma):
        """sigma / alpha: the VE noise level of the same point (inf at alpha = 0)."""
        a = self.alpha(sigma)
        return math.inf if a <= 0.0 else sigma / a

    def decay(self, sigma, sigma_to):
        """exp(-(lambda_to - lambda)) computed from ratios, so it is exact even
        where lambda is infinite: 0 when starting from pure noise (alpha = 0) or
        ending at sigma_to = 0."""
        if sigma_to == 0.0:
            return 0.0
        a_to = self.alpha(sigma_to)
        return (sigma_to * self.alpha(sigma)) / (sigma * a_to)

    def ancestral_split(self, sigma, sigma_next, eta):
        """Split the step sigma -> sigma_next into a deterministic move to
        sigma_down and fresh noise, the ancestral sampling of Ho et al. 2020 /
        DDIM's sigma_eta (Song et al. 2021), written in normalised coordinates
        so one formula serves every process.

        Returns (sigma_down, up) where `up` is the fresh noise's standard
        deviation in normalised units; use `renoise` to apply it.
        eta = 0 gives (sigma_next, 0); eta = 1 the classic ancestral step.
        """
        if eta == 0.0 or sigma_next == 0.0:
            return sigma_next, 0.0
        snr_next = self.snr_sigma(sigma_next)
        # q = snr_sigma(next) / snr_sigma(now); 0 when starting at alpha = 0.
        q = self.decay(sigma, sigma_next)
        frac_up = min(1.0, eta * math.sqrt(max(0.0, 1.0 - q * q)))
        up = snr_next * frac_up
        down = snr_next * math.sqrt(max(0.0, 1.0 - frac_up * frac_up))
        return self.sigma_from_snr_sigma(down), up

    def renoise(self, x_down, sigma_down, sigma_next, up, noise):
        """Carry x from sigma_down to sigma_next by adding `up` fresh noise:
        x_next = (alpha_next / alpha_down) x_down + alpha_next * up * noise.
        For VE this is x_down + up * noise; for flow it re-mixes as
        (1 - s) x0 + s n, so the marginal stays exactly the process's."""
        a_next = self.alpha(sigma_next)
        scale = a_next / self.alpha(sigma_down)
        if scale != 1.0:
            x_down = x_down * scale
        return x_down + noise * (a_next * up)

    def percent_to_sigma(self, percent):
        """The sigma at `percent` of the model's process (0: pure noise, 1:
        clean), ComfyUI's model_sampling.percent_to_sigma. The default is a
        generic model of the family (SD 1.x's table for VE, shift 1 for
        flow); nodes/host.py derives a process with the model's own map."""
        raise NotImplementedError

    def derive(self, percent_to_sigma=None, alpha_floor=None):
        """A copy of this process with the model's percent map and, for flow,
        the alpha that stands for sigma = 1 in lambda (ComfyUI reads sigma = 1
        as percent_to_sigma(1e-4) for its SNR-based samplers)."""
        import copy
        other = copy.copy(self)
        if percent_to_sigma is not None:
            other._percent_to_sigma = percent_to_sigma
        if alpha_floor is not None:
            if not 0.0 < alpha_floor < 1.0:
                raise ValueError(f"alpha_floor must be in (0, 1), got {alpha_floor}")
            other._alpha_floor = float(alpha_floor)
        return other

    def __repr__(self):
        return f"Process({self.name!r})"


class _VE(Process):
    name = "ve"

    def alpha(self, sigma):
        return 1.0

    def sigma_from_snr_sigma(self, snr_sigma):
        return snr_sigma

    def lam(self, sigma):
        return -math.log(sigma)

    def sigma_from_lam(self, lam):
        return math.exp(-lam)

    def percent_to_sigma(self, percent):
        fn = getattr(self, "_percent_to_sigma", None)
        if fn is not None:
            return float(fn(percent))
        if percent <= 0.0:
            return math.inf
        if percent >= 1.0:
            return 0.0
        from ..sigma_tables import sd1_sigmas  # the SD 1.x table
        table = sd1_sigmas().double()
        t = (1.0 - percent) * (len(table) - 1)
        lo = int(math.floor(t))
        w = t - lo
        hi = min(lo + 1, len(table) - 1)
        # interpolated in log sigma, as the host's ModelSamplingDiscrete.sigma
        return math.exp((1.0 - w) * math.log(float(table[lo])) + w * math.log(float(table[hi])))


class _Flow(Process):
    name = "flow"
    sigma_limit = 1.0
    # lambda(1) = -inf. For the weights of higher-order terms (ratios of step
    # sizes in lambda) we read sigma = 1 as 1 - 1e-4, as ComfyUI does for its
    # SNR-based samplers; first-order terms use `decay`, which stays exact.
    _alpha_floor = 1e-4

    def alpha(self, sigma):
        return 1.0 - sigma

    def sigma_from_snr_sigma(self, snr_sigma):
        if math.isinf(snr_sigma):
            return 1.0
        return snr_sigma / (1.0 + snr_sigma)

    def lam(self, sigma):
        a = max(1.0 - sigma, self._alpha_floor)
        return math.log(a) - math.log(sigma)

    def sigma_from_lam(self, lam):
        # alpha / sigma = e^lam with alpha = 1 - sigma.
        if lam > 0:
            e = math.exp(-lam)
            return e / (1.0 + e)
        return 1.0 / (1.0 + math.exp(lam))

    def percent_to_sigma(self, percent):
        fn = getattr(self, "_percent_to_sigma", None)
        if fn is not None:
            return float(fn(percent))
        return min(1.0, max(0.0, 1.0 - percent))


VE = _VE()
FLOW = _Flow()
_PROCESSES = {"ve": VE, "flow": FLOW}


def get_process(process):
    """Accepts "ve" / "flow" or a Process instance."""
    if isinstance(process, Process):
        return process
    if isinstance(process, str) and process.lower() in _PROCESSES:
        return _PROCESSES[process.lower()]
    raise ValueError(
        f"process must be one of {sorted(_PROCESSES)} (or a Process), got {process!r}")
