"""LPIPS v0.1 AlexNet-lin (spt_tf.evaluation.lpips) against a numpy reference.

The reference below follows the official ``lpips`` package (PerceptualSimilarity
repository) step by step in float64, in PyTorch's NCHW layout with OIHW
weights, so the TF layouts, padding and pooling of the module are checked too.
"""

import numpy as np
import pytest

from spt_tf.evaluation import lpips as lpips_lib

# ----------------------------------------------------------------------------
# numpy reference (NCHW, float64)


def np_conv(x, w, b, stride, pad):
    """PyTorch Conv2d: x [N, C, H, W], w [O, C, k, k] (OIHW), zero padding, im2col."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    cols = np.empty((n, c, k, k, oh, ow))
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return np.einsum("ncijhw,ocij->nohw", cols, w) + b[None, :, None, None]


def np_maxpool(x, k=3, s=2):
    """PyTorch MaxPool2d(3, 2), no padding, floor mode."""
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, x[:, :, i : i + s * oh : s, j : j + s * ow : s])
    return out


def np_alexnet_taps(x, arrays):
    """torchvision alexnet().features, sliced as the official ``pretrained_networks.alexnet``."""
    f = {k: v.astype(np.float64) for k, v in arrays.items()}
    relu = lambda t: np.maximum(t, 0.0)  # noqa: E731
    h1 = relu(np_conv(x, f["features.0.weight"], f["features.0.bias"], 4, 2))
    h2 = relu(np_conv(np_maxpool(h1), f["features.3.weight"], f["features.3.bias"], 1, 2))
    h3 = relu(np_conv(np_maxpool(h2), f["features.6.weight"], f["features.6.bias"], 1, 1))
    h4 = relu(np_conv(h3, f["features.8.weight"], f["features.8.bias"], 1, 1))
    h5 = relu(np_conv(h4, f["features.10.weight"], f["features.10.bias"], 1, 1))
    return [h1, h2, h3, h4, h5]


def np_head(taps_a, taps_b, lins):
    """normalize_tensor, squared difference, 1x1 lin conv, spatial_average, sum (NCHW)."""
    total = 0.0
    for fa, fb, w in zip(taps_a, taps_b, lins):
        na = fa / (np.sqrt((fa**2).sum(1, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb**2).sum(1, keepdims=True)) + 1e-10)
        lin = np.einsum("nchw,oc->nohw", (na - nb) ** 2, w.reshape(1, -1).astype(np.float64))
        total = total + lin.mean(axis=(2, 3))[:, 0]
    return total


def np_lpips(a_uint8, b_uint8, arrays):
    """The whole metric on uint8 NHWC images (im2tensor, ScalingLayer, trunk, head)."""
    shift = np.array([-0.030, -0.088, -0.188])[None, :, None, None]
    scale = np.array([0.458, 0.448, 0.450])[None, :, None, None]

    def prep(img):
        x = img.astype(np.float64).transpose(0, 3, 1, 2) / 127.5 - 1.0
        return (x - shift) / scale

    lins = [arrays[f"lin{i}.model.1.weight"] for i in range(5)]
    return np_head(np_alexnet_taps(prep(a_uint8), arrays), np_alexnet_taps(prep(b_uint8), arrays), lins)


# ----------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def arrays():
    return lpips_lib.random_weights(seed=7)


@pytest.fixture(scope="module")
def model(arrays):
    return lpips_lib.LPIPS(arrays)


def _images(seed, shape=(2, 64, 64, 3)):
    """Smooth-ish random uint8 images (coarse noise upsampled, plus fine noise)."""
    rng = np.random.default_rng(seed)
    n, h, w, c = shape
    coarse = rng.uniform(0, 255, (n, h // 8 + 1, w // 8 + 1, c))
    img = np.repeat(np.repeat(coarse, 8, 1), 8, 2)[:, :h, :w]
    return np.clip(img + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------
# (a) against the numpy reference


def test_full_network_matches_numpy_reference(model, arrays):
    a, b = _images(0), _images(1)
    got = model(a, b)
    want = np_lpips(a, b, arrays)
    assert got.shape == (2,) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_trunk_taps_match_numpy_reference(model, arrays):
    a = _images(2, (1, 67, 45, 3))  # odd sizes: padding and floor-mode pooling
    x = (a.astype(np.float32) / 127.5 - 1.0 - lpips_lib.SHIFT) / lpips_lib.SCALE
    taps = [t.numpy() for t in model.trunk(x, training=False)]
    want = np_alexnet_taps(x.astype(np.float64).transpose(0, 3, 1, 2), arrays)
    assert [t.shape[-1] for t in taps] == list(lpips_lib.CHANNELS)
    for got, ref in zip(taps, want):
        ref = ref.transpose(0, 2, 3, 1)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_head_matches_numpy_reference():
    rng = np.random.default_rng(3)
    sizes = [(9, 7), (4, 3), (4, 3), (4, 3), (4, 3)]
    fa = [
        np.maximum(rng.normal(size=(3, h, w, c)), 0).astype(np.float32) for (h, w), c in zip(sizes, lpips_lib.CHANNELS)
    ]
    fb = [
        np.maximum(rng.normal(size=(3, h, w, c)), 0).astype(np.float32) for (h, w), c in zip(sizes, lpips_lib.CHANNELS)
    ]
    fb[0][0, 0, 0] = 0.0  # an all-zero feature vector: the epsilon keeps it finite
    lins = [rng.uniform(0, 1, c).astype(np.float32) for c in lpips_lib.CHANNELS]
    got = lpips_lib.head(fa, fb, lins).numpy()
    nchw = lambda fs: [f.astype(np.float64).transpose(0, 3, 1, 2) for f in fs]  # noqa: E731
    want = np_head(nchw(fa), nchw(fb), [w.reshape(1, -1, 1, 1) for w in lins])
    np.testing.assert_allclose(got, want, rtol=1e-5)


# ----------------------------------------------------------------------------
# (b) metric properties


def test_identity_symmetry_non_negativity(model):
    a, b = _images(4), _images(5)
    np.testing.assert_allclose(model(a, a), 0.0, atol=1e-7)
    dab, dba = model(a, b), model(b, a)
    np.testing.assert_allclose(dab, dba, rtol=1e-6)
    assert np.all(dab > 0)
    # Batch entries are independent: one pair alone gives the same distance.
    np.testing.assert_allclose(model(a[1:], b[1:]), dab[1:], rtol=1e-5)


def test_float_inputs_equal_uint8(model):
    a, b = _images(6), _images(7)
    fa, fb = a / np.float32(127.5) - 1, b / np.float32(127.5) - 1
    np.testing.assert_allclose(model(fa, fb), model(a, b), rtol=1e-6)


def test_bad_inputs_are_refused(model):
    a = _images(0)
    with pytest.raises(ValueError, match="differ"):
        model(a, a[:, :48])
    with pytest.raises(ValueError, match="at least 31"):
        model(a[:, :30], a[:, :30])
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        model(a[0], a[0])


# ----------------------------------------------------------------------------
# (c) weights file


def test_weights_file_round_trip(tmp_path, arrays, model):
    path = tmp_path / "lpips_alex_v0.1.npz"
    extra = {"classifier.1.weight": np.zeros((4, 4), np.float32)}  # ignored key
    np.savez(path, **arrays, **extra)
    loaded = lpips_lib.LPIPS(str(path))
    assert not loaded.random and loaded.comparable and loaded.warnings == []
    assert loaded.description.startswith("file ")
    a, b = _images(8), _images(9)
    np.testing.assert_array_equal(loaded(a, b), model(a, b))


@pytest.mark.parametrize("key", ["features.6.weight", "features.10.bias", "lin3.model.1.weight"])
def test_weights_file_missing_key_is_refused(tmp_path, arrays, key):
    path = tmp_path / "w.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != key})
    with pytest.raises(lpips_lib.LPIPSWeightsError, match=f"'{key}' is missing"):
        lpips_lib.LPIPS(str(path))


def test_weights_file_wrong_shape_is_refused(tmp_path, arrays):
    path = tmp_path / "w.npz"
    bad = dict(arrays)
    bad["features.3.weight"] = np.transpose(arrays["features.3.weight"], (2, 3, 1, 0))  # HWIO
    np.savez(path, **bad)
    with pytest.raises(lpips_lib.LPIPSWeightsError, match=r"'features\.3\.weight' has shape"):
        lpips_lib.LPIPS(str(path))


def test_weights_not_a_file_or_unreadable(tmp_path):
    with pytest.raises(lpips_lib.LPIPSWeightsError, match="not a file"):
        lpips_lib.LPIPS(str(tmp_path / "absent.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(lpips_lib.LPIPSWeightsError, match="could not read"):
        lpips_lib.LPIPS(str(junk))


# ----------------------------------------------------------------------------
# (d) the policy without a file


@pytest.mark.parametrize("weights", [None, ""])
def test_no_weights_without_permission_is_refused(weights):
    with pytest.raises(lpips_lib.LPIPSWeightsError, match="allow random weights") as e:
        lpips_lib.LPIPS(weights)
    assert "docs/lpips.md" in str(e.value) and "alex.pth" in str(e.value)
    with pytest.raises(lpips_lib.LPIPSWeightsError):
        lpips_lib.check_weights_policy(weights, allow_random_weights=False)
    lpips_lib.check_weights_policy(weights, allow_random_weights=True)


def test_random_weights_are_seeded_and_marked(caplog):
    with caplog.at_level("WARNING"):
        m = lpips_lib.LPIPS(None, allow_random_weights=True, seed=1)
    assert lpips_lib.RANDOM_WARNING in caplog.text
    assert m.random and not m.comparable and m.warnings == [lpips_lib.RANDOM_WARNING]
    assert all(np.all(w >= 0) for w in m.lin_weights)
    same = lpips_lib.random_weights(1)
    for i in range(5):
        np.testing.assert_array_equal(m.lin_weights[i], same[f"lin{i}.model.1.weight"].ravel())
    a, b = _images(10), _images(11)
    np.testing.assert_array_equal(m(a, b), lpips_lib.LPIPS(same)(a, b))


# ----------------------------------------------------------------------------
# (e) the field's image size, non-square


def test_256x176_input(model, arrays):
    a, b = _images(12, (1, 256, 176, 3)), _images(13, (1, 256, 176, 3))
    got = model(a, b)
    assert got.shape == (1,) and np.isfinite(got).all() and got[0] > 0
    np.testing.assert_allclose(got, np_lpips(a, b, arrays), rtol=2e-4)
