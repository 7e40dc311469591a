"""Pseudo-label search (SPT Eq. 1) and clothing types: tiny hand-drawn maps, CPU, seconds."""

import csv
import os

import cv2
import numpy as np
import pytest

from spt_tf import geometry
from spt_tf.data import clothing, formats, synthetic
from spt_tf.data import pseudo_pairs as pp
from spt_tf.data.pseudo_pairs import matching

H, W = 48, 24
# A standing person (y, x) in a 48 x 24 map, COCO-18 order.
BASE = np.array([
    [7, 12], [12, 12], [12, 8], [19, 6], [26, 5], [12, 16], [19, 18], [26, 19], [24, 9],
    [32, 9], [41, 9], [24, 15], [32, 15], [41, 15], [6, 13], [6, 11], [7, 14], [7, 10],
], np.float32)  # fmt: skip


def draw(kp, h=H, w=W, sleeve=0.0, lower="pants", shorts_end=0.5):
    """A stick person: labels 0..9 in an [h, w] map. ``sleeve``: covered arm length (0..2).

    Limbs are rectangles and the head a disc, all sized by the body scale and drawn with
    sub-pixel precision, so a similarity transform of the keypoints moves the drawing with
    them up to pixel sampling.
    """
    kp = np.asarray(kp, np.float64)
    m = np.zeros((h, w), np.uint8)
    st = float(np.mean([np.linalg.norm(kp[2] - kp[8]), np.linalg.norm(kp[5] - kp[11])]))
    shift = 4  # cv2 fixed-point: 1/16 px

    def fill(pts_yx, lab):
        pts = np.round(np.asarray(pts_yx)[:, ::-1] * (1 << shift)).astype(np.int32)
        cv2.fillPoly(m, [pts], int(lab), cv2.LINE_8, shift)

    def seg(a, b, lab, t0=0.0, t1=1.0, half=0.11):
        p0, p1 = a + t0 * (b - a), a + t1 * (b - a)
        d = p1 - p0
        n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9) * half * st
        fill([p0 + n, p1 + n, p1 - n, p0 - n], lab)

    for hip, kne, ank, lab in ((8, 9, 10, 9), (11, 12, 13, 8)):
        seg(kp[hip], kp[kne], lab)
        seg(kp[kne], kp[ank], lab)
        if lower == "pants":
            seg(kp[hip], kp[kne], 4, half=0.14)
            seg(kp[kne], kp[ank], 4, half=0.14)
        elif lower == "shorts":
            seg(kp[hip], kp[kne], 4, 0.0, shorts_end, half=0.14)
    if lower == "skirt":
        hips, knees = kp[[8, 11]], kp[[9, 12]]
        fill([hips[0], hips[1], 0.4 * hips[1] + 0.6 * knees[1], 0.4 * hips[0] + 0.6 * knees[0]], 5)
    fill(kp[[2, 5, 11, 8]], 3)
    for sho, elb, wri, lab in ((2, 3, 4, 7), (5, 6, 7, 6)):
        seg(kp[sho], kp[elb], lab)
        seg(kp[elb], kp[wri], lab)
        if sleeve > 0:
            seg(kp[sho], kp[elb], 3, 0.0, min(sleeve, 1.0), half=0.14)
        if sleeve > 1:
            seg(kp[elb], kp[wri], 3, 0.0, sleeve - 1.0, half=0.14)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    fill(kp[0] + 0.35 * st * np.stack([np.sin(angles), np.cos(angles)], 1), 1)
    return m


def random_pose(rng, scale=1.0, noise=1.5):
    kp = BASE * scale + rng.normal(0, noise, BASE.shape).astype(np.float32)
    return kp.astype(np.float32)


def moved(kp, a, t):
    """Keypoints under x -> A x + t in (y, x)."""
    return (kp @ np.asarray(a, np.float32).T + np.asarray(t, np.float32)).astype(np.float32)


# ---------------------------------------------------------------- geometry twins


def test_part_masks_equal_geometry():
    rng = np.random.default_rng(0)
    poses = [random_pose(rng, noise=3.0) for _ in range(4)]
    poses[1][[4, 10]] = -1  # a wrist and an ankle missing: those limbs have no mask
    poses[2][[0, 14, 15, 16, 17]] = -1  # no head keypoint: no head mask
    ref = geometry.part_masks(np.stack(poses), H, W).numpy() > 0
    for kp, r in zip(poses, ref):
        np.testing.assert_array_equal(pp.part_masks(kp, H, W), r)
    assert not ref[1, 4].any() and not ref[1, 8].any() and not ref[2, 1].any()


