"""Local (in-box) synthetic distortions: the 12 categories x 5 severities of Refine-Perception-20K.

The paper's distortion pool (Sec. "Dataset Construction Pipeline") follows DepictQA-v2: each of
the 12 categories is a *family of variants*, each variant has one parameter set per severity
(``slight`` .. ``very severe`` = severity 1 .. 5). :func:`distort` applies one distortion to the
pixels of a box; :func:`distort_pair` applies two (severities 1-3, pairs from
:data:`ALLOWED_PAIRS`). Both have ``*_with_info`` twins that also return the variant and the
parameters actually used, so the dataset builder can record them.

Conventions
-----------
* Input: ``H x W x 3`` ``uint8`` RGB, never modified. Anything else raises ``ValueError`` (use
  :func:`to_rgb_uint8` to convert grayscale / RGBA / 16-bit / float arrays explicitly).
* ``bbox = (x1, y1, x2, y2)`` in pixels, half-open: columns ``x1 .. x2-1``, rows ``y1 .. y2-1``;
  ``None`` = the whole image. Both sides must be >= 8 px.
* ``rng``: a ``numpy.random.Generator`` (consumed), an ``int`` seed, or ``None`` = seed 0. The
  engine never touches global RNG state; the same seed gives bit-identical output.
* The variant is drawn by ``rng`` (one integer, always consumed, so naming the variant that the
  seed would have drawn reproduces the same output) unless ``variant=`` names it.
* Arithmetic is done in float32 on ``[0, 1]``; results go back to ``uint8`` by ``np.rint`` then
  clipping to ``[0, 255]`` (never truncation). Point-wise maps are applied as 256-entry LUTs.

In-box rule (statistics come from the whole image)
--------------------------------------------------
Every distortion is computed on the **whole image**, then the box is copied into a copy of the
input. Therefore ``distort(img, c, s, bbox=B, rng=r)[B] == distort(img, c, s, rng=r)[B]``
*exactly*, for every variant, and a box looks like a window onto the same distortion applied to
the whole picture: the contrast mean, multi-Otsu thresholds, median-cut palette, zoom centre,
the JPEG 8x8 (16x16 MCU) grid and the pixelation block grid all belong to the whole image, blur
kernels see the real neighbours across the box edge, and random fields (noise, glass/jitter
displacements) are drawn for the whole image so they do not depend on the box. Pixels outside
the box are bit-identical to the input. Costs do not depend on the box size (a few ms to a few
tens of ms for 512 x 384; see ``benchmarks/bench_distortions.py``).

Feather band
------------
``feather=0`` (default) pastes the box with a hard edge. With ``feather=f > 0`` only the band of
the ``f`` pixels just inside the box edge blends: a pixel whose distance to the nearest box
edge is ``d`` (``d = 0`` on the edge row/column) gets ``alpha = min(1, (d + 1) / (f + 1))`` of
the distorted value and ``1 - alpha`` of the original; deeper pixels are fully distorted.

Variants and parameters per severity 1 -> 5 (``x`` = image in [0, 1])
----------------------------------------------------------------------
======================  ==================  ==================================================
category                variant             parameters for severity 1, 2, 3, 4, 5
======================  ==================  ==================================================
blur                    gaussian            sigma 1, 2, 3, 4, 5
blur                    motion              (radius, sigma) (5,3) (10,5) (15,7) (15,9) (20,12);
                                            one-sided Gaussian-weighted line kernel, angle
                                            drawn uniformly in [0, 360) degrees
blur                    glass               (sigma, shift, iters) (.7,1,1) (.9,2,1) (1.2,2,2)
                                            (1.4,3,2) (1.6,4,2): Gaussian sigma, ``iters``
                                            random pixel displacements of up to +-shift px
                                            (vectorised local shuffle), Gaussian sigma again
blur                    lens                disk (defocus) kernel radius 2, 3, 4, 6, 8
blur                    zoom                mean of x and copies zoomed about the image centre
                                            by factors up to 1.03, 1.06, 1.10, 1.15, 1.21 in
                                            equal steps of at most 0.02
blur                    jitter              every pixel taken from a random offset of up to
                                            +-1, 2, 3, 4, 5 px in x and in y
noise                   gaussian_rgb        x + N(0, s^2) per channel, s .05 .10 .15 .20 .25
noise                   gaussian_ycrcb      noise in YCrCb: sigma_Y .05 .06 .07 .08 .09,
                                            chroma sigma = sigma_Y x 1, 1.45, 1.9, 2.35, 2.8
noise                   speckle             x + x * N(0, s^2), s .14 .21 .28 .35 .42
noise                   spatially_correlated  N(0, s^2) smoothed by a 3x3 box, s .08 .11 .14
                                            .18 .22
noise                   poisson             Poisson(x * k) / k, k 80, 60, 40, 25, 15
noise                   impulse             salt & pepper, fraction of pixels .01 .03 .05
                                            .07 .10 (half white, half black)
compression             jpeg                JPEG quality 25, 18, 12, 8, 5 (libjpeg-turbo,
                                            4:2:0)
compression             jpeg2000            JPEG 2000 (OpenJPEG via Pillow, 9/7 wavelet)
                                            with a PSNR target of 29, 27.5, 26, 24.5, 23 dB
overexposure            hsv_shift           V + .1 .2 .3 .4 .5 (HSV, clipped)
overexposure            rgb_shift           x + .1 .15 .2 .27 .35
overexposure            hsv_gamma           V ** .7 .58 .47 .36 .25
overexposure            rgb_gamma           x ** .8 .7 .6 .45 .3
underexposure           hsv_shift           V - .1 .2 .3 .4 .5
underexposure           rgb_shift           x - .1 .15 .2 .27 .35
underexposure           hsv_gamma           V ** 1.5 1.8 2.2 2.7 3.5
underexposure           rgb_gamma           x ** 1.4 1.7 2.1 2.6 3.2
high_contrast           linear              m + f (x - m), f 1.4 1.7 2.1 2.6 4.0 (Pillow's
                                            ImageEnhance.Contrast; m = mean luma of the image)
high_contrast           sigmoid             1 / (1 + (m / x) ** f), f 2, 4, 6, 8, 10
low_contrast            linear              as above, f .75 .6 .45 .3 .2
low_contrast            sigmoid             as above, f 1.0 .9 .8 .6 .4
oversaturate            hsv                 S x 3, 6, 12, 20, 64 (clipped to 1)
oversaturate            ycrcb               chroma (Cr, Cb - 0.5) x 2, 3, 5, 8, 16
desaturate              hsv                 S x .7 .55 .4 .2 0
desaturate              ycrcb               chroma x .6 .4 .2 .1 0
oversharpen             unsharp             (1 + a) x - a G(x), G = 5x5 Gaussian,
                                            a 2, 2.8, 4, 6, 8
pixelate                block               area downscale by .5 .4 .3 .25 .2, nearest upscale
quantization            otsu                per channel, exact multi-Otsu with 15, 11, 8, 5, 3
                                            classes (dynamic programming on the 256-bin
                                            histogram); each class -> its mean value
quantization            median_cut          Pillow median-cut palette of 20, 15, 10, 6, 3
                                            colours from a regular sample of <= 32768 pixels
                                            (every k-th row/column), nearest colour, no dither
quantization            bins                uniform per-channel bins 24, 16, 8, 6, 4; each bin
                                            -> its centre
======================  ==================  ==================================================

``m`` (contrast) is the mean luma (0.299 R + 0.587 G + 0.114 B) of the whole image. The JPEG 2000
target is OpenJPEG's rate-control target; the PSNR reached is typically within ~0.5 dB of it.

Two distortions
---------------
:func:`distort_pair` applies ``first`` then ``second`` (severities 1-3 each) to the whole image,
the second seeing the first's uint8 result, then pastes the box once. The allowed orders are in
:data:`ALLOWED_PAIRS` (asymmetric; its comment gives the rules).

Example
-------
>>> import numpy as np
>>> img = np.full((32, 48, 3), 100, np.uint8)
>>> out = distort(img, "overexposure", 3, bbox=(8, 8, 24, 24), rng=0, variant="rgb_shift")
>>> int(out[10, 10, 0]), int(out[0, 0, 0])      # 100/255 + .2 -> 151; outside the box unchanged
(151, 100)
>>> out, info = distort_with_info(img, "blur", 2, rng=1, variant="motion")
>>> info["variant"], info["params"]["radius"], info["params"]["sigma"]
('motion', 10, 5)
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from PIL import Image

__all__ = [
    "DISTORTIONS", "SEVERITIES", "VARIANTS", "EASY", "HARD", "ALLOWED_PAIRS", "PAIR_SEVERITIES", "MIN_BOX_SIDE",
    "distort", "distort_with_info", "distort_pair", "distort_pair_with_info", "strength",
    "to_rgb_uint8", "luma",
]

DISTORTIONS: tuple[str, ...] = (
    "blur", "noise", "compression", "overexposure", "underexposure", "high_contrast",
    "low_contrast", "oversaturate", "desaturate", "oversharpen", "pixelate", "quantization",
)
SEVERITIES: tuple[str, ...] = ("slight", "just noticeable", "relatively obvious", "severe", "very severe")
#: Tables 1-2 of the paper: "Easy" = common in natural scenes, "Hard" = the other seven.
EASY: tuple[str, ...] = ("blur", "noise", "compression", "overexposure", "underexposure")
HARD: tuple[str, ...] = tuple(c for c in DISTORTIONS if c not in EASY)
MIN_BOX_SIDE = 8
#: Severities allowed in a two-distortion combination (DepictQA-v2 convention).
PAIR_SEVERITIES = (1, 2, 3)

#: Two-distortion combinations: ``ALLOWED_PAIRS[first]`` = categories that may be applied *after*
#: ``first``. The table follows the image-formation order (optics -> sensor -> tone/colour edits
#: -> storage), in DepictQA-v2's spirit (blur -> 9 partners, oversharpen -> overexposure only).
#: Rules (tested): no category pairs with itself or its opposite (over/under-exposure, high/low
#: contrast, over/de-saturation, blur/oversharpen); no pair is allowed in both orders; pairs in
#: which the second step would erase the first are left out (noise -> blur or pixelate, blur ->
#: pixelate); every category can come first.
ALLOWED_PAIRS: dict[str, tuple[str, ...]] = {
    "blur": ("overexposure", "compression", "high_contrast", "low_contrast", "underexposure",
             "noise", "quantization", "oversaturate", "desaturate"),
    "noise": ("overexposure", "high_contrast", "low_contrast", "oversaturate", "desaturate",
              "compression"),
    "compression": ("oversharpen",),
    "overexposure": ("low_contrast", "oversaturate", "desaturate", "pixelate", "quantization",
                     "compression"),
    "underexposure": ("noise", "high_contrast", "low_contrast", "oversaturate", "desaturate",
                      "pixelate", "quantization", "compression"),
    "high_contrast": ("oversaturate", "desaturate", "pixelate", "quantization", "compression"),
    "low_contrast": ("oversaturate", "desaturate", "pixelate", "quantization", "compression"),
    "oversaturate": ("pixelate", "quantization", "compression"),
    "desaturate": ("pixelate", "quantization", "compression"),
    "oversharpen": ("overexposure",),
    "pixelate": ("quantization", "compression"),
    "quantization": ("compression",),
}

Box = tuple[int, int, int, int]
RngLike = np.random.Generator | int | None


# --------------------------------------------------------------------------- shared steps
def _f32(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) * np.float32(1 / 255)


def _u8(x: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 by rounding (np.rint) and clipping; uint8 passes through."""
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _lut(img: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a point-wise map of x in [0, 1] to every channel value via a 256-entry LUT."""
    table = _u8(np.asarray(fn(np.arange(256, dtype=np.float64) / 255.0), dtype=np.float64))
    return cv2.LUT(img, table)


def _hsv(img: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], tuple]) -> np.ndarray:
    """RGB -> HSV (float, S and V in [0, 1]) -> ``fn(S, V)`` -> clip -> RGB."""
    h, s, v = cv2.split(cv2.cvtColor(_f32(img), cv2.COLOR_RGB2HSV))
    s, v = fn(s, v)
    hsv = cv2.merge([h, np.clip(s, 0, 1).astype(np.float32), np.clip(v, 0, 1).astype(np.float32)])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _ycrcb(img: np.ndarray, fn: Callable[[np.ndarray, np.ndarray], tuple]) -> np.ndarray:
    """RGB -> YCrCb (float; Y in [0, 1], chroma centred on 0.5 as offsets) -> ``fn`` -> RGB."""
    y, cr, cb = cv2.split(cv2.cvtColor(_f32(img), cv2.COLOR_RGB2YCrCb))
    y, cr, cb = fn(y, cr - 0.5, cb - 0.5)
    return cv2.cvtColor(cv2.merge([np.float32(y), np.float32(cr + 0.5), np.float32(cb + 0.5)]),
                        cv2.COLOR_YCrCb2RGB)


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of an RGB uint8 array, float64 on ``[0, 1]``.

    >>> round(float(luma(np.full((1, 1, 3), 255, np.uint8))[0, 0]), 6), luma(np.zeros((2, 3, 3), np.uint8)).shape
    (1.0, (2, 3))
    """
    x = img.astype(np.float64) / 255.0
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _mean_luma(img: np.ndarray) -> float:
    r, g, b = cv2.mean(img)[:3]
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _displace(img: np.ndarray, rng: np.random.Generator, shift: int) -> np.ndarray:
    """Each pixel copied from a random integer offset in [-shift, shift]^2 (reflected border)."""
    h, w = img.shape[:2]
    d = rng.integers(-shift, shift + 1, size=(2, h, w), dtype=np.int16).astype(np.float32)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, gx + d[0], gy + d[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)


def _encode_decode(img: np.ndarray, fmt: str, **kw: Any) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **kw)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


