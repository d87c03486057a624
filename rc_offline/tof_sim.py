"""A time-of-flight camera's depth and confidence, simulated from a ray-cast view (pure numpy).

The model (``simulate_tof``) turns per-pixel geometry (range, incidence angle) and material (NIR
reflectance, specularity) into what a small indoor ToF camera registered to the RGB frame reports:
16UC1 millimetres with 0 = invalid, and an 8-bit confidence that is 0 wherever the depth is invalid.

Returned light ("amplitude") per pixel::

    a = nir * cos(incidence) / range^2 * cos(off_axis)^vignetting_power * (1 - 0.7 * specular)

Failure modes, each a real ToF behaviour:

* **Maximum range**: nothing valid beyond ``max_range`` (range along the ray, so the reported optical-Z
  depth is within it too); nothing under ``min_range`` (saturation).
* **Dark / low-reflectance surfaces**: invalid where ``a < min_amplitude`` (black foam fails beyond about
  a metre, white paint reaches the maximum range).
* **Specular surfaces**: a mirror-like surface (``specular > 0.5``) facing the camera within ``mirror_deg``
  saturates; glossy surfaces drop out in patches (probability ``specular^2 * specular_dropout``, spatially
  clustered: brushed metal about a third, glossy plastic a few percent) and return less diffuse light.
* **Grazing angles**: invalid where the incidence angle exceeds ``grazing_deg`` (the floor far ahead).
* **Flying pixels**: where the range spread within ``edge_radius`` pixels exceeds ``edge_threshold +
  edge_relative * range`` the pixel's footprint (a native ToF pixel is larger than an RGB pixel) straddles
  a depth edge; a random share of its footprint sees the other surface and it reports the
  amplitude-weighted mix of both ranges, between foreground and background, each side's light from its
  own reflectance, incidence and distance (beside an absorbent surface the bright side dominates, whichever
  side the pixel is on). Its confidence drops with the mixing (``edge_confidence_drop``), so a confidence
  threshold removes most of these, but lightly mixed ones (a few cm to dm off) keep a high confidence.
* **Noise**: Gaussian range noise ``sigma = noise_floor * (1 + range) * sqrt(min(amplitude_ref / a, 30))``,
  growing with distance and with falling signal; plus rare isolated dropouts (``random_dropout``).

Confidence (amplitude-like): ``255 * (1 - exp(-a / amplitude_ref))`` times the edge factor, at least 1
where valid, 0 where invalid. ``min_amplitude`` maps to a confidence of about 25;
``confidence_threshold`` (50) is the default the fusion should use: above it the median error is a few
millimetres to centimetres (see test/test_scenes.py).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ['ToFConfig', 'confidence_of_amplitude', 'fast_normal', 'simulate_tof']


@dataclass(frozen=True)
class ToFConfig:
    """Parameters of the simulated ToF camera (see module doc). Lengths in metres, angles in degrees."""

    max_range: float = 4.0
    min_range: float = 0.1
    grazing_deg: float = 80.0
    min_amplitude: float = 0.012
    amplitude_ref: float = 0.116
    noise_floor: float = 0.0025
    mirror_deg: float = 12.0
    specular_dropout: float = 0.5
    edge_threshold: float = 0.05
    edge_relative: float = 0.03
    #: Footprint radius of one native ToF pixel in RGB pixels (a ToF of about 1/2.5 the RGB resolution,
    #: registered to it): pixels this close to a depth edge can mix both sides.
    edge_radius: int = 2
    #: Largest share of a flying pixel's light that comes from the other surface.
    max_mixing: float = 0.7
    edge_confidence_drop: float = 0.9
    random_dropout: float = 0.001
    vignetting_power: float = 3.0
    #: Recommended fusion threshold (0-255): pixels at or above it are trusted. Not used by the simulation.
    confidence_threshold: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.min_range < self.max_range:
            raise ValueError(f'need 0 < min_range < max_range, got {self.min_range}, {self.max_range}')
        if not 0 < self.grazing_deg <= 90 or self.min_amplitude <= 0 or self.amplitude_ref <= 0:
            raise ValueError('grazing_deg must be in (0, 90], min_amplitude and amplitude_ref > 0')
        if self.edge_radius < 1:
            raise ValueError(f'edge_radius must be >= 1 pixel, got {self.edge_radius}')
        if not 0 <= self.confidence_threshold <= 255:
            raise ValueError(f'confidence_threshold must be 0-255, got {self.confidence_threshold}')


def confidence_of_amplitude(amplitude: np.ndarray, config: ToFConfig) -> np.ndarray:
    """Amplitude -> confidence in [0, 255] (float), before edge penalties and invalidation."""
    return 255.0 * (1.0 - np.exp(-np.asarray(amplitude, np.float32) / np.float32(config.amplitude_ref)))


def _neighbourhood_extremes(r: np.ndarray, value: np.ndarray, radius: int) -> tuple[np.ndarray, ...]:
    """Minimum and maximum of ``r`` over (2 radius + 1)^2 windows (edges replicated), and ``value`` at the
    pixels where they are (the first such pixel in raster order of the offsets on ties)."""
    h, w = r.shape
    pr, pv = np.pad(r, radius, mode='edge'), np.pad(value, radius, mode='edge')
    lo, hi = r.copy(), r.copy()
    v_lo, v_hi = value.copy(), value.copy()
    size = 2 * radius + 1
    for dy in range(size):
        for dx in range(size):
            rr, vv = pr[dy:dy + h, dx:dx + w], pv[dy:dy + h, dx:dx + w]
            less, more = rr < lo, rr > hi
            np.copyto(lo, rr, where=less)
            np.copyto(v_lo, vv, where=less)
            np.copyto(hi, rr, where=more)
            np.copyto(v_hi, vv, where=more)
    return lo, hi, v_lo, v_hi


@functools.lru_cache(maxsize=1)
def _normal_table() -> np.ndarray:
    table = np.random.default_rng(7).standard_normal(1 << 21, dtype=np.float32)
    table.flags.writeable = False
    return table


def fast_normal(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` standard normal float32 values: a window of a fixed table at an offset drawn from ``rng``
    (5x cheaper than drawing them; windows of different frames are independent enough for sensor noise).
    Read-only view."""
    table = _normal_table()
    if n > table.size // 2:
        return rng.standard_normal(n, dtype=np.float32)
    start = int(rng.integers(0, table.size - n))
    return table[start:start + n]


