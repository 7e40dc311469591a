"""A cheap check that a generator makes images, not noise or a constant.

At every image summary the training loop compares the generated images of a
few test pairs with the real images of the same batch:

* ``high_frequency_ratio``: the share of each image's variance at the finest
  scale (what is left after a 2x2 box average, upsampled back, is taken away;
  above half the Nyquist frequency) in the generated images, over that share
  in the real ones. White noise puts three quarters of its variance there;
  photographs and the synthetic people, smooth regions with edges, a fifth or
  less (even the synthetic noise backgrounds, which are smooth blotches), so
  colour noise shows as a ratio of 2.5 or more, and a generator that makes
  people as about 1.
* ``contrast_ratio``: the standard deviation of the generated images' pixels
  over that of the real ones (per image, then averaged): near 0 when the
  generator has collapsed to a flat image.

Both go to TensorBoard (``guard/*``); a value outside
``[0, train.guard_max_high_frequency_ratio]`` /
``[train.guard_min_contrast_ratio, inf)`` is logged as a warning naming the
stage and step. It warns and does not stop the run: an early generator is
allowed to be bad, a late one that still is should be looked at.
"""

from __future__ import annotations

import numpy as np


def high_frequency_fraction(images) -> np.ndarray:
    """Per image: the fraction of its variance above half the Nyquist frequency.

    ``var(x - up(box2(x))) / var(x)``, with ``box2`` the 2x2 box average and
    ``up`` its nearest-neighbour upsampling (odd sizes lose their last row /
    column). 3/4 for white noise; 0 for an image constant on 2x2 blocks.

    Args:
      images: [B, H, W, C] float (H, W >= 2).

    Returns:
      [B] float64 in [0, 1]; 0 for a constant image.
    """
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[1] < 2 or x.shape[2] < 2:
        raise ValueError(f"guard: expected images [B, H >= 2, W >= 2, C], got {x.shape}")
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2]
    blocks = x.reshape(b, x.shape[1] // 2, 2, x.shape[2] // 2, 2, c).mean(axis=(2, 4))
    smooth = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)
    fine = np.square(x - smooth).reshape(b, -1).mean(1)
    var = x.reshape(b, -1).var(1)
    return np.where(var > 1e-12, fine / np.maximum(var, 1e-12), 0.0)


def image_health(generated, real) -> dict[str, float]:
    """Ratios of the generated images' statistics to the real images' (means over the batch).

    Args:
      generated, real: [B, H, W, C] float in [-1, 1] (B may differ).

    Returns:
      ``{"high_frequency_ratio": float, "contrast_ratio": float}``.
    """
    g = np.asarray(generated, np.float64)
    r = np.asarray(real, np.float64)
    hf = float(high_frequency_fraction(g).mean() / max(high_frequency_fraction(r).mean(), 1e-8))
    std_g = g.reshape(len(g), -1).std(1).mean()
    std_r = r.reshape(len(r), -1).std(1).mean()
    return {"high_frequency_ratio": hf, "contrast_ratio": float(std_g / max(std_r, 1e-8))}


def problems(health: dict[str, float], max_high_frequency_ratio: float, min_contrast_ratio: float) -> list[str]:
    """Human-readable warnings for the values of :func:`image_health` outside their bounds."""
    out = []
    if health["high_frequency_ratio"] > max_high_frequency_ratio:
        out.append(
            f"generated images have {health['high_frequency_ratio']:.1f}x the real images' share of "
            f"variance at the finest scale (bound {max_high_frequency_ratio:g}): they look like noise"
        )
    if health["contrast_ratio"] < min_contrast_ratio:
        out.append(
            f"generated images have {health['contrast_ratio']:.3f}x the contrast of the real images "
            f"(bound {min_contrast_ratio:g}): the generator has collapsed to a flat image"
        )
    return out