# --------------------------------------------------------------------------- blur
def _blur_gaussian(img, rng, sigma):
    return cv2.GaussianBlur(_f32(img), (0, 0), sigma)


def _motion_kernel(radius: int, sigma: float, angle: float) -> np.ndarray:
    """One-sided line kernel of length ``radius``, Gaussian weights along it, bilinear splats."""
    size = 2 * radius + 1
    k = np.zeros((size, size), np.float64)
    t = np.arange(0, radius + 1e-9, 0.25)
    wts = np.exp(-t ** 2 / (2 * sigma ** 2))
    xs = radius + t * np.cos(np.deg2rad(angle))
    ys = radius - t * np.sin(np.deg2rad(angle))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.minimum(x0 + dx, size - 1), np.minimum(y0 + dy, size - 1)
        np.add.at(k, (yi, xi), wts * wgt)
    return (k / k.sum()).astype(np.float32)


def _blur_motion(img, rng, radius, sigma, angle):
    return cv2.filter2D(_f32(img), -1, _motion_kernel(radius, sigma, angle))


def _draw_angle(rng: np.random.Generator) -> dict:
    return {"angle": round(float(rng.uniform(0.0, 360.0)), 3)}


def _blur_glass(img, rng, sigma, shift, iters):
    x = cv2.GaussianBlur(_f32(img), (0, 0), sigma)
    for _ in range(iters):
        x = _displace(x, rng, shift)
    return cv2.GaussianBlur(x, (0, 0), sigma)


