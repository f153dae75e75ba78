"""Noise types: the distribution and spatial spectrum of the initial noise and
of a stochastic sampler's fresh noise. Pure torch, no host import.

Every type gives, per batch item and channel, zero mean and unit variance:
the i.i.d. types by their analytic standardisation (each value independent),
the spatial ones by standardising each channel's field. Draws use a CPU
generator seeded from the seed, so a seed gives the same numbers on every
device. Names follow RES4LYF's where the noise is the same thing.

    gaussian      N(0, 1) per value.
    uniform       U(-sqrt 3, sqrt 3): flat, kurtosis 1.8.
    laplacian     Laplace(0, 1/sqrt 2): kurtosis 6.
    studentt      Student's t with 5 degrees of freedom times sqrt(3/5):
                  heavy tails, kurtosis 9.
    brownian      the run's Brownian path (samplers/noise.BrownianNoise): for
                  fresh noise, increments indexed by sigma (the default: it
                  converges as steps grow and a split run equals one run); as
                  an initial noise, the path's increment over the model's
                  range, a Gaussian.
    pyramid-bilinear        multi-resolution noise (Whitaker 2023, "multi-
                  resolution noise for diffusion"): sum over octaves k of
                  d^k times white noise at 1/2^k of the size, bilinearly
                  upsampled, discount d = 0.8: low frequencies heavier.
    hires-pyramid-bilinear  the same from the full size down only two
                  octaves at factor 1.5 and discount 0.5: a milder low-
                  frequency lift that keeps fine grain.
    perlin        Perlin gradient noise (Perlin 2002, quintic fade) on a
                  lattice of 4 latent pixels plus its octaves at 8 and 16
                  (persistence 0.5), plus 10% white noise so every frequency
                  stays present: smooth blobs.
    pink, blue, brown, violet  power-law spectra: white noise filtered in the
                  Fourier domain so that the power falls as 1/f^alpha of the
                  radial frequency f, alpha = 1 (pink), -1 (blue), 2 (brown),
                  -2 (violet); the zero frequency removed.
    core          the ComfyUI core's own draws for each of its sampler names
                  (fresh noise only; see nodes/host.py): a retyped workflow
                  keeps the core's image.
"""
import math

import torch

__all__ = ["NOISE_TYPES", "FRESH_NOISE_TYPES", "INITIAL_NOISE_TYPES", "draw", "TypedNoise",
           "slerp", "MixedNoise"]

_IID = ("gaussian", "uniform", "laplacian", "studentt")
_SPATIAL = ("pyramid-bilinear", "hires-pyramid-bilinear", "perlin", "pink", "blue", "brown",
            "violet")
NOISE_TYPES = _IID + ("brownian",) + _SPATIAL
INITIAL_NOISE_TYPES = ("gaussian", "uniform", "laplacian", "studentt") + _SPATIAL
FRESH_NOISE_TYPES = ("brownian", "core") + _IID + _SPATIAL
POWER_LAW = {"pink": 1.0, "blue": -1.0, "brown": 2.0, "violet": -2.0}
STUDENT_DF = 5.0
PYRAMID_DISCOUNT = 0.8


def check_type(name, allowed, what):
    if name not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {name!r}")
    return name


def _iid(kind, shape, g):
    if kind == "gaussian":
        return torch.randn(shape, generator=g, dtype=torch.float64)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    if kind == "uniform":
        return (u - 0.5) * math.sqrt(12.0)
    if kind == "laplacian":  # inverse CDF of Laplace(0, b), b = 1/sqrt(2): variance 2 b^2 = 1
        v = u - 0.5
        return -math.sqrt(0.5) * torch.sign(v) * torch.log1p(-2.0 * v.abs().clamp(max=0.5 - 1e-16))
    if kind == "studentt":  # Z / sqrt(chi2_nu / nu), chi2 as a sum of nu squared normals
        nu = int(STUDENT_DF)
        z = torch.randn(shape, generator=g, dtype=torch.float64)
        chi2 = torch.randn((nu,) + tuple(shape), generator=g, dtype=torch.float64).pow(2).sum(0)
        return z / (chi2 / nu).sqrt() * math.sqrt((nu - 2.0) / nu)
    raise ValueError(kind)