@functools.lru_cache(maxsize=8)
def _bilinear_taps(n: int, cell: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coarse-grid taps i0, weight of i0, weight of i0 + 1 for n pixels at ``cell``-pixel grid spacing,
    scaled so that interpolated unit Gaussian noise keeps unit variance."""
    pos = np.arange(n, dtype=np.float64) / cell
    i0 = np.floor(pos).astype(np.intp)
    frac = pos - i0
    norm = np.sqrt((1 - frac) ** 2 + frac ** 2)
    taps = (i0, ((1 - frac) / norm).astype(np.float32), (frac / norm).astype(np.float32))
    for a in taps:
        a.flags.writeable = False
    return taps


def _clustered_uniform(shape: tuple[int, int], rng: np.random.Generator, cell: int = 10) -> np.ndarray:
    """Roughly uniform [0, 1] values in blobs of about ``cell`` pixels: bilinearly upsampled Gaussian noise
    through a logistic approximation of the normal CDF."""
    (iy, wy0, wy1), (ix, wx0, wx1) = _bilinear_taps(shape[0], cell), _bilinear_taps(shape[1], cell)
    grid = rng.standard_normal((shape[0] // cell + 2, shape[1] // cell + 2), dtype=np.float32)
    rows = grid[iy] * wy0[:, None] + grid[iy + 1] * wy1[:, None]
    field = rows[:, ix] * wx0 + rows[:, ix + 1] * wx1
    field *= np.float32(-1.702)
    np.exp(field, out=field)
    field += 1.0
    return np.reciprocal(field, out=field)


def _mix_edges(r: np.ndarray, amplitude: np.ndarray, rng: np.random.Generator,
               cfg: ToFConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flying pixels: near a depth edge a pixel mixes with the other side, each side weighted by the light
    it returns (reflectance, incidence and vignetting from its own pixel, distance from its own range).
    Returns the measured range, the measured amplitude and the confidence factor of every pixel."""
    f32 = np.float32
    reflected = amplitude * r * r
    lo, hi, refl_lo, refl_hi = _neighbourhood_extremes(r, reflected, cfg.edge_radius)
    edge = (hi - lo) > f32(cfg.edge_threshold) + f32(cfg.edge_relative) * r
    r_meas = r.copy()
    amp_meas = amplitude.copy()
    edge_factor = np.ones_like(r)
    idx = np.flatnonzero(edge)
    if idx.size:
        re, loe, hie, ae = r.ravel()[idx], lo.ravel()[idx], hi.ravel()[idx], amplitude.ravel()[idx]
        far = re - loe < hie - re
        other = np.where(far, hie, loe)
        refl_other = np.where(far, refl_hi.ravel()[idx], refl_lo.ravel()[idx])
        share = rng.uniform(0.0, cfg.max_mixing, idx.size).astype(f32)
        # light from the other surface per unit of this one's: a dark surface beside a bright one adds
        # almost nothing to its reading (an absorbent box does not pull the wall behind it forward)
        other_gain = (re / other) ** 2 * refl_other / np.maximum(reflected.ravel()[idx], f32(1e-12))
        light_other = share * other_gain
        weight = light_other / (light_other + (1 - share))     # amplitude-weighted share of the other range
        r_meas.ravel()[idx] = re + weight * (other - re)
        amp_meas.ravel()[idx] = ae * ((1 - share) + light_other)
        edge_factor.ravel()[idx] = 1.0 - f32(cfg.edge_confidence_drop) * np.sin(np.pi * weight)
    return r_meas, amp_meas, edge_factor


def simulate_tof(depth: np.ndarray, ray_norm: np.ndarray, cos_incidence: np.ndarray, nir: np.ndarray,
                 specular: np.ndarray, rng: np.random.Generator,
                 config: ToFConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulated ToF depth and confidence for one view.

    Args:
        depth: (H, W) true depth along optical Z, metres.
        ray_norm: (H, W) length of each pixel's ray direction scaled to unit optical z (range / depth).
        cos_incidence: (H, W) |cos| of the angle between the ray and the surface normal.
        nir: (H, W) NIR reflectance of the surface (0..1).
        specular: (H, W) specularity (0 matte .. 1 mirror).
        rng: draws the noise, mixing shares and dropouts.

    Returns:
        tof_mm: (H, W) uint16 depth along optical Z in millimetres, 0 = invalid.
        confidence: (H, W) uint8, 0 where invalid, 1..255 where valid.
    """
    cfg = config or ToFConfig()
    f32 = np.float32
    depth = depth.astype(f32, copy=False)
    r = depth * ray_norm
    amplitude = (nir * cos_incidence / (r * r) * (1.0 / ray_norm) ** f32(cfg.vignetting_power)
                 * (1.0 - f32(0.7) * specular)).astype(f32)

    r_meas, amp_meas, edge_factor = _mix_edges(r, amplitude, rng, cfg)

    ratio = np.minimum(f32(cfg.amplitude_ref) / np.maximum(amp_meas, f32(1e-9)), f32(30.0))
    sigma = f32(cfg.noise_floor) * (1.0 + r_meas) * np.sqrt(ratio)
    r_meas = r_meas + sigma * fast_normal(rng, r.size).reshape(r.shape)

    valid = amp_meas >= f32(cfg.min_amplitude)
    valid &= cos_incidence >= f32(math.cos(math.radians(cfg.grazing_deg)))
    valid &= (r <= f32(cfg.max_range)) & (r_meas <= f32(cfg.max_range)) & (r_meas >= f32(cfg.min_range))
    valid &= ~((specular > 0.5) & (cos_incidence > f32(math.cos(math.radians(cfg.mirror_deg)))))
    valid &= _clustered_uniform(r.shape, rng) >= specular * specular * f32(cfg.specular_dropout)
    valid &= rng.random(r.shape, dtype=f32) >= f32(cfg.random_dropout)

    z_meas = r_meas / ray_norm
    tof_mm = np.where(valid, np.round(z_meas * f32(1000.0)), 0).astype(np.uint16)
    valid &= tof_mm > 0
    confidence = confidence_of_amplitude(amp_meas, cfg) * edge_factor
    confidence = np.where(valid, np.clip(np.round(confidence), 1, 255), 0).astype(np.uint8)
    return tof_mm, confidence