def _blur_lens(img, rng, radius):
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disk = (xx ** 2 + yy ** 2 <= radius ** 2 + 0.5).astype(np.float32)
    return cv2.filter2D(_f32(img), -1, disk / disk.sum())


def _blur_zoom(img, rng, max_zoom):
    h, w = img.shape[:2]
    x = _f32(img)
    n = int(np.ceil((max_zoom - 1.0) / 0.02 - 1e-9))
    acc = x.copy()
    for z in np.linspace(1.0, max_zoom, n + 1)[1:]:
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0.0, float(z))
        acc += cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return acc / (n + 1)


def _blur_jitter(img, rng, shift):
    return _displace(img, rng, shift)


# --------------------------------------------------------------------------- noise
def _noise_gaussian_rgb(img, rng, sigma):
    return _f32(img) + sigma * _normal(rng, img.shape)


def _noise_gaussian_ycrcb(img, rng, sigma, chroma):
    n = _normal(rng, img.shape)
    return _ycrcb(img, lambda y, cr, cb: (y + sigma * n[..., 0], cr + sigma * chroma * n[..., 1],
                                          cb + sigma * chroma * n[..., 2]))


def _noise_speckle(img, rng, sigma):
    x = _f32(img)
    return x + x * sigma * _normal(rng, img.shape)