def _without_body_scale():
    """Hand-made poses with head joints but no hip-shoulder pair (body scale 0).

    Each head centre sits exactly on a pixel, where a square of side 0 would still hold
    one pixel if the mask were not empty by rule.
    """
    head = [0, 14, 15, 16, 17]
    a = BASE.copy()
    a[[2, 5]] = -1  # no shoulders
    a[head] = [[7, 12], [6, 13], [6, 11], [8, 14], [8, 10]]  # centre (7, 12)
    b = np.full((18, 2), -1, np.float32)
    b[0] = [9, 5]  # a nose alone
    c = BASE.copy()
    c[[5, 8]] = -1  # Rsho and Lhip only: no side with both
    c[head] = [[8, 12], [7, 13], [7, 11], [9, 14], [9, 10]]  # centre (8, 12)
    d = BASE.copy()
    d[[2, 5, 8, 11]] = -1  # no torso joint at all
    d[[0, 14, 15]] = [[20, 3], [19, 3], [21, 3]]  # centre (20, 3); ears missing
    d[[16, 17]] = -1
    return np.stack([a, b, c, d])


def test_head_mask_without_body_scale_equals_geometry():
    poses = _without_body_scale()
    assert (pp.body_scale(poses) == 0).all() and pp.part_presence(poses)[:, 1].all()
    both = np.concatenate([poses, BASE[None]])  # and a complete pose: a non-empty head
    ref = geometry.part_masks(both, H, W).numpy() > 0
    assert not ref[:4, 1:].any() and ref[4, 1].any()
    for kp, r in zip(both, ref):
        np.testing.assert_array_equal(pp.part_masks(kp, H, W), r)
    # The vectorised squares of the exact cost's windows follow geometry's face boxes.
    from spt_tf.data.pseudo_pairs import masks, windows

    _, _, valid = geometry.face_boxes(both)
    np.testing.assert_array_equal(masks._head_squares(both)[2], valid.numpy())
    assert [masks._head_square(kp)[2] for kp in both] == list(valid.numpy())
    np.testing.assert_array_equal(windows._part_quads(both, 1)[1], valid.numpy())


def test_exact_cost_equals_reference_without_body_scale():
    rng = np.random.default_rng(9)
    poses = _without_body_scale()
    full = [random_pose(rng) for _ in range(4)]
    maps = np.stack([draw(k) for k in full])
    # Each scale-less pose as the source and as the candidate of a complete one.
    src_kp = np.concatenate([poses, np.stack(full)])
    cand_kp = np.concatenate([np.stack(full)[::-1], poses])
    src, cand = np.concatenate([maps, maps]), np.concatenate([maps[::-1], maps[::-1]])
    for outside in (True, False):
        ref = pp.eq1_costs_reference(src, src_kp, cand, cand_kp, outside_is_background=outside)
        fast = pp.eq1_costs_pairs(src, src_kp, cand, cand_kp, np.arange(8), np.arange(8), outside_is_background=outside)
        np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-2)


def test_body_scale_and_presence_equal_geometry():
    rng = np.random.default_rng(1)
    kp = np.stack([random_pose(rng) for _ in range(3)])
    kp[1, [2, 8]] = -1  # right shoulder and hip missing: left side only
    kp[2, [2, 5]] = -1  # no shoulders: body scale 0
    np.testing.assert_allclose(pp.body_scale(kp), geometry.body_scale(kp).numpy(), rtol=1e-6)
    pres = pp.part_presence(kp)
    assert pres[0].all()
    assert not pres[1, 0] and not pres[1, 6]  # no torso, no Rsho-Relb
    assert not pres[2, 2:].any()  # without a body scale no limb mask exists


# ---------------------------------------------------------------- the exact cost


