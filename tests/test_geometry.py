"""Tests of spt_tf.geometry against independent numpy / scikit-image references.

The references below are written from the definitions (the paper, Sec. 3.1 and
3.3, pose-gan's ``pose_transform.py`` and PG2's ``_getPoseMask``) in numpy, in
pose-gan's own (x, y) order, so they share no code with the TF ops.
"""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage
from skimage import draw, morphology, transform

from spt_tf import geometry

# COCO-18 order, written out again so the references do not import it.
NAMES = (
    "nose", "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rhip",
    "Rkne", "Rank", "Lhip", "Lkne", "Lank", "Leye", "Reye", "Lear", "Rear",
)  # fmt: skip
IDX = {n: i for i, n in enumerate(NAMES)}
# PG2's limbSeq (1-based OpenPose indices), transcribed from its _getPoseMask.
PG2_LIMB_SEQ = (
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11),
    (2, 12), (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
    (2, 17), (2, 18), (9, 12), (12, 6), (9, 3), (17, 18),
)  # fmt: skip
# Deformable-GAN limbs: (from, to, inc_to for the transform, inc_to for the mask).
REF_LIMBS = (
    ("Rhip", "Rkne", 0.1, 0.1), ("Lhip", "Lkne", 0.1, 0.1),
    ("Rkne", "Rank", 0.3, 0.5), ("Lkne", "Lank", 0.3, 0.5),
    ("Rsho", "Relb", 0.1, 0.1), ("Lsho", "Lelb", 0.1, 0.1),
    ("Relb", "Rwri", 0.3, 0.5), ("Lelb", "Lwri", 0.3, 0.5),
)  # fmt: skip
OFF = [1.0, 0.0, geometry.OFF_IMAGE, 0.0, 1.0, geometry.OFF_IMAGE, 0.0, 0.0]


# ------------------------------------------------------------------ helpers


def _person(h=128, w=64, seed=0, missing=()):
    """A plausible upright person [18, 2] (y, x) in an h x w image, jittered."""
    rng = np.random.default_rng(seed)
    base = {
        "nose": (0.12, 0.5), "neck": (0.22, 0.5), "Rsho": (0.23, 0.33), "Relb": (0.38, 0.28),
        "Rwri": (0.52, 0.27), "Lsho": (0.23, 0.67), "Lelb": (0.38, 0.72), "Lwri": (0.52, 0.73),
        "Rhip": (0.52, 0.4), "Rkne": (0.7, 0.39), "Rank": (0.88, 0.38), "Lhip": (0.52, 0.6),
        "Lkne": (0.7, 0.61), "Lank": (0.88, 0.62), "Leye": (0.1, 0.55), "Reye": (0.1, 0.45),
        "Lear": (0.11, 0.6), "Rear": (0.11, 0.4),
    }  # fmt: skip
    kp = np.array([base[n] for n in NAMES]) * [h, w]
    kp += rng.normal(0, 0.04, kp.shape) * [h, w]
    kp = np.clip(kp, 0, [h - 1, w - 1]).astype(np.float32)
    for name in missing:
        kp[IDX[name]] = -1
    return kp


def _random_keypoints(rng, n, h, w, p_missing=0.0):
    kp = rng.uniform(0, [h, w], size=(n, 18, 2)).astype(np.float32)
    kp[rng.uniform(size=(n, 18)) < p_missing] = -1
    return kp


def _named_xy(kp):
    """[18, 2] (y, x) -> {name: float64 (x, y)} of the present joints (pose-gan)."""
    return {n: kp[i, ::-1].astype(np.float64) for i, n in enumerate(NAMES) if (kp[i] != -1).all()}


def _ref_st(kp):
    sides = [np.sum((kp[h] - kp[s]) ** 2) for h, s in (("Rhip", "Rsho"), ("Lhip", "Lsho")) if h in kp and s in kp]
    return float(np.sqrt(np.mean(sides))) if sides else None


def _ref_polygon(fr, to, st, inc_to):
    """pose-gan estimate_polygon (inc_from 0.1, p_from = p_to = 0.2), (x, y)."""
    fr = fr + (fr - to) * 0.1
    to = to + (to - fr) * inc_to
    v = fr - to
    v = np.array([-v[1], v[0]]) / np.linalg.norm(v)
    return np.array([fr + 0.2 * st * v, fr - 0.2 * st * v, to - 0.2 * st * v, to + 0.2 * st * v])


def _lstsq_affine(dst_xy, src_xy):
    """3x3 least-squares affine with src ~ M @ [dst, 1] (numpy.linalg.lstsq); None if singular."""
    a = np.concatenate([dst_xy, np.ones((len(dst_xy), 1))], 1)
    if (
        np.linalg.matrix_rank(a) < 3
        or np.linalg.matrix_rank(np.concatenate([src_xy, np.ones((len(src_xy), 1))], 1)) < 3
    ):
        return None
    theta, *_ = np.linalg.lstsq(a, src_xy, rcond=None)
    m = np.eye(3)
    m[:2] = theta.T
    return m


def _mirror(name):
    return {"R": "L", "L": "R"}.get(name[0], "") + name[1:] if name[0] in "RL" else name


def _ref_part_transforms(src, tgt):
    """pose-gan affine_transforms with numpy lstsq: list of 10 3x3 matrices or None."""
    s, t = _named_xy(src), _named_xy(tgt)
    st_s, st_t = _ref_st(s), _ref_st(t)
    out = []
    torso = ("Rhip", "Lhip", "Lsho", "Rsho")
    if all(n in s and n in t for n in torso):
        out.append(_lstsq_affine(np.array([t[n] for n in torso]), np.array([s[n] for n in torso])))
    else:
        out.append(None)
    head = [n for n in ("nose", "Leye", "Reye", "Lear", "Rear") if n in s and n in t]
    if head:
        names = head + [n for n in ("Lsho", "Rsho") if n in s and n in t]
        out.append(_lstsq_affine(np.array([t[n] for n in names]), np.array([s[n] for n in names])))
    else:
        out.append(None)
    for fr, to, inc, _ in REF_LIMBS:
        if fr not in t or to not in t or st_t is None or st_s is None:
            out.append(None)
            continue
        sfr, sto = (fr, to) if fr in s and to in s else (_mirror(fr), _mirror(to))
        if sfr not in s or sto not in s:
            out.append(None)
            continue
        out.append(_lstsq_affine(_ref_polygon(t[fr], t[to], st_t, inc), _ref_polygon(s[sfr], s[sto], st_s, inc)))
    return out