def _standardise(field):
    """Zero mean, unit variance per leading (batch, channel) slice."""
    dims = tuple(range(2, field.ndim))
    if not dims:
        return field
    field = field - field.mean(dim=dims, keepdim=True)
    return field / field.std(dim=dims, keepdim=True).clamp_min(1e-12)


def _resize(field, size):
    """Bilinear resize of the last two dims of [N, H, W]-like fields."""
    lead = field.shape[:-2]
    flat = field.reshape(-1, 1, *field.shape[-2:])
    out = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


def _pyramid(shape, g, factor, discount, octaves=None):
    h, w = shape[-2], shape[-1]
    out = torch.randn(shape, generator=g, dtype=torch.float64)
    k = 1
    while True:
        sh, sw = int(h / factor ** k), int(w / factor ** k)
        if sh < 1 or sw < 1 or (octaves is not None and k > octaves):
            break
        coarse = torch.randn(tuple(shape[:-2]) + (sh, sw), generator=g, dtype=torch.float64)
        out = out + discount ** k * _resize(coarse, (h, w))
        k += 1
    return out


def _fade(t):
    return t * t * t * (t * (t * 6 - 15) + 10)


def _perlin_octave(shape, g, cell):
    """Perlin gradient noise with lattice spacing `cell` pixels over [.., H, W]."""
    h, w = shape[-2], shape[-1]
    gh, gw = h // cell + 2, w // cell + 2
    angles = torch.rand(tuple(shape[:-2]) + (gh, gw), generator=g, dtype=torch.float64) * 2 * math.pi
    gx, gy = torch.cos(angles), torch.sin(angles)
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / cell
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / cell
    y0, x0 = ys.floor().long(), xs.floor().long()
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]

    def corner(dy, dx):
        cx = gx[..., (y0 + dy)[:, None], (x0 + dx)[None, :]]
        cy = gy[..., (y0 + dy)[:, None], (x0 + dx)[None, :]]
        return cx * (fx - dx) + cy * (fy - dy)
    uy, ux = _fade(fy), _fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return top * (1 - uy) + bottom * uy


def _perlin(shape, g):
    out = torch.zeros(shape, dtype=torch.float64)
    for k, cell in enumerate((16, 8, 4)):
        out = out + 0.5 ** (2 - k) * _standardise(_perlin_octave(shape, g, cell))
    white = torch.randn(shape, generator=g, dtype=torch.float64)
    return _standardise(out) + 0.1 * white


def _power_law(shape, g, alpha):
    h, w = shape[-2], shape[-1]
    white = torch.randn(shape, generator=g, dtype=torch.float64)
    spec = torch.fft.rfft2(white)
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = torch.sqrt(fy * fy + fx * fx)
    gain = torch.where(f > 0, f.clamp_min(1e-12) ** (-alpha / 2.0), torch.zeros_like(f))
    return torch.fft.irfft2(spec * gain, s=(h, w))


def draw(kind, shape, generator):
    """One draw of noise type `kind` (not brownian/core) of `shape`
    ([B, C, H, W] or any shape with >= 2 trailing spatial dims for the
    spatial types), float64 on the CPU, per (batch, channel) zero mean and
    unit variance. generator: a CPU torch.Generator."""
    shape = tuple(int(s) for s in shape)
    if kind in _IID:
        return _iid(kind, shape, generator)
    if len(shape) < 3:
        raise ValueError(f"noise type {kind!r} is spatial: it needs a latent with height and "
                         f"width, got shape {shape}")
    lead, (h, w) = shape[:-2], shape[-2:]
    flat = (int(math.prod(lead)), h, w)  # 3-D and 5-D (video) latents: fields per slice
    if kind == "pyramid-bilinear":
        field = _pyramid(flat, generator, 2.0, PYRAMID_DISCOUNT)
    elif kind == "hires-pyramid-bilinear":
        field = _pyramid(flat, generator, 1.5, 0.5, octaves=2)
    elif kind == "perlin":
        field = _perlin(flat, generator)
    elif kind in POWER_LAW:
        field = _power_law(flat, generator, POWER_LAW[kind])
    else:
        raise ValueError(f"unknown noise type {kind!r}; known: {', '.join(NOISE_TYPES)}")
    field = field.reshape(shape)
    # per (batch, channel): the slices' own statistics
    per = field.reshape(shape[0], shape[1] if len(shape) > 1 else 1, -1)
    per = (per - per.mean(-1, keepdim=True)) / per.std(-1, keepdim=True).clamp_min(1e-12)
    return per.reshape(shape)