@pytest.mark.parametrize("outside_is_background", [True, False])
def test_exact_cost_equals_onehot_reference(outside_is_background):
    rng = np.random.default_rng(2)
    src_kp, cand_kp, src, cand = [], [], [], []
    for i in range(6):
        a, b = random_pose(rng), random_pose(rng, scale=0.9, noise=2.5)
        if i == 2:
            b[[4, 10]] = -1  # candidate lacks two limbs: missing-part penalty
        if i == 3:
            a[[7, 0, 14, 15, 16, 17]] = -1  # source lacks a forearm and the head
        if i == 4:
            b[8] = -1  # candidate lacks the torso
        src_kp.append(a)
        cand_kp.append(b)
        src.append(draw(a, sleeve=i % 3))
        cand.append(draw(b, lower=("pants", "shorts", "skirt")[i % 3]))
    src, cand = np.stack(src), np.stack(cand)
    src_kp, cand_kp = np.stack(src_kp), np.stack(cand_kp)
    # One reference batch: the 6 pairs, then source 0 against every candidate.
    ref = pp.eq1_costs_reference(
        np.concatenate([src, np.repeat(src[:1], 6, 0)]),
        np.concatenate([src_kp, np.repeat(src_kp[:1], 6, 0)]),
        np.concatenate([cand, cand]),
        np.concatenate([cand_kp, cand_kp]),
        outside_is_background=outside_is_background,
    )
    fast = pp.eq1_costs_pairs(
        src, src_kp, cand, cand_kp, np.arange(6), np.arange(6), outside_is_background=outside_is_background
    )
    np.testing.assert_allclose(fast, ref[:6], rtol=1e-5, atol=1e-2)
    # Vectorised over candidates of one source, with given transforms: the same numbers.
    tr = pp.transforms_for(np.repeat(src_kp[:1], 6, 0), cand_kp)
    one = pp.eq1_costs(src[0], src_kp[0], cand, cand_kp, tr, outside_is_background=outside_is_background)
    np.testing.assert_allclose(one, ref[6:], rtol=1e-5, atol=1e-2)
    assert len(set(np.round(ref, 3))) > 6  # the maps differ: no trivially equal costs


def test_missing_part_penalty_is_the_source_part_area():
    rng = np.random.default_rng(3)
    a, b = random_pose(rng), random_pose(rng)
    b_missing = b.copy()
    b_missing[4] = -1  # Relb-Rwri (part 8) absent in the candidate
    src, cand = draw(a), draw(b)
    with_pen = pp.eq1_costs(src, a, cand[None], b_missing[None])[0]
    without = pp.eq1_costs(src, a, cand[None], b_missing[None], missing_part_penalty=False)[0]
    area = pp.part_masks(a, H, W)[8].sum()
    assert area > 0
    np.testing.assert_allclose(with_pen - without, area, rtol=1e-6)


def test_map_and_affine_copy_cost_near_zero():
    rng = np.random.default_rng(4)
    h, w = 2 * H, 2 * W  # room for the sub-pixel drawing to resolve the limbs
    kp = random_pose(rng, scale=1.7, noise=2.0)
    src = draw(kp, h, w)
    assert pp.eq1_costs(src, kp, src[None], kp[None])[0] < 1e-3  # itself: exactly aligned
    # Rotated by ~5 degrees, scaled by 1.1, shifted; drawn again from the moved keypoints.
    c, s = 1.1 * np.cos(0.08), 1.1 * np.sin(0.08)
    kp2 = moved(kp, [[c, -s], [s, c]], [-6.0, 3.0])
    copy = draw(kp2, h, w)
    other_kp = random_pose(rng, scale=1.7, noise=2.0)
    other_kp[[3, 4, 6, 7]] += [[-8, -6], [-18, -8], [-8, 6], [-18, 8]]  # arms raised
    other = draw(other_kp, h, w, sleeve=1.0)
    c_copy = pp.eq1_costs(src, kp, copy[None], kp2[None])[0]
    c_other = pp.eq1_costs(src, kp, other[None], other_kp[None])[0]
    # The floor set by pixel sampling alone: the same drawing half a pixel away.
    kp_half = moved(kp, np.eye(2), [0.5, 0.5])
    c_half = pp.eq1_costs(src, kp, draw(kp_half, h, w)[None], kp_half[None])[0]
    fg2 = 2.0 * (src > 0).sum()  # the cost of the map against nothing at all
    assert c_copy < 2.0 * c_half, (c_copy, c_half)
    assert c_copy < 0.3 * fg2, (c_copy, fg2)
    assert c_other > 0.6 * fg2, (c_other, fg2)
    assert c_copy < 0.25 * c_other


# ---------------------------------------------------------------- pose distance


