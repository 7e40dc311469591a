"""The training guard against noise and collapsed generators (spt_tf/training/guard.py)."""

import numpy as np
import pytest

from spt_tf.training import guard


def _people(n=4, h=64, w=32, seed=0):
    """Piecewise-constant figures on smooth backgrounds, like the synthetic people."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = np.empty((n, h, w, 3))
    for i in range(n):
        bg = rng.uniform(-1, 1, 3)[None, None] + 0.5 * (yy[..., None] - 0.5) * rng.uniform(-1, 1, 3)
        img = bg.copy()
        img[h // 6 : h // 6 + h // 8, w // 3 : 2 * w // 3] = rng.uniform(-1, 1, 3)  # head
        img[h // 3 : 2 * h // 3, w // 4 : 3 * w // 4] = rng.uniform(-1, 1, 3)  # torso
        img[2 * h // 3 : h - 2, w // 4 : w // 2 - 1] = rng.uniform(-1, 1, 3)  # legs
        img[2 * h // 3 : h - 2, w // 2 + 1 : 3 * w // 4] = rng.uniform(-1, 1, 3)
        out[i] = np.clip(img, -1, 1)
    return out


def test_high_frequency_fraction_reference_values():
    noise = np.random.default_rng(0).uniform(-1, 1, (8, 64, 32, 3))
    np.testing.assert_allclose(guard.high_frequency_fraction(noise), 0.75, atol=0.03)
    blocks = np.repeat(np.repeat(np.random.default_rng(1).normal(size=(2, 8, 4, 3)), 2, 1), 2, 2)
    np.testing.assert_allclose(guard.high_frequency_fraction(blocks), 0.0, atol=1e-12)
    np.testing.assert_array_equal(guard.high_frequency_fraction(np.full((2, 4, 4, 3), 0.3)), [0.0, 0.0])
    with pytest.raises(ValueError, match="expected images"):
        guard.high_frequency_fraction(np.zeros((4, 4, 3)))


def test_guard_fires_on_noise_and_constant_not_on_real_images():
    real = _people(seed=0)
    other = _people(seed=1)
    bound_hf, bound_contrast = 2.0, 0.2
    ok = guard.image_health(other, real)
    assert guard.problems(ok, bound_hf, bound_contrast) == []
    assert 0.5 < ok["high_frequency_ratio"] < 2.0 and ok["contrast_ratio"] > 0.5
    noise = np.random.default_rng(2).uniform(-1, 1, real.shape)
    bad = guard.problems(guard.image_health(noise, real), bound_hf, bound_contrast)
    assert len(bad) == 1 and "noise" in bad[0]
    # Noise added to a person: still flagged when it dominates the fine scale.
    noisy = np.clip(other + np.random.default_rng(3).normal(0, 0.3, real.shape), -1, 1)
    assert any("noise" in p for p in guard.problems(guard.image_health(noisy, real), bound_hf, bound_contrast))
    flat = np.full(real.shape, 0.1)
    bad = guard.problems(guard.image_health(flat, real), bound_hf, bound_contrast)
    assert len(bad) == 1 and "flat" in bad[0]