def _noise_correlated(img, rng, sigma):
    return _f32(img) + cv2.blur(sigma * _normal(rng, img.shape), (3, 3))


def _noise_poisson(img, rng, scale):
    return rng.poisson(img * (scale / 255.0)).astype(np.float32) / np.float32(scale)


def _noise_impulse(img, rng, amount):
    u = rng.random(img.shape[:2], dtype=np.float32)
    out = img.copy()
    out[u < amount / 2] = 255
    out[u > 1 - amount / 2] = 0
    return out


# --------------------------------------------------------------------------- compression
def _jpeg(img, rng, quality):
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV failed to encode JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _jpeg2000(img, rng, psnr):
    return _encode_decode(img, "JPEG2000", quality_mode="dB", quality_layers=[psnr], irreversible=True)


# --------------------------------------------------------------------------- exposure (both signs)
def _hsv_shift(img, rng, delta):
    return _hsv(img, lambda s, v: (s, v + delta))


def _rgb_shift(img, rng, delta):
    return _lut(img, lambda x: x + delta)


def _hsv_gamma(img, rng, gamma):
    return _hsv(img, lambda s, v: (s, np.power(v, gamma)))


def _rgb_gamma(img, rng, gamma):
    return _lut(img, lambda x: np.power(x, gamma))


# --------------------------------------------------------------------------- contrast (both signs)
def _contrast_linear(img, rng, factor):
    m = _mean_luma(img)
    return _lut(img, lambda x: m + factor * (x - m))


def _contrast_sigmoid(img, rng, f):
    m = max(_mean_luma(img), 1e-3)
    return _lut(img, lambda x: 1.0 / (1.0 + (m / np.maximum(x, 1e-6)) ** f))


# --------------------------------------------------------------------------- saturation (both signs)
def _saturation_hsv(img, rng, factor):
    return _hsv(img, lambda s, v: (s * factor, v))


def _saturation_ycrcb(img, rng, factor):
    return _ycrcb(img, lambda y, cr, cb: (y, cr * factor, cb * factor))


# --------------------------------------------------------------------------- sharpen, pixelate
def _unsharp(img, rng, amount):
    x = _f32(img)
    return (1 + amount) * x - amount * cv2.GaussianBlur(x, (5, 5), 0)


def _pixelate(img, rng, scale):
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