def test_pose_distance_hand_computed():
    kp = BASE.copy()
    st = float(pp.body_scale(kp))
    other = kp.copy()
    other[4] += [3.0, 4.0]  # one joint moves by 5 px
    z, v = pp.normalized_poses(np.stack([kp, other, moved(kp, np.eye(2) * 1.5, [3, -2])]))
    d = pp.pose_distances(z, v, z, v)
    # The torso centre and scale do not move: RMS over 18 joints of one 5 px offset.
    np.testing.assert_allclose(d[0, 1], np.sqrt(25.0 / 18.0) / st, rtol=1e-4)
    np.testing.assert_allclose(d[0, 2], 0.0, atol=1e-5)  # scaled and shifted: same pose
    few = kp.copy()
    few[2:] = -1  # two joints left in common: incomparable (inf), never "the same pose"
    z2, v2 = pp.normalized_poses(np.stack([kp, few]))
    assert np.isinf(pp.pose_distances(z2, v2, z2, v2)[0, 1])


# ---------------------------------------------------------------- search


def _set(n, seed=5, lowers=("pants",)):
    rng = np.random.default_rng(seed)
    parsing, keypoints, cloth = {}, {}, {}
    for i in range(n):
        kp = random_pose(rng, noise=2.0)
        lower = lowers[i % len(lowers)]
        name = f"im{i:02d}"
        parsing[name] = draw(kp, lower=lower)
        keypoints[name] = kp
        cloth[name] = lower
    return parsing, keypoints, cloth


def _brute_force(parsing, keypoints, cloth, ident, min_pose_distance):
    """Independent reference: the admissible argmin of the TF one-hot Eq. 1, all pairs."""
    names = list(parsing)
    kp = np.stack([keypoints[n] for n in names])
    maps = np.stack([parsing[n] for n in names])
    z, v = pp.normalized_poses(kp)
    dist = pp.pose_distances(z, v, z, v)
    pairs = [
        (i, j)
        for i, s in enumerate(names)
        for j, c in enumerate(names)
        if j != i
        and cloth[c] == cloth[s]
        and dist[i, j] >= min_pose_distance
        and (ident is None or ident[c] != ident[s])
    ]
    si, ci = np.array(pairs).T
    costs = pp.eq1_costs_reference(maps[si], kp[si], maps[ci], kp[ci])  # one batch
    out = {}
    for i, s in enumerate(names):
        sel = np.nonzero(si == i)[0]
        if len(sel):
            out[s] = names[ci[sel[np.argmin(costs[sel])]]]
    return out


def test_search_equals_brute_force_when_k_covers_everyone():
    parsing, keypoints, cloth = _set(14, lowers=("pants", "skirt"))
    ident = {n: f"p{i // 2}" for i, n in enumerate(parsing)}
    rows = pp.search(parsing, keypoints, clothing=cloth, identities=ident, top_k=14)
    want = _brute_force(parsing, keypoints, cloth, ident, pp.SearchSettings.min_pose_distance)
    assert {a: b for a, b, _ in rows} == want
    for a, b, c in rows:
        assert cloth[a] == cloth[b] and ident[a] != ident[b] and a != b and c >= 0


def test_same_image_and_same_pose_are_excluded():
    parsing, keypoints, cloth = _set(6)
    # A scaled and shifted copy of im00: the same pose, and the cheapest candidate by far.
    kp = moved(keypoints["im00"], np.eye(2) * 0.9, [3.0, 1.0])
    parsing["copy"] = draw(kp)
    keypoints["copy"] = kp
    cloth["copy"] = "pants"
    costs = pp.eq1_costs(
        parsing["im00"],
        keypoints["im00"],
        np.stack([parsing[n] for n in parsing if n != "im00"]),
        np.stack([keypoints[n] for n in parsing if n != "im00"]),
    )
    assert np.argmin(costs) == len(costs) - 1  # the copy would win without the rule
    rows = dict((a, b) for a, b, _ in pp.search(parsing, keypoints, clothing=cloth, top_k=7))
    assert rows["im00"] != "copy" and rows["copy"] != "im00"
    assert all(a != b for a, b in rows.items())
    # With the threshold at 0 the copy is admissible and chosen.
    rows0 = dict((a, b) for a, b, _ in pp.search(parsing, keypoints, clothing=cloth, top_k=7, min_pose_distance=0.0))
    assert rows0["im00"] == "copy"


def test_clothing_filter_and_identity_rule(caplog):
    parsing, keypoints, cloth = _set(9, lowers=("pants", "shorts", "skirt"))
    cloth["im08"] = "unique"  # no other map of its type: no row, and a warning
    ident = {n: n[:3] + str(int(n[2:]) % 3) for n in parsing}  # same lower type = same identity
    rows = pp.search(parsing, keypoints, clothing=cloth, top_k=4)
    assert len(rows) == 8 and all(cloth[a] == cloth[b] for a, b, _ in rows)
    assert "im08" not in {a for a, _, _ in rows} and "1 maps have no admissible" in caplog.text
    # Identities equal within each clothing type: excluding them leaves no candidate at all.
    assert pp.search(parsing, keypoints, clothing=cloth, identities=ident, top_k=4) == []
    allowed = pp.search(parsing, keypoints, clothing=cloth, identities=ident, top_k=4, exclude_same_identity=False)
    assert {a for a, _, _ in allowed} == {a for a, _, _ in rows}