def _matrix(t8):
    t8 = np.asarray(t8, np.float64)
    return np.array([[t8[0], t8[1], t8[2]], [t8[3], t8[4], t8[5]], [0.0, 0.0, 1.0]])


def _grid_points(h, w):
    yy, xx = np.mgrid[0:h:4, 0:w:4]
    return np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])


def _max_point_error(m_a, m_b, h, w):
    """Largest distance between the images of the h x w pixel grid under two 3x3 maps."""
    p = _grid_points(h, w)
    return float(np.abs(m_a @ p - m_b @ p).max())


def _tolerance(m_ref, h, w):
    """0.02 px plus float32 rounding relative to the mapped coordinates (random
    keypoints can give a 0.5 px target limb: a 300x magnification)."""
    return 0.02 + 1e-4 * float(np.abs(m_ref @ _grid_points(h, w)).max())


def _np_warp(image, t8):
    """Bilinear warp, zero fill, by explicit loops: out(x, y) = image(A (x, y) + t)."""
    h, w, c = image.shape
    a0, a1, a2, b0, b1, b2 = (float(v) for v in t8[:6])
    out = np.zeros((h, w, c), np.float64)
    for y in range(h):
        for x in range(w):
            sx = a0 * x + a1 * y + a2
            sy = b0 * x + b1 * y + b2
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            for yi in (y0, y0 + 1):
                for xi in (x0, x0 + 1):
                    if 0 <= yi < h and 0 <= xi < w:
                        out[y, x] += (1 - abs(sy - yi)) * (1 - abs(sx - xi)) * image[yi, xi]
    return out


def _ref_pose_mask(kp, h, w, radius, closing):
    """PG2 mask with scikit-image: limb rectangles, joint discs, dilation + erosion."""
    mask = np.zeros((h, w), np.uint8)
    vis = (kp != -1).all(-1)
    for a, b in PG2_LIMB_SEQ:
        a, b = a - 1, b - 1
        if not (vis[a] and vis[b]):
            continue
        p0, p1 = kp[a].astype(np.float64), kp[b].astype(np.float64)
        d = p1 - p0
        if np.linalg.norm(d) == 0:
            continue
        n = np.array([-d[1], d[0]]) / np.linalg.norm(d) * radius
        corners = np.array([p0 + n, p0 - n, p1 - n, p1 + n])
        rr, cc = draw.polygon(corners[:, 0], corners[:, 1], shape=(h, w))
        mask[rr, cc] = 1
    for j in np.flatnonzero(vis):
        rr, cc = draw.disk(tuple(kp[j].astype(np.float64)), radius, shape=(h, w))
        mask[rr, cc] = 1
    if closing:
        footprint = np.ones((closing, closing), bool)
        mask = morphology.erosion(morphology.dilation(mask, footprint), footprint)
    return mask


def _iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


# ------------------------------------------------------------------ pose heatmaps


def test_heatmaps_peak_at_keypoints_and_match_formula():
    h, w, sigma = 40, 24, 3.0
    rng = np.random.default_rng(1)
    kp = rng.uniform([2, 2], [h - 3, w - 3], size=(2, 18, 2)).astype(np.float32)
    maps = geometry.pose_heatmaps(kp, h, w, sigma).numpy()
    assert maps.shape == (2, h, w, 18) and maps.dtype == np.float32
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for b in range(2):
        for j in range(18):
            peak = np.unravel_index(maps[b, :, :, j].argmax(), (h, w))
            assert peak == tuple(np.round(kp[b, j]).astype(int))
            ky, kx = kp[b, j].astype(np.float64)
            ref = np.exp(-((yy - ky) ** 2 + (xx - kx) ** 2) / (2 * sigma**2))
            np.testing.assert_allclose(maps[b, :, :, j], ref, atol=1e-6)
    # One pixel by hand: d^2 = 3^2 + 4^2 = 25 from an integer joint.
    kp1 = np.full((1, 18, 2), -1, np.float32)
    kp1[0, 0] = [10, 10]
    m = geometry.pose_heatmaps(kp1, h, w, sigma).numpy()
    assert m[0, 13, 14, 0] == pytest.approx(np.exp(-25 / 18), rel=1e-6)
    assert m[0, 10, 10, 0] == pytest.approx(1.0)


def test_heatmaps_missing_joint_is_zero_channel():
    kp = _person(32, 16, missing=("Lwri", "Rear"))[None]
    kp[0, IDX["Relb"], 1] = -1  # one coordinate -1 is enough to be missing
    maps = geometry.pose_heatmaps(kp, 32, 16, 2.0).numpy()
    for name in ("Lwri", "Rear", "Relb"):
        assert not maps[0, :, :, IDX[name]].any()
    assert maps[0, :, :, IDX["nose"]].max() > 0.5


