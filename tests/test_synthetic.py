"""Tests of the synthetic people generator (spt_tf.data.synthetic)."""

import csv
import dataclasses
import filecmp
import os

import numpy as np
import pytest

from spt_tf import labels as L
from spt_tf.data import formats, synthetic

H, W = 64, 32
N_ID, K = 4, 3
SEED = 7
K_ = {n: i for i, n in enumerate(synthetic.KEYPOINT_NAMES)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic") / "data")
    summary = synthetic.generate(out, N_ID, K, H, W, SEED, test_fraction=0.5)
    assert summary["train_images"] + summary["test_images"] == N_ID * K
    return out


def _rows(data_dir):
    with open(os.path.join(data_dir, "identities.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _load(data_dir, row):
    img = formats.read_image(os.path.join(data_dir, row["split"], row["name"]))
    lab = formats.read_parsing(formats.find_parsing(os.path.join(data_dir, "parsing"), row["name"]), shape=(H, W))
    return img, lab


def _annotations(data_dir):
    out = {}
    for split in ("train", "test"):
        out[split] = formats.read_annotations(
            os.path.join(data_dir, f"annotation-{split}.csv"), image_size=(H, W), tolerance=0.0
        )
    return out


def test_keypoint_order_is_geometry_order():
    from spt_tf import geometry

    assert synthetic.KEYPOINT_NAMES == geometry.KEYPOINT_NAMES


def test_files_exist_and_load(data_dir):
    rows = _rows(data_dir)
    assert len(rows) == N_ID * K
    assert set(rows[0]) >= {"name", "identity", "split", "upper", "lower"}
    ann = _annotations(data_dir)
    for row in rows:
        assert row["name"].startswith(row["identity"] + "_")
        assert row["upper"] in ("sleeveless", "short", "long")
        assert row["lower"] in ("pants", "shorts", "skirt")
        img, lab = _load(data_dir, row)
        assert img.shape == (H, W, 3) and lab.shape == (H, W)
        assert row["name"] in ann[row["split"]]
        assert os.path.exists(os.path.join(data_dir, "parsing", row["name"][:-4] + ".png"))
    known = {r["name"] for r in rows}
    for split in ("train", "test"):
        pairs = formats.read_pairs(os.path.join(data_dir, f"pairs-{split}.csv"), known_names=known)
        assert pairs


def test_files_are_the_rendered_examples(data_dir):
    """Files hold exactly what render_example gives; label 0 exactly where the background shows."""
    ann = _annotations(data_dir)
    for row in _rows(data_dir):
        i, p = int(row["identity"][2:]), int(row["name"].split("_p")[1][:-4])
        ident, pose, bg, image, labels, kp = synthetic.render_example(SEED, i, p, H, W)
        img, lab = _load(data_dir, row)
        np.testing.assert_array_equal(img, image)
        np.testing.assert_array_equal(lab, labels)
        np.testing.assert_array_equal(ann[row["split"]][row["name"]], kp)
        assert pose.view == row["view"] and ident.upper == row["upper"]
        fg = lab > 0
        np.testing.assert_array_equal(img[~fg], bg[~fg])
        differs = (img != bg).any(-1)
        assert differs[fg].mean() > 0.97, row["name"]
        assert 0.1 < fg.mean() < 0.7  # a person, not a speck nor the whole frame
        rows = np.nonzero(fg.any(1))[0]
        assert rows[-1] - rows[0] + 1 >= 0.75 * H  # fills most of the height


def test_labels_match_clothing(data_dir):
    ann = _annotations(data_dir)
    seen = set()
    for row in _rows(data_dir):
        _, lab = _load(data_dir, row)
        present = set(np.unique(lab).tolist())
        kp = ann[row["split"]][row["name"]]
        seen.add((row["upper"], row["lower"]))
        assert L.UPPER in present and L.HAIR in present
        assert (L.SKIRT in present) == (row["lower"] == "skirt"), row
        assert (L.PANTS in present) == (row["lower"] in ("pants", "shorts")), row
        yy, xx = np.mgrid[0:H, 0:W]
        if row["lower"] == "pants":
            # Only the shoes are leg-labelled: every leg pixel lies near its ankle.
            for label, ank in ((L.LEFT_LEG, K_["Lank"]), (L.RIGHT_LEG, K_["Rank"])):
                d = np.hypot(yy - kp[ank, 0], xx - kp[ank, 1])[lab == label]
                assert d.size == 0 or d.max() < 0.15 * H, row
        if row["upper"] == "long":
            for label, wri in ((L.LEFT_ARM, K_["Lwri"]), (L.RIGHT_ARM, K_["Rwri"])):
                d = np.hypot(yy - kp[wri, 0], xx - kp[wri, 1])[lab == label]
                assert d.size == 0 or d.max() < 0.12 * H, row
    assert len(seen) >= 2  # the tiny set still mixes clothing


def test_keypoints_inside_or_missing_and_on_the_body(data_dir):
    ann = _annotations(data_dir)
    views = {r["name"]: r["view"] for r in _rows(data_dir)}
    for split in ("train", "test"):
        for name, kp in ann[split].items():
            missing = (kp == -1).all(1)
            assert ((kp == -1).any(1) == missing).all()
            assert (kp[~missing, 0] >= 0).all() and (kp[~missing, 0] <= H - 1).all()
            assert (kp[~missing, 1] >= 0).all() and (kp[~missing, 1] <= W - 1).all()
            for n in ("Rsho", "Lsho", "Rhip", "Lhip"):  # the field's pair rule
                assert not missing[K_[n]]
            lab = formats.read_parsing(os.path.join(data_dir, "parsing", name))
            body = [K_[n] for n in synthetic.KEYPOINT_NAMES[1:14]]
            ys, xs = kp[body, 0].astype(int), kp[body, 1].astype(int)
            assert (lab[ys, xs] > 0).mean() >= 12 / 13, name
            for eye in ("Leye", "Reye"):
                if not missing[K_[eye]]:
                    assert lab[int(kp[K_[eye], 0]), int(kp[K_[eye], 1])] == L.FACE, name
            if views[name] == "back":
                assert missing[[K_["nose"], K_["Leye"], K_["Reye"]]].all()
            elif views[name] == "front":
                assert not missing[[K_["nose"], K_["Leye"], K_["Reye"]]].any()


def test_splits_disjoint_and_pairs_same_identity(data_dir):
    ann = _annotations(data_dir)
    ids = {s: {n.split("_")[0] for n in ann[s]} for s in ann}
    assert ids["train"] and ids["test"] and not ids["train"] & ids["test"]
    assert len(ids["test"]) == round(N_ID * 0.5)
    for split in ("train", "test"):
        pairs = formats.read_pairs(os.path.join(data_dir, f"pairs-{split}.csv"))
        for a, b in pairs:
            assert a != b and a.split("_")[0] == b.split("_")[0]
            assert a in ann[split] and b in ann[split]
        # All ordered same-identity pairs, each once.
        assert len(set(pairs)) == len(pairs) == len(ids[split]) * K * (K - 1)


def test_same_seed_same_bytes_any_workers(data_dir, tmp_path):
    again = str(tmp_path / "again")
    synthetic.generate(again, N_ID, K, H, W, SEED, test_fraction=0.5, workers=2)
    files = sorted(os.path.relpath(os.path.join(d, f), data_dir) for d, _, fs in os.walk(data_dir) for f in fs)
    assert len(files) == 2 * N_ID * K + 5
    match, mismatch, errors = filecmp.cmpfiles(data_dir, again, files, shallow=False)
    assert not mismatch and not errors
    other = str(tmp_path / "other")
    synthetic.generate(other, N_ID, K, H, W, SEED + 1, test_fraction=0.5)
    _, mismatch, _ = filecmp.cmpfiles(data_dir, other, ["annotation-train.csv"], shallow=False)
    assert mismatch


# ------------------------------------------------------------------ controlled renders


def _pose(view, yaw, **kw):
    base = synthetic.Pose(
        view=view, yaw=yaw, arms=((15, 0, 5, 0.5), (15, 0, 5, 0.5)),
        legs=((5, 0, 0), (5, 0, 0)), roll=0.0, head_roll=0.0, height_frac=0.9,
        x_jitter=0.0, y_jitter=0.0, light=1.0,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)


def _ident(**kw):
    return dataclasses.replace(synthetic.identity_of(0, 0), **kw)


def _render(ident, pose, h=128, w=64):
    bg = np.full((h, w, 3), (0, 0, 255), np.uint8)
    return synthetic.render(ident, pose, bg)


def test_left_right_are_the_persons():
    """Front view: the person's right on the image left, right arm label there; back: mirrored."""
    ident = _ident(upper="sleeveless")
    for view, yaw, right_is_left in (("front", 0.0, True), ("back", 180.0, False)):
        _, lab, kp = _render(ident, _pose(view, yaw))
        for r, left in (("Rsho", "Lsho"), ("Rwri", "Lwri"), ("Rhip", "Lhip"), ("Rank", "Lank")):
            assert (kp[K_[r], 1] < kp[K_[left], 1]) == right_is_left, (view, r)
        ry, rx = kp[K_["Rwri"]].astype(int)
        ly, lx = kp[K_["Lwri"]].astype(int)
        assert lab[ry, rx] == L.RIGHT_ARM and lab[ly, lx] == L.LEFT_ARM
        ry, rx = kp[K_["Rank"]].astype(int)
        assert lab[ry, rx] in (L.RIGHT_LEG, L.PANTS, L.SKIRT)


@pytest.mark.parametrize("yaw, near", [(-90.0, "L"), (90.0, "R")])
def test_side_view_hides_far_eye_and_ear(yaw, near):
    _, lab, kp = _render(_ident(), _pose("side", yaw))
    far = "R" if near == "L" else "L"
    assert (kp[K_[far + "eye"]] == -1).all() and (kp[K_[far + "ear"]] == -1).all()
    assert (kp[K_[near + "eye"]] >= 0).all() and (kp[K_[near + "ear"]] >= 0).all()
    # The nose points where the person faces: image left for yaw -90.
    assert (kp[K_["nose"], 1] < kp[K_["neck"], 1]) == (yaw < 0)
    assert lab[tuple(kp[K_[near + "eye"]].astype(int))] == L.FACE


def test_back_view_has_no_face_points_but_ears():
    _, lab, kp = _render(_ident(), _pose("back", 180.0))
    for n in ("nose", "Leye", "Reye"):
        assert (kp[K_[n]] == -1).all()
    for n in ("Lear", "Rear"):
        assert (kp[K_[n]] >= 0).all()
    head = lab[: int(kp[K_["neck"], 0]) - 2]
    assert (head == L.HAIR).sum() > 0 and (head == L.FACE).sum() == 0


@pytest.mark.parametrize("upper", ["sleeveless", "short", "long"])
@pytest.mark.parametrize("lower", ["pants", "shorts", "skirt"])
def test_garment_regions(upper, lower):
    """Arms straight down, front view: where skin shows follows the garment kind."""
    ident = _ident(upper=upper, lower=lower, sleeve_end=0.5, shorts_end=0.5, skirt_len=0.2)
    image, lab, kp = _render(ident, _pose("front", 0.0))
    bg = np.all(image == (0, 0, 255), -1)
    np.testing.assert_array_equal(bg, lab == 0)
    yy = np.arange(lab.shape[0])[:, None] * np.ones_like(lab)
    for side in "RL":
        arm = L.RIGHT_ARM if side == "R" else L.LEFT_ARM
        leg = L.RIGHT_LEG if side == "R" else L.LEFT_LEG
        sho, elb, wri = (kp[K_[side + n], 0] for n in ("sho", "elb", "wri"))
        hip, kne, ank = (kp[K_[side + n], 0] for n in ("hip", "kne", "ank"))
        arm_rows = yy[lab == arm]
        mid_upper = (sho + elb) / 2
        if upper == "sleeveless":  # bare from the shoulder
            assert arm_rows.min() <= sho + 1
        elif upper == "short":  # bare from below the sleeve (half the upper arm)
            assert mid_upper - 2 <= arm_rows.min() <= elb
        else:  # only the hand
            assert arm_rows.min() >= wri - 2
        leg_rows = yy[lab == leg]
        if lower == "pants":  # only the shoe (around the ankle)
            assert leg_rows.min() >= ank - 5
        elif lower == "shorts":  # bare from mid-thigh
            assert (hip + kne) / 2 - 2 <= leg_rows.min() <= kne
        else:  # bare below the hem, above the knee for this length
            assert hip < leg_rows.min() <= ank - 5
    assert (L.SKIRT in lab) == (lower == "skirt")
    assert (L.PANTS in lab) == (lower != "skirt")


def test_textures_and_backgrounds_vary():
    rng = np.random.default_rng(0)
    kinds = {synthetic.sample_identity(rng).upper_texture for _ in range(60)}
    assert kinds == set(synthetic.TEXTURES)
    ident = _ident(upper="long", upper_texture="stripes", upper_colours=((200, 0, 0), (0, 200, 0)))
    image, lab, _ = _render(ident, _pose("front", 0.0))
    cols = {tuple(c) for c in image[lab == L.UPPER].reshape(-1, 3).tolist()}
    assert {(200, 0, 0), (0, 200, 0)} <= cols
    bgs = [synthetic.sample_background(np.random.default_rng(s), 32, 16) for s in range(30)]
    flat = sum(int((b == b[0, 0]).all()) for b in bgs)
    assert 0 < flat < 30  # plain ones and varying ones


def _pattern_agreement(ident, pose_a, pose_b, j0, j1, label, half_width, rigid=True):
    """How often a garment's two colours agree between two renders, at points matched through
    the part's motion: each pixel of ``label`` near the segment ``j0 -> j1`` of render B
    (within ``half_width`` of the segment's length across it, the middle 70 % along) is
    mapped into render A by the similarity that takes B's ``(j0, j1)`` to A's (``rigid``),
    or by the translation of ``j0`` alone (image-anchored patterns would agree under it).
    """
    (img_a, lab_a, kp_a), (img_b, lab_b, kp_b) = (_render(ident, p, 256, 128) for p in (pose_a, pose_b))
    c0, c1 = (np.asarray(c, float) for c in (ident.upper_colours if label == L.UPPER else ident.lower_colours))

    def colour_bit(img, ys, xs):
        px = img[ys, xs].astype(float)
        return np.abs(px - c1).sum(-1) < np.abs(px - c0).sum(-1)

    def point(kp, j):  # (x, y); "midhip": the hips' midpoint
        joints = ("Rhip", "Lhip") if j == "midhip" else (j,)
        return np.mean([kp[K_[n]][::-1] for n in joints], 0).astype(float)

    a0, a1, b0, b1 = point(kp_a, j0), point(kp_a, j1), point(kp_b, j0), point(kp_b, j1)
    ys, xs = np.nonzero(lab_b == label)
    rel = np.stack([xs, ys], 1) - b0
    axis = b1 - b0
    t = rel @ axis / (axis @ axis)
    d = (rel @ np.array([axis[1], -axis[0]])) / (axis @ axis)
    keep = (t > 0.15) & (t < 0.85) & (np.abs(d) < half_width)
    if rigid:
        a_axis = a1 - a0
        mapped = a0 + t[:, None] * a_axis + d[:, None] * np.array([a_axis[1], -a_axis[0]])
    else:
        mapped = a0 + rel
    mx, my = np.rint(mapped[:, 0]).astype(int), np.rint(mapped[:, 1]).astype(int)
    keep &= (mx >= 0) & (mx < 128) & (my >= 0) & (my < 256)
    keep[keep] &= lab_a[my[keep], mx[keep]] == label
    assert keep.sum() > 100, keep.sum()
    return float(np.mean(colour_bit(img_b, ys[keep], xs[keep]) == colour_bit(img_a, my[keep], mx[keep])))


@pytest.mark.parametrize("texture", ["checks", "stripes"])
def test_textures_move_with_the_body_parts(texture):
    """Garment patterns are attached to the body: a torso leaning or a thigh swinging out
    carries its pattern with it, so a part's own motion (what the deformable skips undo)
    maps the source's pattern onto the target's, and a plain image shift does not."""
    ident = _ident(upper="long", upper_texture=texture, upper_colours=((200, 0, 0), (0, 200, 0)),
                   lower="pants", lower_texture=texture, lower_colours=((0, 0, 200), (200, 200, 0)),
                   texture_period=0.08, texture_angle=45.0)  # fmt: skip
    upright = _pose("front", 0.0)
    leaning = _pose("front", 0.0, roll=12.0)
    torso = _pattern_agreement(ident, upright, leaning, "neck", "midhip", L.UPPER, 0.25)
    torso_shift = _pattern_agreement(ident, upright, leaning, "neck", "midhip", L.UPPER, 0.25, rigid=False)
    assert torso > 0.9 and torso_shift < torso - 0.15, (torso, torso_shift)
    swung = _pose("front", 0.0, legs=((30, 0, 0), (5, 0, 0)))
    thigh = _pattern_agreement(ident, upright, swung, "Rhip", "Rkne", L.PANTS, 0.12)
    thigh_shift = _pattern_agreement(ident, upright, swung, "Rhip", "Rkne", L.PANTS, 0.12, rigid=False)
    assert thigh > 0.9 and thigh_shift < thigh - 0.15, (thigh, thigh_shift)


def test_cli_and_sample_figure(tmp_path):
    out = str(tmp_path / "cli")
    fig = str(tmp_path / "fig.png")
    summary = synthetic.main(
        ["--out", out, "--identities", "2", "--poses_per_identity", "2", "--height", "32",
         "--width", "16", "--seed", "1", "--test_fraction", "0.5", "--figure", fig]
    )  # fmt: skip
    assert summary["train_images"] == 2 and summary["test_images"] == 2
    grid = formats.read_image(fig)
    zoom = int(np.ceil(192 / 32))
    assert grid.shape == (3 * 32 * zoom, 4 * (16 * zoom + 4), 3)


def test_cli_flags_parser_for_app_run(tmp_path):
    """``parse_flags`` (``app.run``'s flags parser: ``argv[0]`` is the program) gives the
    arguments ``main`` parses from code."""
    argv = ["--out", str(tmp_path), "--identities", "2", "--poses_per_identity", "3", "--workers", "2"]
    a = synthetic.parse_flags(["python -m spt_tf.data.synthetic", *argv])
    assert (a.out, a.identities, a.poses_per_identity, a.workers) == (str(tmp_path), 2, 3, 2)
    assert (a.height, a.width, a.seed, a.test_fraction, a.figure) == (128, 64, 0, 0.2, "")