def test_search_inputs_are_checked():
    parsing, keypoints, _ = _set(3)
    del keypoints["im01"]
    with pytest.raises(ValueError, match="no keypoints for 1 maps"):
        pp.search(parsing, keypoints)
    with pytest.raises(ValueError, match="top_k"):
        pp.SearchSettings(top_k=0)


# ---------------------------------------------------------------- files, resume, workers


def _arrays(parsing, keypoints):
    names = list(parsing)
    return (names, np.stack([parsing[n] for n in names]), np.stack([keypoints[n] for n in names]))


def test_csv_round_trip(tmp_path):
    parsing, keypoints, cloth = _set(8, lowers=("pants", "skirt"))
    rows = pp.search(parsing, keypoints, clothing=cloth, top_k=3)
    names, maps, kp = _arrays(parsing, keypoints)
    out = str(tmp_path / "pseudo-pairs.csv")
    summary = pp.run_search(
        names,
        maps,
        kp,
        out,
        pp.SearchSettings(top_k=3),
        clothing=[cloth[n] for n in names],
        chunk_size=3,
        progress=False,
    )
    assert summary["complete"] and summary["pairs"] == len(rows) == 8
    back = pp.read_pseudo_pairs(out)
    assert [(a, b) for a, b, _ in back] == [(a, b) for a, b, _ in rows]
    np.testing.assert_allclose([c for *_, c in back], [c for *_, c in rows], atol=6e-4)
    assert formats.read_pairs(out, known_names=set(names)) == [(a, b) for a, b, _ in rows]
    assert not os.path.exists(out + ".work")  # merged and cleaned up


def test_resume_after_interruption_gives_the_same_file(tmp_path):
    parsing, keypoints, cloth = _set(10, lowers=("pants", "skirt"))
    names, maps, kp = _arrays(parsing, keypoints)
    types = [cloth[n] for n in names]
    settings = pp.SearchSettings(top_k=4)
    whole = str(tmp_path / "whole.csv")
    pp.run_search(names, maps, kp, whole, settings, clothing=types, chunk_size=3, progress=False)
    out = str(tmp_path / "resumed.csv")
    first = pp.run_search(
        names, maps, kp, out, settings, clothing=types, chunk_size=3, stop_after_chunks=1, progress=False
    )  # "killed" after one chunk
    assert not first["complete"] and not os.path.exists(out)
    assert sorted(os.listdir(out + ".work")) == ["candidates.npy", "chunk-00000.csv", "meta.json"]
    # Other settings must not reuse the half-done work.
    with pytest.raises(ValueError, match="other inputs or settings"):
        pp.run_search(names, maps, kp, out, pp.SearchSettings(top_k=5), clothing=types, chunk_size=3, progress=False)
    second = pp.run_search(names, maps, kp, out, settings, clothing=types, chunk_size=3, progress=False)
    assert second["complete"]
    with open(whole, "rb") as f1, open(out, "rb") as f2:
        assert f1.read() == f2.read()


def test_two_workers_write_the_same_file(tmp_path):
    parsing, keypoints, cloth = _set(8, lowers=("pants", "skirt"))
    names, maps, kp = _arrays(parsing, keypoints)
    types = [cloth[n] for n in names]
    # With the coarse stage (48x24 -> 24x12), which the workers read from the work folder.
    settings = pp.SearchSettings(top_k=2, prefilter_k=3, coarse_size=24)
    one, two = str(tmp_path / "one.csv"), str(tmp_path / "two.csv")
    s1 = pp.run_search(names, maps, kp, one, settings, clothing=types, chunk_size=2, progress=False)
    s2 = pp.run_search(names, maps, kp, two, settings, clothing=types, chunk_size=2, workers=2, progress=False)
    assert s1["stages"]["coarse_pairs"] == s2["stages"]["coarse_pairs"] > 0
    with open(one, "rb") as f1, open(two, "rb") as f2:
        assert f1.read() == f2.read()
    want = pp.search(parsing, keypoints, clothing=cloth, settings=settings)
    assert [(a, b) for a, b, _ in pp.read_pseudo_pairs(one)] == [(a, b) for a, b, _ in want]