def test_heatmaps_at_half_resolution_peak_at_half_keypoint():
    h, w, sigma = 48, 32, 4.0
    kp = np.full((1, 18, 2), -1, np.float32)
    kp[0, 0] = [20, 14]
    kp[0, 5] = [31, 9]
    maps = geometry.pose_heatmaps(kp, h // 2, w // 2, sigma, image_size=(h, w)).numpy()
    assert maps.shape == (1, h // 2, w // 2, 18)
    assert np.unravel_index(maps[0, :, :, 0].argmax(), (h // 2, w // 2)) == (10, 7)
    # Map pixel (i, j) sits at image point (2i, 2j); sigma stays in image pixels.
    i, j = 12, 3
    expected = np.exp(-((2 * i - 31) ** 2 + (2 * j - 9) ** 2) / (2 * sigma**2))
    assert maps[0, i, j, 5] == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ pose masks


def test_pose_masks_match_skimage_reference_on_random_people():
    h, w, radius = 128, 64, 4.0
    kps = np.stack([_person(h, w, seed=s) for s in range(4)])
    kps[1, [IDX["Lwri"], IDX["Lelb"], IDX["Rear"]]] = -1
    kps[2, :, :] = np.clip(kps[2] + [0, 20], -1, [h - 1, w - 1])  # touching the border
    got = geometry.pose_masks(kps, h, w, radius).numpy()
    assert got.shape == (4, h, w, 1) and set(np.unique(got)) <= {0.0, 1.0}
    for b in range(4):
        ref = _ref_pose_mask(kps[b], h, w, radius, 5)
        assert _iou(got[b, ..., 0], ref) > 0.97, b
        # Disagreements are boundary pixels only: rasterization rules of polygon edges.
        assert np.abs(got[b, ..., 0] - ref).sum() < 0.02 * ref.sum()


def test_pose_mask_single_disc_exact():
    h, w = 24, 20
    kp = np.full((1, 18, 2), -1, np.float32)
    kp[0, IDX["nose"]] = [10.3, 7.6]  # no pixel centre on the circle
    got = geometry.pose_masks(kp, h, w, 4.0).numpy()[0, ..., 0]
    np.testing.assert_array_equal(got, _ref_pose_mask(kp[0], h, w, 4.0, 5))
    # Before closing it is exactly the disc.
    raw = geometry.pose_masks(kp, h, w, 4.0, closing=0).numpy()[0, ..., 0]
    rr, cc = draw.disk((10.3, 7.6), 4.0, shape=(h, w))
    disc = np.zeros((h, w))
    disc[rr, cc] = 1
    np.testing.assert_array_equal(raw, disc)


def test_pose_mask_axis_aligned_limb_exact_and_border_not_eroded():
    h, w = 30, 40
    kp = np.full((1, 18, 2), -1, np.float32)
    kp[0, IDX["Rsho"]] = [10.5, 5.5]
    kp[0, IDX["Relb"]] = [10.5, 25.5]
    kp[0, IDX["Lank"]] = [1.3, 36.6]  # a disc cut by the top border
    got = geometry.pose_masks(kp, h, w, 3.0).numpy()[0, ..., 0]
    np.testing.assert_array_equal(got, _ref_pose_mask(kp[0], h, w, 3.0, 5))
    # Hand check: rows 8..13 (|y - 10.5| <= 3) between the joints, nothing beyond.
    assert got[8:14, 10:20].all() and not got[7, 10:20].any() and not got[14, 10:20].any()
    # Erosion ignores the outside (scikit-image's default), so row 0 keeps its pixels.
    assert got[0, 36] == 1


def test_pose_mask_closing_bridges_a_one_pixel_gap():
    h, w = 20, 32
    kp = np.full((1, 18, 2), -1, np.float32)
    # nose and Lank are not linked by a limb; no pixel centre lies on a circle.
    kp[0, IDX["nose"]] = [10.3, 10.4]
    kp[0, IDX["Lank"]] = [10.3, 19.4]
    open_ = geometry.pose_masks(kp, h, w, 4.0, closing=0).numpy()[0, ..., 0]
    closed = geometry.pose_masks(kp, h, w, 4.0).numpy()[0, ..., 0]
    assert open_[10, 14] == 1 and open_[10, 15] == 0 and open_[10, 16] == 1
    assert closed[10, 15] == 1
    np.testing.assert_array_equal(closed, _ref_pose_mask(kp[0], h, w, 4.0, 5))


def test_pose_mask_all_missing_is_empty():
    kp = np.full((2, 18, 2), -1, np.float32)
    assert not geometry.pose_masks(kp, 16, 8, 2.0).numpy().any()


# ------------------------------------------------------------------ part transforms


def test_part_transforms_match_numpy_lstsq_on_random_keypoints():
    h, w = 256, 256
    rng = np.random.default_rng(3)
    src = _random_keypoints(rng, 6, h, w)
    tgt = _random_keypoints(rng, 6, h, w)
    got = geometry.part_transforms(src, tgt).numpy()
    assert got.shape == (6, 10, 8) and got.dtype == np.float32
    for b in range(6):
        ref = _ref_part_transforms(src[b], tgt[b])
        for p in range(10):
            assert ref[p] is not None, (b, p)
            np.testing.assert_allclose(got[b, p, 6:], 0.0)
            err = _max_point_error(_matrix(got[b, p]), ref[p], h, w)
            assert err < _tolerance(ref[p], h, w), (b, geometry.PART_NAMES[p], err)


def test_part_transforms_with_missing_joints_match_reference():
    """Missing head points, a missing source limb (mirror) and a missing target limb."""
    h, w = 128, 64
    src = np.stack([_person(h, w, 4, ("Leye", "Lear", "Relb")), _person(h, w, 5, ("Lkne",))])
    tgt = np.stack([_person(h, w, 6, ("Rear",)), _person(h, w, 7, ("nose", "Leye", "Reye"))])
    got = geometry.part_transforms(src, tgt).numpy()
    for b in range(2):
        ref = _ref_part_transforms(src[b], tgt[b])
        for p in range(10):
            if ref[p] is None:
                np.testing.assert_array_equal(got[b, p], OFF)
            else:
                assert _max_point_error(_matrix(got[b, p]), ref[p], h, w) < 0.05, (b, p)


def _affine_pair(rng, similarity):
    """A random (x, y) 3x3 map: proper similarity or general affine, det > 0."""
    if similarity:
        ang, s = rng.uniform(-0.6, 0.6), rng.uniform(0.7, 1.4)
        lin = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    else:
        lin = np.eye(2) + rng.uniform(-0.4, 0.4, (2, 2))
    m = np.eye(3)
    m[:2, :2] = lin
    m[:2, 2] = rng.uniform(-30, 30, 2)
    return m


def _apply_xy(m, kp):
    """Map (y, x) keypoints by an (x, y) 3x3 matrix, keeping -1 rows."""
    xy = kp[:, ::-1].astype(np.float64)
    out = (xy @ m[:2, :2].T + m[:2, 2])[:, ::-1]
    return np.where((kp == -1).all(-1, keepdims=True), -1, out).astype(np.float32)


@pytest.mark.parametrize("similarity", [False, True])
def test_part_transforms_recover_exact_affine_like_skimage(similarity):
    """source = M(target) exactly: transforms equal M and skimage's estimate_transform."""
    rng = np.random.default_rng(10 + similarity)
    m = _affine_pair(rng, similarity)
    tgt = _person(128, 64, seed=8)
    src = _apply_xy(m, tgt)
    got = geometry.part_transforms(src[None], tgt[None]).numpy()[0]
    # Torso and head points map exactly under any affine; the limb polygons only
    # under a proper similarity (their width scales with st and turns with the limb).
    parts = range(10) if similarity else (0, 1)
    named_s, named_t = _named_xy(src), _named_xy(tgt)
    for p in parts:
        assert _max_point_error(_matrix(got[p]), m, 128, 64) < 0.02, geometry.PART_NAMES[p]
        if p == 0:
            names = ("Rhip", "Lhip", "Lsho", "Rsho")
            t_xy, s_xy = [np.array([d[n] for n in names]) for d in (named_t, named_s)]
        elif p == 1:
            names = ("nose", "Leye", "Reye", "Lear", "Rear", "Lsho", "Rsho")
            t_xy, s_xy = [np.array([d[n] for n in names]) for d in (named_t, named_s)]
        else:
            fr, to, inc, _ = REF_LIMBS[p - 2]
            t_xy = _ref_polygon(named_t[fr], named_t[to], _ref_st(named_t), inc)
            s_xy = _ref_polygon(named_s[fr], named_s[to], _ref_st(named_s), inc)
        sk = transform.estimate_transform("affine", src=t_xy, dst=s_xy).params
        np.testing.assert_allclose(sk, m, atol=1e-4)  # keypoints are float32
        assert _max_point_error(_matrix(got[p]), sk, 128, 64) < 0.02


def test_missing_target_part_gives_off_image_transform_and_zero_warp():
    h, w = 64, 32
    src = _person(h, w, 0)
    tgt = _person(h, w, 1, missing=("Rkne", "Lhip", "nose", "Leye", "Reye", "Lear", "Rear"))
    tr = geometry.part_transforms(src[None], tgt[None])
    got = tr.numpy()[0]
    off = [geometry.PART_NAMES.index(n) for n in ("torso", "head", "Rhip-Rkne", "Rkne-Rank",
                                                    "Lhip-Lkne")]  # fmt: skip
    for p in range(10):
        if p in off:
            np.testing.assert_array_equal(got[p], OFF)
        else:
            assert not np.array_equal(got[p], OFF), geometry.PART_NAMES[p]
    # Lhip is missing, so st of the target comes from the right side only and
    # the left knee-ankle limb still gets a transform.
    assert got[geometry.PART_NAMES.index("Lkne-Lank"), 0] != 1.0
    warped = geometry.warp(tf.ones([1, h, w, 2]), tr).numpy()[0]  # [10, h, w, 2]
    for p in range(10):
        assert (not warped[p].any()) == (p in off), geometry.PART_NAMES[p]


def test_missing_source_limb_uses_mirrored_limb():
    h, w = 128, 64
    src = _person(h, w, 2, missing=("Relb",))
    tgt = _person(h, w, 3)
    got = geometry.part_transforms(src[None], tgt[None]).numpy()[0]
    # Reference by hand: put the source's left elbow/shoulder/wrist in place of the right ones.
    named_s, named_t = _named_xy(src), _named_xy(tgt)
    st_s, st_t = _ref_st(named_s), _ref_st(named_t)
    for part, (sfr, sto), (tfr, tto), inc in (
        ("Rsho-Relb", ("Lsho", "Lelb"), ("Rsho", "Relb"), 0.1),
        ("Relb-Rwri", ("Lelb", "Lwri"), ("Relb", "Rwri"), 0.3),
    ):
        ref = _lstsq_affine(
            _ref_polygon(named_t[tfr], named_t[tto], st_t, inc),
            _ref_polygon(named_s[sfr], named_s[sto], st_s, inc),
        )
        assert _max_point_error(_matrix(got[geometry.PART_NAMES.index(part)]), ref, h, w) < 0.05
    # Both sides missing in the source: nothing to sample.
    src2 = _person(h, w, 2, missing=("Relb", "Lelb"))
    got2 = geometry.part_transforms(src2[None], tgt[None]).numpy()[0]
    for part in ("Rsho-Relb", "Relb-Rwri", "Lsho-Lelb", "Lelb-Lwri"):
        np.testing.assert_array_equal(got2[geometry.PART_NAMES.index(part)], OFF)


def test_identical_poses_give_identity_transforms():
    kp = np.stack([_person(128, 64, 0), _person(128, 64, 1, missing=("Lelb", "Rear", "Reye"))])
    got = geometry.part_transforms(kp, kp).numpy()
    identity = np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32)
    for b in range(2):
        for p in range(10):
            if b == 1 and geometry.PART_NAMES[p] in ("Lsho-Lelb", "Lelb-Lwri"):
                # Missing in the target too: off image, not identity.
                np.testing.assert_array_equal(got[b, p], OFF)
            else:
                np.testing.assert_allclose(got[b, p], identity, atol=2e-3)
                assert _max_point_error(_matrix(got[b, p]), np.eye(3), 128, 64) < 0.02


def test_collinear_points_are_singular():
    """Collinear (exactly or within float32 rounding) target or source sets are off image."""
    rng = np.random.default_rng(4)
    cases, n_max = 300, 5
    n = rng.integers(2, n_max + 1, cases)
    p0, d = rng.uniform(0, 256, (cases, 1, 2)), rng.uniform(-100, 100, (cases, 1, 2))
    line = (p0 + rng.uniform(-1, 1, (cases, n_max, 1)) * d).astype(np.float32)
    line[:, :2] = (p0 + np.array([[-1.0], [1.0]]) * d).astype(np.float32)  # distinct ends
    other = rng.uniform(0, 256, (cases, n_max, 2)).astype(np.float32)
    # Padding points (weight 0) are off the line: they must be ignored.
    line[np.arange(n_max) >= n[:, None]] = [500.0, -300.0]
    wts = (np.arange(n_max) < n[:, None]).astype(np.float32)
    _, ok_t = geometry.fit_affine(line, other, wts)
    _, ok_s = geometry.fit_affine(other, line, wts)
    assert not ok_t.numpy().any() and not ok_s.numpy().any()
    # The ends plus a third point 5 px off the line's middle span the plane.
    perp = np.stack([-d[:, 0, 1], d[:, 0, 0]], -1) / np.linalg.norm(d[:, 0], axis=-1)[:, None]
    line[:, 2] = p0[:, 0] + 5 * perp
    wts[:, 2] = 1.0
    other[:, :3] = [[10, 10], [110, 20], [40, 100]] + rng.uniform(-5, 5, (cases, 3, 2))
    _, ok = geometry.fit_affine(line, other, wts)
    assert ok.numpy().all()
    # A torso whose four points lie on one vertical line (side view, integer pixels).
    tgt = _person(128, 64, 0)
    tgt[[IDX["Rhip"], IDX["Lhip"], IDX["Lsho"], IDX["Rsho"]]] = [[60, 30], [62, 30], [30, 30],
                                                                  [28, 30]]  # fmt: skip
    got = geometry.part_transforms(_person(128, 64, 1)[None], tgt[None]).numpy()[0]
    np.testing.assert_array_equal(got[0], OFF)


def test_fit_affine_ignores_zero_weight_points():
    rng = np.random.default_rng(5)
    dst = rng.uniform(0, 100, (1, 6, 2)).astype(np.float32)
    src = rng.uniform(0, 100, (1, 6, 2)).astype(np.float32)
    wts = np.array([[1, 1, 0, 1, 1, 0]], np.float32)
    got, ok = geometry.fit_affine(dst, src, wts)
    keep = wts[0] > 0
    ref = _lstsq_affine(dst[0, keep, ::-1].astype(np.float64), src[0, keep, ::-1].astype(np.float64))
    assert ok.numpy()[0]
    assert _max_point_error(_matrix(got.numpy()[0]), ref, 100, 100) < 0.02


def test_body_scale():
    kp = np.stack([_person(128, 64, 0), _person(128, 64, 1, ("Lhip",)),
                   _person(128, 64, 2, ("Lhip", "Rsho"))])  # fmt: skip
    st = geometry.body_scale(kp).numpy()
    assert st[0] == pytest.approx(_ref_st(_named_xy(kp[0])), rel=1e-5)
    r = kp[1, IDX["Rhip"]] - kp[1, IDX["Rsho"]]
    assert st[1] == pytest.approx(float(np.hypot(*r)), rel=1e-5)
    assert st[2] == 0.0
    assert geometry.body_scale(kp, default=7.0).numpy()[2] == 7.0


# ------------------------------------------------------------------ warp


def test_warp_matches_numpy_loop_reference():
    rng = np.random.default_rng(6)
    image = rng.uniform(-1, 1, (2, 9, 11, 3)).astype(np.float32)
    ang = 0.3
    t = np.array(
        [
            [np.cos(ang) * 1.1, -np.sin(ang), 1.7, np.sin(ang), np.cos(ang) * 0.9, -2.2, 0, 0],
            [0.8, 0.15, 2.5, -0.1, 1.2, 0.4, 0, 0],
        ],
        np.float32,
    )
    got = geometry.warp(image, t).numpy()
    assert got.shape == image.shape
    for b in range(2):
        ref = _np_warp(image[b], t[b])
        np.testing.assert_allclose(got[b], ref, atol=1e-5)
        # Same with scipy's linear interpolation and zero fill beyond the edge.
        yy, xx = np.mgrid[0:9, 0:11].astype(np.float64)
        sx = t[b, 0] * xx + t[b, 1] * yy + t[b, 2]
        sy = t[b, 3] * xx + t[b, 4] * yy + t[b, 5]
        for c in range(3):
            sp = ndimage.map_coordinates(image[b, ..., c].astype(np.float64), [sy, sx], order=1,
                                         mode="grid-constant", cval=0.0)  # fmt: skip
            np.testing.assert_allclose(got[b, ..., c], sp, atol=1e-5)
    # Something really fell outside and was zero-filled.
    assert (got == 0).any()


def test_warp_identity_and_integer_shift():
    rng = np.random.default_rng(7)
    image = rng.uniform(-1, 1, (1, 6, 7, 2)).astype(np.float32)
    ident = np.array([[1, 0, 0, 0, 1, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(geometry.warp(image, ident).numpy(), image)
    # Output (x, y) samples input (x + 2, y - 1).
    shift = np.array([[1, 0, 2, 0, 1, -1, 0, 0]], np.float32)
    expected = np.zeros_like(image)
    expected[:, 1:, :-2] = image[:, :-1, 2:]
    np.testing.assert_array_equal(geometry.warp(image, shift).numpy(), expected)


def test_warp_many_transforms_shape_and_per_part_results():
    rng = np.random.default_rng(8)
    image = rng.uniform(-1, 1, (2, 5, 6, 3)).astype(np.float32)
    t = np.tile(np.array([1, 0, 0, 0, 1, 0, 0, 0], np.float32), (2, 4, 1))
    t[:, 1, 2] = 1.0
    t[:, 2] = OFF
    t[:, 3, [0, 4]] = 0.5
    got = geometry.warp(image, t).numpy()
    assert got.shape == (2, 4, 5, 6, 3)
    for b in range(2):
        for k in range(4):
            np.testing.assert_allclose(got[b, k], _np_warp(image[b], t[b, k]), atol=1e-6)


def test_warp_gradients_are_finite_and_adjoint():
    rng = np.random.default_rng(9)
    feats = tf.constant(rng.uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32))
    trs = tf.constant(np.array([[0.9, 0.2, 0.7, -0.1, 1.1, 0.3, 0, 0]] * 2, np.float32))
    g_out = tf.constant(rng.uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([feats, trs])
        out = geometry.warp(feats, trs)
        loss = tf.reduce_sum(out * g_out)
    d_feats, d_trs = tape.gradient(loss, [feats, trs])
    assert d_feats is not None and d_trs is not None
    assert np.isfinite(d_feats.numpy()).all() and np.isfinite(d_trs.numpy()).all()
    assert np.abs(d_trs.numpy()[:, :6]).sum() > 0
    # The warp is linear in the features: <W f, g> = <f, W^T g>.
    np.testing.assert_allclose(tf.reduce_sum(feats * d_feats).numpy(), loss.numpy(), rtol=1e-5)


def test_scale_transforms_give_the_same_warp_at_half_resolution():
    """On a linear ramp, bilinear sampling is exact, so levels must agree exactly."""
    h, w = 16, 12
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    full = (0.3 * yy - 0.2 * xx + 1.0)[None, ..., None]
    half = full[:, ::2, ::2]  # map pixel (i, j) = image pixel (2i, 2j)
    t = np.array([[0.95, 0.1, 1.5, -0.05, 1.05, 2.0, 0, 0]], np.float32)
    w_full = geometry.warp(full, t).numpy()
    w_half = geometry.warp(half, geometry.scale_transforms(t, 0.5)).numpy()
    # Compare where both samples (and their bilinear neighbours) fall inside.
    sx = 0.95 * xx + 0.1 * yy + 1.5
    sy = -0.05 * xx + 1.05 * yy + 2.0
    inside = (sx >= 0) & (sx <= w - 3) & (sy >= 0) & (sy <= h - 3)
    inside_half = inside[::2, ::2]
    assert inside_half.sum() > 10
    np.testing.assert_allclose(w_half[0, ..., 0][inside_half], w_full[0, ::2, ::2, 0][inside_half],
                               atol=1e-5)  # fmt: skip


# ------------------------------------------------------------------ part masks


def test_part_masks_torso_head_limbs():
    h, w = 128, 64
    kp = _person(h, w, 0, missing=("Lear",))
    m = geometry.part_masks(kp[None], h, w).numpy()[0]
    assert m.shape == (10, h, w) and set(np.unique(m)) <= {0.0, 1.0}
    assert m[0].all()
    named = _named_xy(kp)
    st = _ref_st(named)
    # Head: square of half side 0.4 st around the mean of the visible head points.
    c = np.mean([named[n] for n in ("nose", "Leye", "Reye", "Rear")], 0)  # (x, y)
    yy, xx = np.mgrid[0:h, 0:w]
    ref_head = (np.abs(xx - c[0]) <= 0.4 * st) & (np.abs(yy - c[1]) <= 0.4 * st)
    np.testing.assert_array_equal(m[1], ref_head)
    for p, (fr, to, _, inc) in enumerate(REF_LIMBS, start=2):
        a, b = named[fr], named[to]
        mid = np.round((a + b) / 2).astype(int)
        assert m[p, mid[1], mid[0]] == 1, geometry.PART_NAMES[p]
        far = np.round(a + 3 * (a - b)).astype(int)  # beyond the joint, on the axis
        far = np.clip(far, 0, [w - 1, h - 1])
        assert m[p, far[1], far[0]] == 0, geometry.PART_NAMES[p]
        # Against the pose-gan polygon rasterized by scikit-image.
        poly = _ref_polygon(a, b, st, inc)
        ref = np.zeros((h, w), bool)
        rr, cc = draw.polygon(poly[:, 1], poly[:, 0], shape=(h, w))
        ref[rr, cc] = True
        assert _iou(m[p], ref) > 0.9, geometry.PART_NAMES[p]


def test_part_masks_missing_parts_are_empty():
    kp = _person(64, 32, 0, missing=("nose", "Leye", "Reye", "Lear", "Rear", "Rkne"))
    m = geometry.part_masks(kp[None], 64, 32).numpy()[0]
    assert m[0].all()
    for name in ("head", "Rhip-Rkne", "Rkne-Rank"):
        assert not m[geometry.PART_NAMES.index(name)].any()
    assert m[geometry.PART_NAMES.index("Lkne-Lank")].any()


def test_part_masks_at_half_resolution_sample_even_pixels():
    h, w = 64, 48
    kp = np.stack([_person(h, w, 3), _person(h, w, 4, ("Lelb",))])
    full = geometry.part_masks(kp, h, w).numpy()
    half = geometry.part_masks(kp, h // 2, w // 2, image_size=(h, w)).numpy()
    assert half.shape == (2, 10, h // 2, w // 2)
    np.testing.assert_array_equal(half, full[:, :, ::2, ::2])


# ------------------------------------------------------------------ faces


def _face_pose():
    kp = np.full((18, 2), -1, np.float32)
    for name, yx in {"nose": (19, 15), "Leye": (18, 17), "Reye": (18, 13), "Lear": (20, 19),
                     "Rear": (20, 11), "Rsho": (30, 10), "Rhip": (40, 10), "Lsho": (30, 20),
                     "Lhip": (40, 20)}.items():  # fmt: skip
        kp[IDX[name]] = yx
    return kp  # head centre (19, 15), st = 10, half side 4


def test_face_boxes():
    kp = np.stack([_face_pose(), _face_pose(), _face_pose()])
    kp[1, [IDX["Lear"], IDX["Rear"]]] = -1
    kp[2, [IDX["Rhip"], IDX["Lhip"]]] = -1
    center, half, valid = (t.numpy() for t in geometry.face_boxes(kp))
    np.testing.assert_allclose(center[0], [19, 15])
    np.testing.assert_allclose(center[1], [(19 + 18 + 18) / 3, 15], rtol=1e-6)
    np.testing.assert_allclose(half[:2], [4, 4], rtol=1e-6)
    np.testing.assert_array_equal(valid, [True, True, False])


def test_crop_faces_equals_expected_region():
    h, w = 48, 32
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = np.stack([yy * 100 + xx, -yy], -1)[None]  # a known linear pattern
    kp = _face_pose()[None]
    crop = geometry.crop_faces(image, kp, 8).numpy()
    assert crop.shape == (1, 8, 8, 2)
    np.testing.assert_allclose(crop[0], image[0, 15:23, 11:19], atol=1e-4)
    crop4 = geometry.crop_faces(image, kp, 4).numpy()  # stride 2
    np.testing.assert_allclose(crop4[0], image[0, 15:23:2, 11:19:2], atol=1e-4)
    # Non-integer stride 1.6: bilinear samples of a linear ramp are exact.
    crop5 = geometry.crop_faces(image, kp, 5).numpy()[0]
    i = np.arange(5, dtype=np.float64)
    ref = (15 + 1.6 * i)[:, None] * 100 + (11 + 1.6 * i)[None, :]
    np.testing.assert_allclose(crop5[..., 0], ref, atol=2e-3)


def test_crop_faces_invalid_box_gives_zeros():
    kp = np.stack([_face_pose(), _face_pose(), _face_pose()])
    kp[1, [IDX[n] for n in ("nose", "Leye", "Reye", "Lear", "Rear")]] = -1
    kp[2, [IDX["Rsho"], IDX["Lsho"]]] = -1
    image = np.ones((3, 48, 32, 3), np.float32)
    crop = geometry.crop_faces(image, kp, 6).numpy()
    assert crop[0].all() and not crop[1].any() and not crop[2].any()


# ------------------------------------------------------------------ misc ops


def test_one_hot_parsing_and_pair_conditioning():
    lab = np.array([[[0, 3], [9, 1]]], np.uint8)
    np.testing.assert_array_equal(geometry.one_hot_parsing(lab).numpy(), np.eye(10)[lab])
    h, w = 32, 16
    src = np.stack([_person(h, w, 0), _person(h, w, 1)])
    tgt = np.stack([_person(h, w, 2), _person(h, w, 3, ("Rwri",))])
    out = geometry.pair_conditioning(src, tgt, h, w, 2.0, 1.5)
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "source_pose": (2, h, w, 18), "source_mask": (2, h, w, 1), "target_pose": (2, h, w, 18),
        "target_mask": (2, h, w, 1), "transforms": (2, 10, 8), "part_masks": (2, 10, h, w),
    }  # fmt: skip
    np.testing.assert_array_equal(out["source_pose"], geometry.pose_heatmaps(src, h, w, 2.0))
    np.testing.assert_array_equal(out["target_mask"], geometry.pose_masks(tgt, h, w, 1.5))
    np.testing.assert_array_equal(out["transforms"], geometry.part_transforms(src, tgt))
    np.testing.assert_array_equal(out["part_masks"], geometry.part_masks(tgt, h, w))


def test_mirror_permutation():
    names = [geometry.KEYPOINT_NAMES[i] for i in geometry.MIRROR]
    assert names == [_mirror(n) for n in NAMES]


# ------------------------------------------------------------------ vectorised = per-part loops


def _loop_polygon(fr, to, st, inc_to):
    """One limb's 4 corners [B, 4, 2] (y, x), written out per limb (pose-gan estimate_polygon)."""
    fr2 = fr + (fr - to) * 0.1
    to2 = to + (to - fr2) * inc_to
    d = fr2 - to2
    n = tf.stack([-d[:, 1], d[:, 0]], -1)
    n = n / tf.maximum(tf.norm(n, axis=-1, keepdims=True), 1e-6) * (0.2 * st)[:, None]
    return tf.stack([fr2 + n, fr2 - n, to2 - n, to2 + n], 1), fr2, to2


def _loop_part_transforms(src, tgt):
    """part_transforms as 10 separate geometry.fit_affine calls (one per part, unpadded)."""
    src, tgt = tf.constant(src), tf.constant(tgt)
    vs, vt = geometry.present(src), geometry.present(tgt)
    st_s, st_t = geometry.body_scale(src), geometry.body_scale(tgt)
    out = []
    torso = [IDX[n] for n in ("Rhip", "Lhip", "Lsho", "Rsho")]
    both = tf.reduce_all(tf.gather(vs, torso, axis=1) & tf.gather(vt, torso, axis=1), -1)
    tr, ok = geometry.fit_affine(tf.gather(tgt, torso, axis=1), tf.gather(src, torso, axis=1),
                                 tf.cast(both, tf.float32)[:, None] * tf.ones([1, 4]))  # fmt: skip
    out.append((tr, ok & both))
    head = [IDX[n] for n in ("nose", "Leye", "Reye", "Lear", "Rear", "Lsho", "Rsho")]
    both = tf.gather(vs, head, axis=1) & tf.gather(vt, head, axis=1)
    tr, ok = geometry.fit_affine(tf.gather(tgt, head, axis=1), tf.gather(src, head, axis=1), both)
    out.append((tr, ok & tf.reduce_any(both[:, :5], -1)))
    for fr, to, inc, _ in REF_LIMBS:
        fr, to, mfr, mto = IDX[fr], IDX[to], IDX[_mirror(fr)], IDX[_mirror(to)]
        s_ok = vs[:, fr] & vs[:, to]
        m_ok = vs[:, mfr] & vs[:, mto]
        poly_t, _, _ = _loop_polygon(tgt[:, fr], tgt[:, to], st_t, inc)
        s_fr = tf.where(s_ok[:, None], src[:, fr], src[:, mfr])
        s_to = tf.where(s_ok[:, None], src[:, to], src[:, mto])
        poly_s, _, _ = _loop_polygon(s_fr, s_to, st_s, inc)
        tr, ok = geometry.fit_affine(poly_t, poly_s, tf.ones_like(poly_t[..., 0]))
        valid = vt[:, fr] & vt[:, to] & (s_ok | m_ok) & (st_s > 0) & (st_t > 0)
        out.append((tr, ok & valid))
    trs = np.stack([t.numpy() for t, _ in out], 1)
    oks = np.stack([o.numpy() for _, o in out], 1)
    return np.where(oks[..., None], trs, np.array(OFF, np.float32)), oks


def _hard_pose_pairs(h, w):
    """Source/target pairs hitting every branch: missing joints, mirrors, degenerate sets."""
    rng = np.random.default_rng(21)
    src = np.stack([_person(h, w, 30 + i) for i in range(12)])
    tgt = np.stack([_person(h, w, 60 + i) for i in range(12)])
    src[0, [IDX["Relb"], IDX["Lkne"]]] = -1  # mirrored source limbs
    src[1, [IDX["Relb"], IDX["Lelb"]]] = -1  # both sides missing: off image
    tgt[2, [IDX[n] for n in ("nose", "Leye", "Reye", "Lear", "Rear")]] = -1  # no head
    tgt[3, [IDX["Rhip"], IDX["Lhip"]]] = -1  # no target body scale, no torso
    src[4, [IDX["Rsho"], IDX["Lsho"]]] = -1  # no source body scale, no torso
    tgt[5, IDX["Rkne"]] = tgt[5, IDX["Rhip"]]  # zero-length target limb
    src[6, IDX["Lank"]] = src[6, IDX["Lkne"]]  # zero-length source limb
    tgt[7, [IDX["Rhip"], IDX["Lhip"], IDX["Lsho"], IDX["Rsho"]]] = [
        [60, 30],
        [62, 30],
        [30, 30],
        [28, 30],
    ]  # collinear torso
    src[8] = tgt[8]  # identical poses
    src[9, [IDX["Leye"], IDX["Lear"], IDX["Rear"]]] = -1  # head: 2 keypoints + shoulders
    rand_s = _random_keypoints(rng, 20, h, w, p_missing=0.3)
    rand_t = _random_keypoints(rng, 20, h, w, p_missing=0.3)
    return np.concatenate([src, rand_s]), np.concatenate([tgt, rand_t])


def test_part_transforms_equal_per_part_fit_affine_loop():
    """The one batched, padded fit equals 10 separate fits, part by part (OFF rows exactly)."""
    h, w = 128, 64
    src, tgt = _hard_pose_pairs(h, w)
    got = geometry.part_transforms(src, tgt).numpy()
    ref, ok = _loop_part_transforms(src, tgt)
    assert got.shape == ref.shape == (len(src), 10, 8)
    # Every branch was taken: valid and off-image parts, and each part's absence somewhere.
    assert ok.any(0).all() and (~ok).any(0).all() and ok.sum() > 0.3 * ok.size
    for b in range(len(src)):
        for p in range(10):
            if not ok[b, p]:
                np.testing.assert_array_equal(got[b, p], OFF, err_msg=str((b, p)))
            else:
                m = _matrix(ref[b, p])
                err = _max_point_error(_matrix(got[b, p]), m, h, w)
                assert err < _tolerance(m, h, w), (b, geometry.PART_NAMES[p], err)


def test_part_transforms_batch_rows_are_independent():
    """A pose pair gives the same transforms alone and inside a batch (no cross-talk)."""
    src, tgt = _hard_pose_pairs(64, 32)
    batched = geometry.part_transforms(src, tgt).numpy()
    for b in (0, 1, 5, 7, 13):
        alone = geometry.part_transforms(src[b : b + 1], tgt[b : b + 1]).numpy()[0]
        np.testing.assert_allclose(alone, batched[b], rtol=1e-4, atol=1e-3)


def _loop_part_masks(kp, h, w, image_size=None):
    """part_masks with one rectangle per limb in a Python loop; [B, 10, h, w] bool."""
    kp = tf.constant(kp)
    ih, iw = image_size or (h, w)
    yy, xx = tf.meshgrid(tf.range(h, dtype=tf.float32) * (ih / h),
                         tf.range(w, dtype=tf.float32) * (iw / w), indexing="ij")  # fmt: skip
    vis = geometry.present(kp)
    st = geometry.body_scale(kp)
    head = [IDX[n] for n in ("nose", "Leye", "Reye", "Lear", "Rear")]
    hv = tf.cast(tf.gather(vis, head, axis=1), tf.float32)
    n = tf.reduce_sum(hv, -1)
    c = tf.reduce_sum(tf.gather(kp, head, axis=1) * hv[..., None], 1) / tf.maximum(n, 1.0)[:, None]
    half = (0.4 * st)[:, None, None]
    in_head = (tf.abs(yy - c[:, 0, None, None]) <= half) & (tf.abs(xx - c[:, 1, None, None]) <= half)
    masks = [tf.ones_like(in_head), in_head & (n > 0)[:, None, None]]
    for fr, to, _, inc in REF_LIMBS:
        fr, to = IDX[fr], IDX[to]
        _, p0, p1 = _loop_polygon(kp[:, fr], kp[:, to], st, inc)
        d = p1 - p0
        len2 = (d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1])[:, None, None]
        py, px = yy - p0[:, 0, None, None], xx - p0[:, 1, None, None]
        dy, dx = d[:, 0, None, None], d[:, 1, None, None]
        safe = tf.maximum(len2, 1e-12)
        t = (py * dy + px * dx) / safe
        cross = py * dx - px * dy
        hw = (0.2 * st)[:, None, None]
        rect = (t >= 0) & (t <= 1) & (cross * cross / safe <= hw * hw) & (len2 > 0)
        ok = vis[:, fr] & vis[:, to] & (st > 0)
        masks.append(rect & ok[:, None, None])
    return tf.stack(masks, 1).numpy()


@pytest.mark.parametrize("size", [(64, 32, None), (32, 16, (64, 32)), (24, 20, (64, 32))])
def test_part_masks_equal_per_limb_loop(size):
    h, w, image_size = size
    _, kps = _hard_pose_pairs(64, 32)
    got = geometry.part_masks(kps, h, w, image_size).numpy()
    ref = _loop_part_masks(kps, h, w, image_size)
    assert got.shape == ref.shape == (len(kps), 10, h, w)
    assert ref[:, 2:].any() and not ref[:, 2:].all()
    np.testing.assert_array_equal(got, ref)


def test_graphs_stay_small():
    """Trace/compile cost: the parts are batched ops, not Python loops of per-part ops.

    Graph nodes (tf.function graph, TF 2.21) were 4,279 / 1,150 / 5,885 with per-part
    loops; the batched ops give about 590 / 240 / 1,280.
    """
    spec = tf.TensorSpec([None, 18, 2], tf.float32)

    def nodes(fn):
        return len(tf.function(fn).get_concrete_function(spec, spec).graph.as_graph_def().node)

    assert nodes(lambda s, t: geometry.part_transforms(s, t)) < 800
    assert nodes(lambda s, t: geometry.part_masks(t, H, W)) < 400
    assert nodes(lambda s, t: geometry.pair_conditioning(s, t, H, W)) < 1800


# ------------------------------------------------------------------ tf.data, tf.function, XLA

H, W = 32, 16


def _case_inputs():
    src = np.stack([_person(H, W, 0), _person(H, W, 1, ("Relb", "Lear")), _person(H, W, 2)])
    tgt = np.stack([_person(H, W, 3), _person(H, W, 4), _person(H, W, 5, ("Rkne", "nose"))])
    rng = np.random.default_rng(11)
    img = rng.uniform(-1, 1, (3, H, W, 3)).astype(np.float32)
    trs = geometry.part_transforms(src, tgt).numpy()
    lab = rng.integers(0, 10, (3, H, W)).astype(np.uint8)
    return src, tgt, img, trs, lab


CASES = {
    "pose_heatmaps": lambda s, t, i, r, lab: geometry.pose_heatmaps(s, H, W, 2.0),
    "pose_heatmaps_half": lambda s, t, i, r, lab: geometry.pose_heatmaps(s, H // 2, W // 2, 2.0,
                                                                          image_size=(H, W)),
    "pose_masks": lambda s, t, i, r, lab: geometry.pose_masks(s, H, W, 1.5),
    "part_transforms": lambda s, t, i, r, lab: geometry.part_transforms(s, t),
    "part_masks": lambda s, t, i, r, lab: geometry.part_masks(t, H, W),
    "part_masks_half": lambda s, t, i, r, lab: geometry.part_masks(t, H // 2, W // 2, (H, W)),
    "body_scale": lambda s, t, i, r, lab: geometry.body_scale(s),
    "face_boxes": lambda s, t, i, r, lab: geometry.face_boxes(s),
    "crop_faces": lambda s, t, i, r, lab: geometry.crop_faces(i, s, 8),
    "warp": lambda s, t, i, r, lab: geometry.warp(i, r),
    "warp_scaled": lambda s, t, i, r, lab: geometry.warp(
        i[:, ::2, ::2], geometry.scale_transforms(r, 0.5)),
    "one_hot_parsing": lambda s, t, i, r, lab: geometry.one_hot_parsing(lab),
    "pair_conditioning": lambda s, t, i, r, lab: geometry.pair_conditioning(s, t, H, W, 2.0, 1.5),
}  # fmt: skip


def _assert_same(a, b, atol):
    fa, fb = tf.nest.flatten(a), tf.nest.flatten(b)
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype
        if x.dtype == bool:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, atol=atol, rtol=1e-5)


# Every function in every mode (the batched part ops keep the graphs small enough
# to trace and XLA-compile in seconds; see test_graphs_stay_small).
ALL_MODES = ("function", "xla", "data_batched", "data_example")
MODES = {name: ALL_MODES for name in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_runs_in_tf_function_xla_and_tf_data(name):
    fn = CASES[name]
    args = _case_inputs()
    eager = fn(*args)
    modes = MODES[name]
    if "function" in modes:
        _assert_same(eager, tf.function(fn)(*args), 1e-6)
    if "xla" in modes:
        # Float results may differ by rounding; binary masks must match exactly
        # (no pixel of these inputs sits on a mask boundary).
        _assert_same(eager, tf.function(fn, jit_compile=True)(*args), 1e-4)
    if "data_batched" in modes:
        # Inside a tf.data map, with an unknown (None) batch dimension.
        ds = tf.data.Dataset.from_tensor_slices(args).batch(3).map(fn)
        _assert_same(eager, next(iter(ds)), 1e-6)
    if "data_example" in modes:
        # One example at a time through a map (batch of one inside).
        ds1 = tf.data.Dataset.from_tensor_slices(args).map(
            lambda *a: tf.nest.map_structure(lambda x: x[0], fn(*[x[None] for x in a]))
        )
        _assert_same(tf.nest.map_structure(lambda x: x[0], eager), next(iter(ds1)), 1e-6)