# --------------------------------------------------------------------------- quantization
def _multiotsu_lut(hist: np.ndarray, classes: int) -> np.ndarray:
    """Exact multi-Otsu on a histogram: the partition of the bins into ``classes`` contiguous
    classes with the largest between-class variance (= smallest within-class sum of squared
    errors), found by dynamic programming in O(classes * bins^2); returns value -> class mean.
    """
    n = hist.size
    v = np.arange(n, dtype=np.float64)
    c0, c1, c2 = (np.concatenate([[0.0], np.cumsum(hist * v ** p)]) for p in (0, 1, 2))
    cnt = c0[None, :] - c0[:, None]  # [i, j]: bins i .. j-1
    s1 = c1[None, :] - c1[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = np.where(cnt > 0, (c2[None, :] - c2[:, None]) - s1 ** 2 / cnt, 0.0)
    cost[np.tril_indices(n + 1)] = np.inf  # a class needs at least one bin (i < j)
    best, back = cost[0].copy(), []
    for _ in range(classes - 1):
        total = best[:, None] + cost
        back.append(np.argmin(total, axis=0))
        best = total[back[-1], np.arange(n + 1)]
    edges, j = [n], n
    for arg in reversed(back):
        j = int(arg[j])
        edges.append(j)
    edges = [0] + edges[::-1]
    lut = np.empty(n, np.float64)
    for a, b in zip(edges[:-1], edges[1:]):
        lut[a:b] = (c1[b] - c1[a]) / (c0[b] - c0[a]) if c0[b] > c0[a] else (a + b - 1) / 2
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def _quant_otsu(img, rng, classes):
    out = np.empty_like(img)
    for c in range(3):
        hist = np.bincount(img[..., c].ravel(), minlength=256).astype(np.float64)
        out[..., c] = cv2.LUT(img[..., c], _multiotsu_lut(hist, classes))
    return out


def _quant_median_cut(img, rng, colors, max_sample=32768):
    """Median-cut palette of a regular pixel sample (every k-th row and column from the origin,
    k chosen so that at most ``max_sample`` pixels are used: Pillow's median cut costs ~75 ms on
    the whole of a 512x384 photo, ~10 ms on the sample), then every pixel -> nearest palette colour."""
    h, w = img.shape[:2]
    k = max(1, int(np.ceil(np.sqrt(h * w / max_sample))))
    sample = Image.fromarray(np.ascontiguousarray(img[::k, ::k]))
    palette = sample.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return np.asarray(Image.fromarray(img).quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB"))


def _quant_bins(img, rng, bins):
    return _lut(img, lambda x: (np.minimum(np.floor(x * bins), bins - 1) + 0.5) / bins)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _Variant:
    fn: Callable[..., np.ndarray]
    levels: tuple[dict[str, Any], ...]  # parameters for severity 1 .. 5
    draw: Callable[[np.random.Generator], dict[str, Any]] | None = None  # random parameters


def _v(fn, names: str | Sequence[str], values: Sequence, draw=None) -> _Variant:
    names = (names,) if isinstance(names, str) else tuple(names)
    levels = tuple(dict(zip(names, val if isinstance(val, tuple) else (val,))) for val in values)
    assert len(levels) == len(SEVERITIES)
    return _Variant(fn, levels, draw)


_REGISTRY: dict[str, dict[str, _Variant]] = {
    "blur": {
        "gaussian": _v(_blur_gaussian, "sigma", (1, 2, 3, 4, 5)),
        "motion": _v(_blur_motion, ("radius", "sigma"), ((5, 3), (10, 5), (15, 7), (15, 9), (20, 12)), _draw_angle),
        "glass": _v(_blur_glass, ("sigma", "shift", "iters"),
                    ((0.7, 1, 1), (0.9, 2, 1), (1.2, 2, 2), (1.4, 3, 2), (1.6, 4, 2))),
        "lens": _v(_blur_lens, "radius", (2, 3, 4, 6, 8)),
        "zoom": _v(_blur_zoom, "max_zoom", (1.03, 1.06, 1.10, 1.15, 1.21)),
        "jitter": _v(_blur_jitter, "shift", (1, 2, 3, 4, 5)),
    },
    "noise": {
        "gaussian_rgb": _v(_noise_gaussian_rgb, "sigma", (0.05, 0.10, 0.15, 0.20, 0.25)),
        "gaussian_ycrcb": _v(_noise_gaussian_ycrcb, ("sigma", "chroma"),
                             ((0.05, 1.0), (0.06, 1.45), (0.07, 1.9), (0.08, 2.35), (0.09, 2.8))),
        "speckle": _v(_noise_speckle, "sigma", (0.14, 0.21, 0.28, 0.35, 0.42)),
        "spatially_correlated": _v(_noise_correlated, "sigma", (0.08, 0.11, 0.14, 0.18, 0.22)),
        "poisson": _v(_noise_poisson, "scale", (80, 60, 40, 25, 15)),
        "impulse": _v(_noise_impulse, "amount", (0.01, 0.03, 0.05, 0.07, 0.10)),
    },
    "compression": {
        "jpeg": _v(_jpeg, "quality", (25, 18, 12, 8, 5)),
        "jpeg2000": _v(_jpeg2000, "psnr", (29.0, 27.5, 26.0, 24.5, 23.0)),
    },
    "overexposure": {
        "hsv_shift": _v(_hsv_shift, "delta", (0.1, 0.2, 0.3, 0.4, 0.5)),
        "rgb_shift": _v(_rgb_shift, "delta", (0.1, 0.15, 0.2, 0.27, 0.35)),
        "hsv_gamma": _v(_hsv_gamma, "gamma", (0.7, 0.58, 0.47, 0.36, 0.25)),
        "rgb_gamma": _v(_rgb_gamma, "gamma", (0.8, 0.7, 0.6, 0.45, 0.3)),
    },
    "underexposure": {
        "hsv_shift": _v(_hsv_shift, "delta", (-0.1, -0.2, -0.3, -0.4, -0.5)),
        "rgb_shift": _v(_rgb_shift, "delta", (-0.1, -0.15, -0.2, -0.27, -0.35)),
        "hsv_gamma": _v(_hsv_gamma, "gamma", (1.5, 1.8, 2.2, 2.7, 3.5)),
        "rgb_gamma": _v(_rgb_gamma, "gamma", (1.4, 1.7, 2.1, 2.6, 3.2)),
    },
    "high_contrast": {
        "linear": _v(_contrast_linear, "factor", (1.4, 1.7, 2.1, 2.6, 4.0)),
        "sigmoid": _v(_contrast_sigmoid, "f", (2, 4, 6, 8, 10)),
    },
    "low_contrast": {
        "linear": _v(_contrast_linear, "factor", (0.75, 0.6, 0.45, 0.3, 0.2)),
        "sigmoid": _v(_contrast_sigmoid, "f", (1.0, 0.9, 0.8, 0.6, 0.4)),
    },
    "oversaturate": {
        "hsv": _v(_saturation_hsv, "factor", (3, 6, 12, 20, 64)),
        "ycrcb": _v(_saturation_ycrcb, "factor", (2, 3, 5, 8, 16)),
    },
    "desaturate": {
        "hsv": _v(_saturation_hsv, "factor", (0.7, 0.55, 0.4, 0.2, 0.0)),
        "ycrcb": _v(_saturation_ycrcb, "factor", (0.6, 0.4, 0.2, 0.1, 0.0)),
    },
    "oversharpen": {"unsharp": _v(_unsharp, "amount", (2, 2.8, 4, 6, 8))},
    "pixelate": {"block": _v(_pixelate, "scale", (0.5, 0.4, 0.3, 0.25, 0.2))},
    "quantization": {
        "otsu": _v(_quant_otsu, "classes", (15, 11, 8, 5, 3)),
        "median_cut": _v(_quant_median_cut, "colors", (20, 15, 10, 6, 3)),
        "bins": _v(_quant_bins, "bins", (24, 16, 8, 6, 4)),
    },
}

#: category -> variant names (in the order the seeded draw indexes them).
VARIANTS: dict[str, tuple[str, ...]] = {c: tuple(_REGISTRY[c]) for c in DISTORTIONS}


# --------------------------------------------------------------------------- validation
def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Explicit conversion to ``H x W x 3`` uint8 RGB (never applied implicitly by the engine).

    Grayscale (``H x W`` or ``H x W x 1``) is replicated to 3 channels; RGBA drops the alpha
    channel (no compositing); ``uint16`` is scaled by 255/65535 with rounding; floats must lie in
    ``[0, 1]`` and are scaled by 255 with rounding; ``bool`` maps to 0/255.

    >>> to_rgb_uint8(np.array([[0, 65535]], np.uint16)).tolist()
    [[[0, 0, 0], [255, 255, 255]]]
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape HxW, HxWx1, HxWx3 or HxWx4, got {a.shape}")
    a = a[..., :3] if a.shape[2] == 4 else np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return np.rint(a * (255.0 / 65535.0)).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError("float images must be finite and lie in [0, 1]")
        return np.rint(a * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported dtype {a.dtype}; expected uint8, uint16, bool or float in [0, 1]")


def _check_image(image: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array (H x W x 3 uint8 RGB), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        kind = ("grayscale" if image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 2))
                else "RGBA" if image.ndim == 3 and image.shape[2] == 4 else "not an image")
        raise ValueError(f"image must be H x W x 3 RGB, got shape {image.shape} ({kind}); "
                         "convert to RGB first, e.g. with to_rgb_uint8()")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}"
                         f"{' (16-bit)' if image.dtype == np.uint16 else ''}; convert first, e.g. with to_rgb_uint8()")
    if min(image.shape[:2]) < MIN_BOX_SIDE:
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is smaller than {MIN_BOX_SIDE} px on a side")
    return np.ascontiguousarray(image)