def test_read_identities_errors_name_row_and_field(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("name,identity\na.png,p0\nb.png,\n")
    with pytest.raises(formats.FormatError, match=r"row 3, field 'identity'"):
        pp.read_identities(path)
    path.write_text("name,who\na.png,p0\n")
    with pytest.raises(formats.FormatError, match="lacks the column 'identity'"):
        pp.read_identities(path)


# ---------------------------------------------------------------- clothing types


@pytest.mark.parametrize("sleeve,want", [(0.0, "sleeveless"), (0.6, "short"), (1.9, "long")])
def test_sleeve_type_of_drawn_arms(sleeve, want):
    kp = BASE.copy()
    # Arms held away from the torso, as a hand-drawn reference.
    kp[[3, 4, 6, 7]] = [[18, 2], [25, 1], [18, 22], [25, 23]]
    assert clothing.sleeve_type(draw(kp, sleeve=sleeve), kp) == want


@pytest.mark.parametrize("lower", ["pants", "shorts", "skirt"])
def test_lower_type_of_drawn_legs(lower):
    assert clothing.lower_type(draw(BASE, lower=lower), BASE) == lower


def test_unknown_without_limbs():
    kp = BASE.copy()
    kp[[3, 4, 6, 7, 9, 10, 12, 13]] = -1
    assert clothing.clothing_type(draw(BASE), kp) == ("unknown", "unknown")


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("syn"))
    synthetic.generate(out, identities=24, poses_per_identity=3, height=128, width=64, seed=3, test_fraction=0.2)
    return out


def test_clothing_accuracy_on_synthetic_people(synthetic_set):
    kps = formats.read_annotations(os.path.join(synthetic_set, "annotation-train.csv"))
    with open(os.path.join(synthetic_set, "identities.csv")) as f:
        truth = {r["name"]: (r["upper"], r["lower"]) for r in csv.DictReader(f)}
    hits = lower_hits = 0
    for name, kp in kps.items():
        m = formats.read_parsing(formats.find_parsing(os.path.join(synthetic_set, "parsing"), name))
        got = clothing.clothing_type(m, kp)
        hits += got == truth[name]
        lower_hits += got[1] == truth[name][1]
    # 57 training images; the bench measures ~96 % on 1,500 (docs/benchmarks.md).
    assert lower_hits / len(kps) >= 0.95
    assert hits / len(kps) >= 0.85


def test_cli_on_synthetic_people(synthetic_set, tmp_path):
    out = str(tmp_path / "pp.csv")
    summary = pp.main(
        [
            "--data_dir",
            synthetic_set,
            "--out",
            out,
            "--identities",
            os.path.join(synthetic_set, "identities.csv"),
            "--top_k",
            "4",
            "--no_progress",
        ]
    )
    assert summary["complete"] and summary["pairs"] + summary["unmatched"] == summary["sources"]
    ident = pp.read_identities(os.path.join(synthetic_set, "identities.csv"))
    rows = pp.read_pseudo_pairs(out)
    assert len(rows) == summary["pairs"] > 0.8 * summary["sources"]
    assert all(ident[a] != ident[b] for a, b, _ in rows)


def test_vote_clothing_majority_per_identity():
    types = [
        ("short", "pants"),
        ("sleeveless", "pants"),
        ("short", "unknown"),
        ("long", "skirt"),
        ("short", "skirt"),
        ("unknown", "unknown"),
    ]
    ident = ["a", "a", "a", "b", "b", "c"]
    # a: short 2 : sleeveless 1 -> short; pants (unknown does not vote).
    # b: long 1 : short 1 tie -> each keeps its own. c: nothing to vote -> unknown stays.
    assert pp.vote_clothing(types, ident) == [
        ("short", "pants"),
        ("short", "pants"),
        ("short", "pants"),
        ("long", "skirt"),
        ("short", "skirt"),
        ("unknown", "unknown"),
    ]


def test_mode_pool_hand_computed():
    m = np.array([[1, 1, 2, 3], [1, 4, 3, 2], [0, 0, 5, 5], [7, 7, 5, 6]], np.uint8)[None]
    # Blocks: {1,1,1,4} -> 1; {2,3,3,2} tie -> 2 (lowest); {0,0,7,7} tie -> 0; {5,5,5,6} -> 5.
    np.testing.assert_array_equal(pp.mode_pool(m, 2)[0], [[1, 2], [0, 5]])
    assert pp.coarse_factor(256, 64) == 4 and pp.coarse_factor(128, 64) == 2
    assert pp.coarse_factor(96, 64) == 1 and pp.coarse_factor(256, 0) == 1