def _generator(seed, stream):
    """A CPU generator for (seed, stream): stream 0 the initial noise, 1 the
    fresh noise, so the two never share numbers."""
    from .noise import _derived
    return torch.Generator().manual_seed(_derived(int(seed), 77, stream))


class TypedNoise:
    """Fresh noise of type `kind` (a noise source, see noise.py): a new
    draw per interval from a CPU generator seeded by `seed`, so the same on
    every device. An interval asked again gives the same draw, and one that
    extends an interval drawn before from the same start (dpmpp_sde's
    midpoint, then its whole step) is composed the Brownian way,
    sqrt(dt_1 / dt) z_1 + sqrt(dt_2 / dt) z_2 with z_2 new over the rest, so
    the two draws correlate as a path's increments do (independent draws
    cost that sampler 15% of the data's spread). Unlike the Brownian path,
    draws follow the call order: a split run draws anew."""

    KEEP = 4  # intervals remembered

    def __init__(self, x, kind, seed=0):
        check_type(kind, _IID + _SPATIAL, "fresh noise type")
        self.kind, self.shape = kind, tuple(x.shape)
        self.dtype, self.device = x.dtype, x.device
        self.generator = _generator(seed, 1)
        self._drawn = []  # [((a, b), z)], newest last

    def _new(self):
        return draw(self.kind, self.shape, self.generator)

    def __call__(self, sigma, sigma_next):
        a, b = float(sigma), float(sigma_next)
        z = None
        for (a0, b0), z0 in reversed(self._drawn):
            if a0 == a and b0 == b:
                z = z0
                break
            if a0 == a and (b0 - a) * (b - b0) > 0:  # b0 strictly between a and b
                w1 = math.sqrt(abs(b0 - a) / abs(b - a))
                w2 = math.sqrt(abs(b - b0) / abs(b - a))
                z = w1 * z0 + w2 * self._new()
                break
        if z is None:
            z = self._new()
        self._drawn = (self._drawn + [((a, b), z)])[-self.KEEP:]
        return z.to(self.dtype).to(self.device)


def initial_noise(kind, shape, seed):
    """The initial noise of type `kind` for a latent of `shape` (float64, CPU)."""
    check_type(kind, INITIAL_NOISE_TYPES, "noise_type")
    return draw(kind, shape, _generator(seed, 0))


def slerp(a, b, t):
    """Spherical interpolation per batch item between noises a and b at
    t in [0, 1]: t = 0 returns a itself, t = 1 b itself (bit for bit); in
    between, the direction moves along the great circle and the norm is
    interpolated, so two unit-variance noises give unit variance."""
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"variation_strength must be in [0, 1], got {t}")
    if t == 0.0:
        return a
    if t == 1.0:
        return b
    out = torch.empty_like(a)
    for i in range(a.shape[0]):
        x, y = a[i].double().flatten(), b[i].double().flatten()
        nx, ny = x.norm(), y.norm()
        ux, uy = x / nx, y / ny
        omega = torch.arccos((ux * uy).sum().clamp(-1.0, 1.0))
        if float(omega) < 1e-6:
            u = (1 - t) * ux + t * uy
        else:
            u = (torch.sin((1 - t) * omega) * ux + torch.sin(t * omega) * uy) / torch.sin(omega)
            u = u / u.norm()
        out[i] = (u * ((1 - t) * nx + t * ny)).reshape(a[i].shape).to(a.dtype)
    return out


class MixedNoise:
    """Fresh noise cos(pi t / 2) A + sin(pi t / 2) B of two independent
    sources: unit variance at every t, and for two Brownian paths again a
    Brownian path (a fixed rotation of independent Brownian motions is one).
    Forks mix the sources' forks."""

    def __init__(self, first, second, t):
        self.first, self.second = first, second
        self.a, self.b = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)

    def __call__(self, sigma, sigma_next):
        return self.a * self.first(sigma, sigma_next) + self.b * self.second(sigma, sigma_next)

    def fork(self, key):
        f = getattr(self.first, "fork", None)
        s = getattr(self.second, "fork", None)
        if f is None or s is None:
            return self
        m = MixedNoise(f(key), s(key), 0.0)
        m.a, m.b = self.a, self.b
        return m
