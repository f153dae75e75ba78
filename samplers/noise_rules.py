"""Noise rules: how fresh noise enters a step.

Every stochastic step of this package has one shape, written in the
normalised coordinates X = x / alpha, S = sigma / alpha of the process (where
every process is VE, see process.py): a deterministic move from S to a lower
S_down, then fresh noise of standard deviation `up` up to S_next,

    S_down^2 + up^2 = S_next^2.

A rule is the choice of S_down at noise strength eta; the fraction of the
noise at sigma_next that is fresh is then up / S_next, which is what the web
widget draws (`fraction`), so it never re-derives a rule.

* ancestral: DDIM's sigma_eta (Song et al. 2021, arXiv:2010.02502, eq. 16),
  k-diffusion's get_ancestral_step: up = min(S_next, eta S_next sqrt(1 - q^2)),
  q = S_next / S. eta = 1 is DDPM's posterior (Ho et al. 2020), so `ddpm` is
  this rule at eta = 1.
* sde: SDE-DPM-Solver++ (Lu et al. 2023, arXiv:2211.01095, Sec. 5): the
  reverse SDE with noise eta g over the step, S_down = S_next e^(-eta h),
  h = lambda_next - lambda, up = S_next sqrt(1 - e^(-2 eta h)).
* sde_squared: the same with rate eta^2: SA-Solver's tau (Xue et al. 2023,
  arXiv:2309.05019, eq. 7), where the node's "eta" is tau.
* fresh: the fraction itself is min(1, eta): eta = 1 re-noises completely,
  LCM's multistep sampling (Luo et al. 2023, arXiv:2310.04378, Alg. 1).
* er_sde: ER-SDE's noise scale function (Cui et al. 2023, arXiv:2309.06169,
  eq. 13): S_down = S * f(S_next) / f(S) with f(x) = x (e^(x^0.3) + 10)^eta,
  the function of their VP ER-SDE 5 (the core's default); eta = 0 gives
  f(x) = x, the ODE.

Every rule gives (S_next, 0) at eta = 0 and when sigma_next = 0.
"""
import math

__all__ = ["RULES", "get_rule", "NoiseRule"]


class NoiseRule:
    name = "abstract"

    def down_snr(self, proc, sigma, sigma_next, eta, decay):
        """S_down (normalised) for the step sigma -> sigma_next, 0 <= S_down <= S_next;
        decay = e^-h over the step."""
        raise NotImplementedError

    def split(self, proc, sigma, sigma_next, eta, decay=None):
        """-> (sigma_down, up): the deterministic target as a sigma of the
        process, and the fresh noise's standard deviation in normalised units
        (apply with Process.renoise). decay: e^-h of the step where the caller
        measures h on a clock of its own (a floored lambda at flow's sigma =
        1); by default the process's exact ratio."""
        if eta == 0.0 or sigma_next == 0.0:
            return sigma_next, 0.0
        if decay is None:
            decay = proc.decay(sigma, sigma_next)
        s_next = proc.snr_sigma(sigma_next)
        s_down = min(s_next, max(0.0, self.down_snr(proc, sigma, sigma_next, eta, decay)))
        up = math.sqrt(max(0.0, s_next * s_next - s_down * s_down))
        return proc.sigma_from_snr_sigma(s_down), up

    def fraction(self, proc, sigma, sigma_next, eta):
        """Fraction of the noise standard deviation at sigma_next that is fresh."""
        if eta == 0.0 or sigma_next == 0.0:
            return 0.0
        return self.split(proc, sigma, sigma_next, eta)[1] / proc.snr_sigma(sigma_next)

    def __repr__(self):
        return f"NoiseRule({self.name!r})"


class _Ancestral(NoiseRule):
    name = "ancestral"

    def down_snr(self, proc, sigma, sigma_next, eta, decay):
        # q = S_next / S = e^-h; 0 when starting at alpha = 0 (pure noise)
        frac_up = min(1.0, eta * math.sqrt(max(0.0, 1.0 - decay * decay)))
        return proc.snr_sigma(sigma_next) * math.sqrt(max(0.0, 1.0 - frac_up * frac_up))


class _SDE(NoiseRule):
    name = "sde"
    power = 1

    def down_snr(self, proc, sigma, sigma_next, eta, decay):
        return proc.snr_sigma(sigma_next) * decay ** (eta ** self.power)


class _SDESquared(_SDE):
    name = "sde_squared"
    power = 2


class _Fresh(NoiseRule):
    name = "fresh"

    def down_snr(self, proc, sigma, sigma_next, eta, decay):
        frac = min(1.0, eta)
        return proc.snr_sigma(sigma_next) * math.sqrt(1.0 - frac * frac)


def er_sde_scale(s, eta):
    """ER-SDE's noise scale function f(s) = s (e^(s^0.3) + 10)^eta."""
    return s * (math.exp(s ** 0.3) + 10.0) ** eta


class _ERSDE(NoiseRule):
    name = "er_sde"

    def down_snr(self, proc, sigma, sigma_next, eta, decay):
        s, s_next = proc.snr_sigma(sigma), proc.snr_sigma(sigma_next)
        if math.isinf(s):
            return 0.0  # from pure noise every rule with eta > 0 is all fresh
        return s * er_sde_scale(s_next, eta) / er_sde_scale(s, eta)


class _RFCore(NoiseRule):
    """The ComfyUI core's ancestral split on flow models (its *_RF samplers):
    sigma_down = sigma_next (1 + (sigma_next / sigma - 1) eta), a rule in
    sigma rather than in the process's SNR. Only the `core` fresh noise
    uses it, to give the core's image; the flow process's own split is
    `ancestral`."""
    name = "rf_core"

    def down_snr(self, proc, sigma, sigma_next, eta, decay):
        sigma_down = sigma_next * (1.0 + (sigma_next / sigma - 1.0) * eta)
        return proc.snr_sigma(max(0.0, sigma_down))


RULES = {r.name: r for r in (_Ancestral(), _SDE(), _SDESquared(), _Fresh(), _ERSDE(),
                             _RFCore())}


def get_rule(name):
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown noise rule {name!r}; known: {', '.join(RULES)}") from None