def test_coarse_stage_keeps_the_exact_choice_among_its_survivors():
    parsing, keypoints, cloth = _set(12, lowers=("pants", "skirt"))
    names, maps, kp = _arrays(parsing, keypoints)
    settings = pp.SearchSettings(top_k=2, prefilter_k=6, coarse_size=24)  # 48x24 -> 24x12
    assert pp.candidates_per_source(H, settings) == 6
    groups = pp._group_ids([cloth[n] for n in names])
    desc = pp.build_descriptors(maps, kp, settings)
    cand, _ = pp.prefilter(desc, kp, groups, None, settings, k=6)
    src = np.arange(len(names))
    tr = pp._chunk_transforms(kp, src, cand)
    coarse = pp.mode_pool(maps, 2)
    rows = pp.rerank(maps, kp, src, cand, tr, settings, coarse)
    small_kp = np.where(kp >= 0, kp / 2, -1).astype(np.float32)
    for s, c, cost in rows:
        ok = cand[s][cand[s] >= 0]
        # Independent: the coarse costs on the pooled maps, then the full cost of the best two.
        coarse_costs = pp.eq1_costs(coarse[s], small_kp[s], coarse[ok], small_kp[ok])
        survivors = ok[np.argsort(coarse_costs, kind="stable")[:2]]
        full = pp.eq1_costs(maps[s], kp[s], maps[survivors], kp[survivors])
        assert c == survivors[np.argmin(full)]
        np.testing.assert_allclose(cost, full.min(), rtol=1e-9)
    # The same through search() (in-memory path) with these settings.
    got = pp.search(parsing, keypoints, clothing=cloth, settings=settings)
    assert [(a, b) for a, b, _ in got] == [(names[s], names[c]) for s, c, _ in rows]


def test_top_directions_span_the_leading_subspace():
    rng = np.random.default_rng(6)
    # Rank-3 data plus small noise: the 3 directions found must span the true ones.
    basis = np.linalg.qr(rng.standard_normal((40, 3)))[0]
    x = rng.standard_normal((300, 3)) * [5.0, 3.0, 2.0] @ basis.T
    x += 0.01 * rng.standard_normal(x.shape)
    p = pp._top_directions(x, 3)
    np.testing.assert_allclose(p.T @ p, np.eye(3), atol=1e-5)
    # Projection of the true basis on the found subspace keeps (almost) all of it.
    np.testing.assert_allclose(np.linalg.norm(p.T @ basis, axis=0), 1.0, atol=1e-3)


def test_rerank_in_groups_equals_one_call(monkeypatch):
    parsing, keypoints, cloth = _set(10, lowers=("pants", "skirt"))
    names, maps, kp = _arrays(parsing, keypoints)
    settings = pp.SearchSettings(top_k=2, prefilter_k=4, coarse_size=24)
    desc = pp.build_descriptors(maps, kp, settings)
    cand, _ = pp.prefilter(desc, kp, pp._group_ids([cloth[n] for n in names]), None, settings, k=4)
    src = np.arange(len(names))
    tr = pp._chunk_transforms(kp, src, cand)
    coarse = pp.mode_pool(maps, 2)
    whole = pp.rerank(maps, kp, src, cand, tr, settings, coarse)
    monkeypatch.setattr(matching, "_RERANK_GROUP", 3)  # rerank reads it from its own module
    assert pp.rerank(maps, kp, src, cand, tr, settings, coarse) == whole


def test_cli_with_a_config_file(synthetic_set, tmp_path):
    out = str(tmp_path / "from-config.csv")
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "from configs import testing\n\n\n"
        "def get_config():\n"
        "    c = testing.get_config()\n"
        f"    c.data.root = {synthetic_set!r}\n"
        "    c.data.height, c.data.width = 64, 32  # maps are 128x64: resized with keypoints\n"
        f"    c.data.pseudo_pairs = {out!r}\n"
        "    c.data.identities = 'identities.csv'\n"
        "    return c\n"
    )
    summary = pp.main(
        ["--config", str(cfg), "--top_k", "2", "--prefilter_k", "6", "--coarse_size", "32", "--no_progress"]
    )
    assert summary["complete"] and summary["out"] == out
    assert summary["stages"]["coarse_pairs"] > 0  # 64x32 -> 32x16 coarse stage
    rows = pp.read_pseudo_pairs(out)
    ident = pp.read_identities(os.path.join(synthetic_set, "identities.csv"))
    assert len(rows) > 0.8 * summary["sources"] and all(ident[a] != ident[b] for a, b, _ in rows)