def _check_box(bbox: Sequence[int] | None, shape: tuple[int, ...]) -> Box:
    h, w = shape[:2]
    if bbox is None:
        return (0, 0, w, h)
    try:
        box = tuple(bbox)
        ok = len(box) == 4 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in box)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"bbox {bbox!r}: expected four integer pixels (x1, y1, x2, y2)")
    x1, y1, x2, y2 = (int(v) for v in box)
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise ValueError(f"bbox {(x1, y1, x2, y2)} is outside the {w}x{h} image or degenerate; "
                         f"expected 0 <= x1 < x2 <= {w} and 0 <= y1 < y2 <= {h} (half-open)")
    if x2 - x1 < MIN_BOX_SIDE or y2 - y1 < MIN_BOX_SIDE:
        raise ValueError(f"bbox {(x1, y1, x2, y2)} is {x2 - x1}x{y2 - y1} px; both sides must be >= {MIN_BOX_SIDE}")
    return (x1, y1, x2, y2)


def _check_step(category: Any, severity: Any, variant: Any, allowed: Sequence[int] = (1, 2, 3, 4, 5)) -> None:
    if category not in _REGISTRY:
        raise ValueError(f"unknown distortion category {category!r}; valid: {list(DISTORTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or int(severity) not in allowed:
        raise ValueError(f"severity {severity!r} for {category!r}: expected an int in {list(allowed)} "
                         f"(1 = {SEVERITIES[0]!r} .. 5 = {SEVERITIES[-1]!r})")
    if variant is not None and variant not in _REGISTRY[category]:
        raise ValueError(f"unknown variant {variant!r} of {category!r}; valid: {list(VARIANTS[category])}")


def _as_rng(rng: RngLike) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


# --------------------------------------------------------------------------- engine
def _apply(img: np.ndarray, category: str, severity: int, rng: np.random.Generator,
           variant: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """One distortion on the whole image; the variant draw always consumes one integer."""
    names = VARIANTS[category]
    drawn = names[int(rng.integers(len(names)))]
    name = drawn if variant is None else variant
    spec = _REGISTRY[category][name]
    params = dict(spec.levels[int(severity) - 1])
    if spec.draw is not None:
        params.update(spec.draw(rng))
    out = _u8(np.asarray(spec.fn(img, rng, **params)))
    info = {"category": category, "severity": int(severity), "severity_name": SEVERITIES[int(severity) - 1],
            "variant": name, "params": params}
    return out, info


def _paste(image: np.ndarray, distorted: np.ndarray, box: Box, feather: int) -> np.ndarray:
    """Copy of ``image`` with the box taken from ``distorted`` (feathered band, see module doc)."""
    x1, y1, x2, y2 = box
    out = image.copy()
    if feather <= 0:
        out[y1:y2, x1:x2] = distorted[y1:y2, x1:x2]
        return out
    ys, xs = np.arange(y2 - y1), np.arange(x2 - x1)
    d = np.minimum.outer(np.minimum(ys, ys[::-1]), np.minimum(xs, xs[::-1]))
    alpha = np.minimum(1.0, (d + 1.0) / (feather + 1.0))[..., None]
    a, b = image[y1:y2, x1:x2].astype(np.float64), distorted[y1:y2, x1:x2].astype(np.float64)
    out[y1:y2, x1:x2] = np.clip(np.rint(a + alpha * (b - a)), 0, 255).astype(np.uint8)
    return out


def _run(image: np.ndarray, steps: Sequence[tuple[str, int, str | None]], bbox: Sequence[int] | None,
         rng: RngLike, feather: int) -> tuple[np.ndarray, dict[str, Any]]:
    img = _check_image(image)
    box = _check_box(bbox, img.shape)
    if isinstance(feather, bool) or not isinstance(feather, (int, np.integer)) or feather < 0:
        raise ValueError(f"feather {feather!r}: expected an int >= 0")
    gen = _as_rng(rng)
    cur, infos = img, []
    for category, severity, variant in steps:
        cur, info = _apply(cur, category, severity, gen, variant)
        infos.append(info)
    return _paste(img, cur, box, int(feather)), {"bbox": list(box), "feather": int(feather), "steps": infos}


def distort_with_info(image: np.ndarray, category: str, severity: int, bbox: Sequence[int] | None = None,
                      rng: RngLike = None, variant: str | None = None, feather: int = 0
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`distort`; also returns ``info`` = ``{"category", "severity", "severity_name",
    "variant", "params", "bbox", "feather"}`` (``params``: the per-severity parameters plus the
    drawn ones, e.g. the motion angle; JSON-serialisable)."""
    _check_step(category, severity, variant)
    out, info = _run(image, [(category, severity, variant)], bbox, rng, feather)
    return out, {**info.pop("steps")[0], **info}


def distort(image: np.ndarray, category: str, severity: int, bbox: Sequence[int] | None = None,
            rng: RngLike = None, variant: str | None = None, feather: int = 0) -> np.ndarray:
    """Apply one distortion (``category`` in :data:`DISTORTIONS`, ``severity`` 1-5) inside ``bbox``.

    Returns a new ``uint8`` array; pixels outside the box equal the input's. ``rng``: Generator,
    int seed or ``None`` (= seed 0). ``variant``: one of ``VARIANTS[category]`` or ``None`` (drawn).
    See the module docstring for the parameters, the in-box rule and the feather band.
    """
    return distort_with_info(image, category, severity, bbox, rng, variant, feather)[0]


def distort_pair_with_info(image: np.ndarray, first: tuple[str, int], second: tuple[str, int],
                           bbox: Sequence[int] | None = None, rng: RngLike = None,
                           variants: tuple[str | None, str | None] = (None, None), feather: int = 0
                           ) -> tuple[np.ndarray, dict[str, Any]]:
    """Like :func:`distort_pair`; ``info = {"steps": [info1, info2], "bbox", "feather"}``."""
    for step in (first, second, variants):
        if not isinstance(step, (tuple, list)) or len(step) != 2:
            raise ValueError(f"{step!r}: expected a pair, (category, severity) or (variant1, variant2)")
    (c1, s1), (c2, s2) = first, second
    _check_step(c1, s1, variants[0], PAIR_SEVERITIES)
    _check_step(c2, s2, variants[1], PAIR_SEVERITIES)
    if c2 not in ALLOWED_PAIRS[c1]:
        raise ValueError(f"combination {c1!r} -> {c2!r} is not allowed; "
                         f"after {c1!r} allowed: {list(ALLOWED_PAIRS[c1])}")
    return _run(image, [(c1, s1, variants[0]), (c2, s2, variants[1])], bbox, rng, feather)


def distort_pair(image: np.ndarray, first: tuple[str, int], second: tuple[str, int],
                 bbox: Sequence[int] | None = None, rng: RngLike = None,
                 variants: tuple[str | None, str | None] = (None, None), feather: int = 0) -> np.ndarray:
    """Two distortions in order, ``first = (category, severity)`` then ``second``, severities 1-3,
    ``second`` in ``ALLOWED_PAIRS[first category]``. Both are computed on the whole image (the
    second sees the first's uint8 result) and the box is pasted once.

    >>> img = np.full((16, 16, 3), 128, np.uint8)
    >>> distort_pair(img, ("blur", 2), ("overexposure", 1), variants=("gaussian", "rgb_shift"))[0, 0]
    array([154, 154, 154], dtype=uint8)
    """
    return distort_pair_with_info(image, first, second, bbox, rng, variants, feather)[0]


# --------------------------------------------------------------------------- strength
_SSIM_WINDOW = 11  # Gaussian SSIM window for sigma 1.5 (truncate 3.5)


def _grow_to(box: tuple[int, int, int, int], side: int, shape) -> tuple[int, int, int, int]:
    """Grow each side of ``box`` to at least ``side`` px, centred, kept inside the image."""
    def grow(a: int, b: int, limit: int) -> tuple[int, int]:
        if b - a >= side or limit < side:
            return a, b
        a = min(max(0, a - (side - (b - a)) // 2), limit - side)
        return a, a + side
    x1, y1, x2, y2 = box
    (x1, x2), (y1, y2) = grow(x1, x2, shape[1]), grow(y1, y2, shape[0])
    return x1, y1, x2, y2


def strength(reference: np.ndarray, distorted: np.ndarray, bbox: Sequence[int] | None = None) -> float:
    """Full-reference distortion strength inside ``bbox``: ``1 - SSIM``.

    SSIM (Wang et al. 2004; Gaussian window sigma 1.5, K1 .01, K2 .03, data range 255) is computed
    on each RGB channel of the box (so colour-only changes count) and averaged. Range ``[0, 2]``;
    0 = identical, about 0.01-0.05 = slight, > 0.5 = very strong (typical photos stay below 1).
    The Gaussian window is 11 px wide; a box side of 8-10 px is measured on the box grown
    symmetrically (inside the image) to 11 px.

    >>> ref = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))[..., None].repeat(3, 2)
    >>> strength(ref, ref)
    0.0
    >>> 0 < strength(ref, distort(ref, "noise", 1, rng=0, variant="gaussian_rgb")) < 1
    True
    """
    from skimage.metrics import structural_similarity

    ref, dis = _check_image(reference), _check_image(distorted)
    if ref.shape != dis.shape:
        raise ValueError(f"reference {ref.shape} and distorted {dis.shape} differ in shape")
    x1, y1, x2, y2 = _grow_to(_check_box(bbox, ref.shape), _SSIM_WINDOW, ref.shape)
    ssim = structural_similarity(ref[y1:y2, x1:x2], dis[y1:y2, x1:x2], channel_axis=2, data_range=255,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return max(0.0, 1.0 - float(ssim))