# ---------------------------------------------------------------- keypoint tolerance


def _outside_set(tmp_path, h=16, w=12):
    """Two 16x12 maps; ``left.csv`` holds a point 10 px left of the frame (row 3), ``below.csv``
    one 10 px below it (row 2). The rest of each row lies inside."""
    parsing = tmp_path / "parsing"
    parsing.mkdir()
    kp = {}
    for i, name in enumerate(("a.png", "b.png")):
        formats.write_parsing(parsing / name, np.full((h, w), i + 1, np.uint8))
        k = np.full((18, 2), -1, np.float32)
        k[[1, 2, 5, 8, 11]] = [[3, 6], [4, 4], [4, 8], [10, 4], [10, 8]]
        kp[name] = k
    left, below = {n: k.copy() for n, k in kp.items()}, {n: k.copy() for n, k in kp.items()}
    left["b.png"][4] = [5, -10]
    below["a.png"][10] = [h - 1 + 10, 5]
    formats.write_annotations(tmp_path / "left.csv", left)
    formats.write_annotations(tmp_path / "below.csv", below)
    return str(parsing), str(tmp_path / "left.csv"), str(tmp_path / "below.csv"), left, below


def test_load_dataset_reads_at_the_given_tolerance(tmp_path):
    parsing, left, below, left_kp, below_kp = _outside_set(tmp_path)
    with pytest.raises(formats.FormatError) as e:
        pp.load_dataset(left, parsing, progress=False)
    assert (e.value.path, e.value.row, e.value.field) == (left, 3, "keypoints_x")
    with pytest.raises(formats.FormatError) as e:
        pp.load_dataset(below, parsing, tolerance=2.0, progress=False)
    assert (e.value.path, e.value.row, e.value.field) == (below, 2, "keypoints_y")
    assert "outside its 16x12 map" in str(e.value)
    for path, want in ((left, left_kp), (below, below_kp)):
        names, maps, kp = pp.load_dataset(path, parsing, tolerance=formats.DEEPFASHION_176_TOLERANCE, progress=False)
        assert names == ["a.png", "b.png"] and maps.shape == (2, 16, 12)
        np.testing.assert_array_equal(kp, np.stack([want[n] for n in names]))  # kept, not clipped


def test_cli_keypoint_tolerance_reaches_the_loader(tmp_path, monkeypatch):
    from spt_tf.data.pseudo_pairs import cli

    parsing, left, _, left_kp, _ = _outside_set(tmp_path)
    seen = {}

    def fake_search(names, maps, kp, out, settings, **kwargs):
        seen["kp"] = kp
        return {"complete": True}

    monkeypatch.setattr(cli, "run_search", fake_search)
    base = ["--annotations", left, "--parsing_dir", parsing, "--out", str(tmp_path / "o.csv"), "--no_progress"]
    with pytest.raises(formats.FormatError, match="row 3, field 'keypoints_x'"):
        pp.main(base)
    pp.main(base + ["--keypoint_tolerance", "40"])
    np.testing.assert_array_equal(seen["kp"][1], left_kp["b.png"])
    with pytest.raises(SystemExit):
        cli.parse_args(base + ["--keypoint_tolerance", "-1"])
    # --config: data.keypoint_tolerance, unless the flag says otherwise.
    cfg = tmp_path / "cfg.py"
    cfg.write_text(
        "from configs import testing\n\n\n"
        "def get_config():\n"
        "    c = testing.get_config()\n"
        f"    c.data.root = {str(tmp_path)!r}\n"
        "    c.data.annotations_train = 'left.csv'\n"
        "    c.data.parsing_dir = 'parsing'\n"
        "    c.data.height, c.data.width = 16, 12\n"
        "    c.data.identities = ''\n"
        "    c.data.keypoint_tolerance = 40.0\n"
        "    return c\n"
    )
    seen.clear()
    pp.main(["--config", str(cfg), "--out", str(tmp_path / "c.csv"), "--no_progress"])
    np.testing.assert_array_equal(seen["kp"][1], left_kp["b.png"])
    with pytest.raises(formats.FormatError, match="row 3, field 'keypoints_x'"):
        pp.main(["--config", str(cfg), "--out", str(tmp_path / "c.csv"), "--no_progress", "--keypoint_tolerance", "2"])
