"""Synthetic people in poses from an annotation file (spt_tf.data.pose_bank, synthetic's
``poses_from``): on hand-made poses written here, and on the field's real files when
``../shared/realdata/`` is there."""

import csv
import filecmp
import os

import numpy as np
import pytest

from spt_tf import labels as L
from spt_tf.data import formats, pose_bank, synthetic
from spt_tf.skeleton import KP

H, W = 64, 32
N_ID, K = 4, 3
SEED = 5
REALDATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                        "shared", "realdata")  # fmt: skip
MARKET = os.path.join(REALDATA, "market", "market-annotation-train.csv")
DEEPFASHION = os.path.join(REALDATA, "deepfashion", "fasion-annotation-test.csv")
TORSO_JOINTS = [KP[n] for n in ("neck", "Rsho", "Lsho", "Rhip", "Lhip")]
FACE = [KP[n] for n in ("nose", "Leye", "Reye")]
EARS = [KP[n] for n in ("Lear", "Rear")]

# A person facing the camera in a 128x64 frame, (y, x); the person's right on the image left.
FRONT = {
    "nose": (20, 32), "neck": (30, 32), "Rsho": (31, 22), "Relb": (48, 19), "Rwri": (63, 18),
    "Lsho": (31, 42), "Lelb": (48, 45), "Lwri": (63, 46), "Rhip": (66, 27), "Rkne": (90, 26),
    "Rank": (114, 26), "Lhip": (66, 37), "Lkne": (90, 38), "Lank": (114, 38),
    "Leye": (18, 35), "Reye": (18, 29), "Lear": (20, 39), "Rear": (20, 25),
}  # fmt: skip
# The same seen from behind: mirrored, no nose or eyes, the ears there.
BACK = {n: (y, 64 - x) for n, (y, x) in FRONT.items() if n not in ("nose", "Leye", "Reye")}
# Facing the image left: shoulders and hips one behind the other, the near (left) eye and ear.
SIDE = {
    "nose": (20, 24), "neck": (30, 32), "Rsho": (31, 31), "Relb": (48, 34), "Rwri": (62, 30),
    "Lsho": (31, 33), "Lelb": (48, 28), "Lwri": (60, 22), "Rhip": (66, 32), "Rkne": (90, 28),
    "Rank": (114, 36), "Lhip": (66, 33), "Lkne": (88, 38), "Lank": (112, 30),
    "Leye": (18, 27), "Lear": (20, 34),
}  # fmt: skip
# Front, with the left wrist and the right knee missing (6 of 8 limb joints: eligible).
PARTIAL = {n: p for n, p in FRONT.items() if n not in ("Lwri", "Rkne")}


def _drop(pose, *names):
    return {n: p for n, p in pose.items() if n not in names}


ELIGIBLE = {"front.jpg": FRONT, "back.jpg": BACK, "side.jpg": SIDE, "partial.jpg": PARTIAL}
INELIGIBLE = {
    "no_lhip.jpg": _drop(FRONT, "Lhip"),
    "no_neck.jpg": _drop(FRONT, "neck"),
    "five_limb_joints.jpg": _drop(FRONT, "Lwri", "Rkne", "Lank"),
    "upside_down.jpg": {n: (128 - y, x) for n, (y, x) in FRONT.items()},
    "empty.jpg": {},
}


def _array(pose):
    kp = np.full((18, 2), -1.0, np.float32)
    for n, p in pose.items():
        kp[KP[n]] = p
    return kp


@pytest.fixture(scope="module")
def hand_csv(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("poses") / "hand-annotation.csv")
    rows = {}
    for i, (name, pose) in enumerate({**ELIGIBLE, **INELIGIBLE}.items()):
        rows[name] = _array(pose)
        if i == 1:  # ineligible rows between eligible ones too
            rows["no_lhip_early.jpg"] = _array(_drop(FRONT, "Lhip"))
    formats.write_annotations(path, rows)
    return path


def _generate(out, path, seed=SEED, **kw):
    return synthetic.generate(str(out), N_ID, K, H, W, seed, test_fraction=0.5, poses_from=path,
                              **kw)  # fmt: skip


@pytest.fixture(scope="module")
def hand_dir(tmp_path_factory, hand_csv):
    out = tmp_path_factory.mktemp("hand") / "data"
    summary = _generate(out, hand_csv)
    assert summary["pose_rows"] == len(ELIGIBLE) + len(INELIGIBLE) + 1
    assert summary["pose_rows_eligible"] == len(ELIGIBLE)
    return str(out)


def _rows(data_dir):
    with open(os.path.join(data_dir, "identities.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _load(data_dir):
    """(identities row, labels, written keypoints) of every image."""
    ann = {}
    for split in ("train", "test"):
        ann.update(formats.read_annotations(os.path.join(data_dir, f"annotation-{split}.csv"),
                                            image_size=(H, W), tolerance=0.0))  # fmt: skip
    out = []
    for row in _rows(data_dir):
        lab = formats.read_parsing(os.path.join(data_dir, "parsing", row["name"]))
        out.append((row, lab, ann[row["name"]]))
    return out


def _check_dataset(data_dir, source_rows, eligible_names):
    """Properties every poses_from dataset has; returns the views seen."""
    views = []
    on, total = 0, 0
    for row, lab, kp in _load(data_dir):
        assert lab.shape == (H, W)
        src = source_rows[row["pose_row"]]
        assert row["pose_row"] in eligible_names  # rows with too few joints are never used
        # Missing joints stay missing, present ones stay present.
        np.testing.assert_array_equal(pose_bank.present(kp), pose_bank.present(src), row["name"])
        vis = pose_bank.present(kp)
        assert ((kp == -1).any(1) == ~vis).all()
        assert (kp[vis, 0] >= 0).all() and (kp[vis, 0] <= H - 1).all()
        assert (kp[vis, 1] >= 0).all() and (kp[vis, 1] <= W - 1).all()
        ys, xs = kp[:, 0].astype(int), kp[:, 1].astype(int)
        # The torso's joints lie on the drawn body; the others too, up to a face dot
        # rasterised one pixel off at these tiny sizes.
        assert (lab[ys[TORSO_JOINTS], xs[TORSO_JOINTS]] > 0).all(), row["name"]
        on += int((lab[ys[vis], xs[vis]] > 0).sum())
        total += int(vis.sum())
        fg = lab > 0
        assert 0.05 < fg.mean() < 0.8, row["name"]
        assert L.UPPER in lab and L.HAIR in lab
        assert row["view"] == pose_bank.classify_view(src)[0]
        views.append(row["view"])
    assert on >= 0.99 * total
    return views


# ------------------------------------------------------------------ the rule and the views


def test_eligibility_rule():
    base = _array(FRONT)
    assert pose_bank.eligible(base[None])[0]
    for n in pose_bank.REQUIRED:
        assert not pose_bank.eligible(_array(_drop(FRONT, n))[None])[0], n
    five = _array(_drop(FRONT, "Lwri", "Rkne", "Lank"))[None]
    assert not pose_bank.eligible(five)[0]
    assert pose_bank.eligible(five, min_limb_joints=5)[0]
    tilted = base.copy()  # the torso 60 degrees off the vertical
    tilted[[KP["Rhip"], KP["Lhip"]], 1] += 1.8 * 36
    assert not pose_bank.eligible(tilted[None])[0]


def test_views_of_hand_made_rows():
    assert pose_bank.classify_view(_array(FRONT)) == ("front", 0.0)
    assert pose_bank.classify_view(_array(BACK)) == ("back", 180.0)
    assert pose_bank.classify_view(_array(SIDE)) == ("side", -90.0)
    mirrored = {n: (y, 64 - x) for n, (y, x) in SIDE.items()}
    assert pose_bank.classify_view(_array(mirrored)) == ("side", 90.0)
    # Shoulders in front order, but no nose or eyes and an ear: seen from behind.
    assert pose_bank.classify_view(_array(_drop(FRONT, "nose", "Leye", "Reye")))[0] == "back"


def test_load_keeps_exactly_the_eligible_rows(hand_csv):
    bank = pose_bank.load(hand_csv)
    assert bank.names == tuple(ELIGIBLE)
    assert bank.views == ("front", "back", "side", "front")
    assert bank.total_rows == len(ELIGIBLE) + len(INELIGIBLE) + 1
    with pytest.raises(ValueError, match="min_limb_joints"):
        pose_bank.load(hand_csv, min_limb_joints=9)


def test_no_eligible_row_is_an_error(tmp_path):
    path = str(tmp_path / "bad.csv")
    formats.write_annotations(path, {k: _array(v) for k, v in INELIGIBLE.items()})
    with pytest.raises(ValueError, match="none of its 5 rows"):
        synthetic.generate(str(tmp_path / "out"), 2, 2, H, W, 0, poses_from=path)


def test_rows_per_identity_are_distinct_and_seeded(hand_csv):
    bank = pose_bank.load(hand_csv)
    for i in range(6):
        rows = [bank.row(3, i, p) for p in range(len(bank))]
        assert sorted(rows) == list(range(len(bank)))  # a permutation: distinct rows
        assert bank.row(3, i, len(bank)) == rows[0]  # then it starts again
    assert [bank.row(3, i, 0) for i in range(20)] != [bank.row(4, i, 0) for i in range(20)]


# ------------------------------------------------------------------ datasets from hand-made rows


def test_hand_made_dataset(hand_dir, hand_csv):
    source = formats.read_annotations(hand_csv)
    views = _check_dataset(hand_dir, source, set(ELIGIBLE))
    assert set(views) == {"front", "back", "side"}
    # Each identity's images come from distinct rows.
    by_id = {}
    for row in _rows(hand_dir):
        by_id.setdefault(row["identity"], []).append(row["pose_row"])
    assert all(len(set(r)) == K for r in by_id.values())


def test_same_seed_same_bytes(hand_dir, hand_csv, tmp_path):
    again = tmp_path / "again"
    _generate(again, hand_csv, workers=2)
    files = sorted(os.path.relpath(os.path.join(d, f), hand_dir)
                   for d, _, fs in os.walk(hand_dir) for f in fs)  # fmt: skip
    assert len(files) == 2 * N_ID * K + 5
    _, mismatch, errors = filecmp.cmpfiles(hand_dir, str(again), files, shallow=False)
    assert not mismatch and not errors
    other = tmp_path / "other"
    _generate(other, hand_csv, seed=SEED + 1)
    _, mismatch, _ = filecmp.cmpfiles(hand_dir, str(other), ["annotation-train.csv"],
                                      shallow=False)  # fmt: skip
    assert mismatch


def _render(pose, view, yaw, ident=None, h=128, w=64):
    ident = ident or synthetic.identity_of(0, 1)
    kpose = synthetic.KeypointPose(view=view, yaw=yaw, keypoints=_array(pose), source="x",
                                   height_frac=0.9, x_jitter=0.0, y_jitter=0.0, light=1.0)  # fmt: skip
    bg = np.full((h, w, 3), (0, 0, 255), np.uint8)
    return synthetic.render_keypoints(ident, kpose, bg)


def test_front_and_back_views_are_drawn_as_such():
    ident = synthetic.identity_of(0, 1)
    _, lab_f, kp_f = _render(FRONT, "front", 0.0, ident)
    _, lab_b, kp_b = _render(BACK, "back", 180.0, ident)
    for lab, kp in ((lab_f, kp_f), (lab_b, kp_b)):
        head = lab[: int(kp[KP["neck"], 0]) - 2]
        face, hair = (head == L.FACE).sum(), (head == L.HAIR).sum()
        if kp is kp_f:  # the face shows
            assert face > 0.5 * hair
        else:  # the back of the head: hair, and the ears' skin only
            assert face < 0.25 * hair and hair > 0
        # The person's own sides: right arm label at the right wrist, wherever it is drawn.
        for wri, arm in (("Rwri", L.RIGHT_ARM), ("Lwri", L.LEFT_ARM)):
            y, x = kp[KP[wri]].astype(int)
            assert lab[y, x] in (arm, L.UPPER)
    assert kp_f[KP["Rsho"], 1] < kp_f[KP["Lsho"], 1]
    assert kp_b[KP["Rsho"], 1] > kp_b[KP["Lsho"], 1]
    assert (kp_b[FACE] == -1).all() and (kp_b[EARS] >= 0).all()


def test_missing_joints_are_not_drawn():
    """A limb ends at its last present joint; a missing knee between hip and ankle is drawn
    on the straight line but not written."""
    ident = synthetic.identity_of(0, 1)
    full_img, full, kp_full = _render(FRONT, "front", 0.0, ident)
    _, part, kp = _render(_drop(FRONT, "Lwri", "Rkne"), "front", 0.0, ident)
    assert (kp[KP["Lwri"]] == -1).all() and (kp[KP["Rkne"]] == -1).all()
    # Same row otherwise, so the same framing: the left hand is gone, the right leg is there.
    left = (L.LEFT_ARM, L.UPPER)
    y, x = kp_full[KP["Lwri"]].astype(int)
    assert full[y, x] in left and part[y, x] == 0
    y, x = kp[KP["Rank"]].astype(int)
    assert part[y, x] > 0
    mid = ((kp[KP["Rhip"]] + kp[KP["Rank"]]) / 2).astype(int)
    assert part[mid[0], mid[1]] > 0


def test_side_view_far_arm_behind_torso():
    _, lab, kp = _render(SIDE, "side", -90.0)
    assert (kp[[KP["Reye"], KP["Rear"]]] == -1).all()
    assert lab[tuple(kp[KP["Leye"]].astype(int))] == L.FACE
    y, x = kp[KP["Rwri"]].astype(int)
    assert lab[y, x] in (L.RIGHT_ARM, L.UPPER)


def test_cli_poses_from(hand_csv, tmp_path, capsys):
    out = str(tmp_path / "cli")
    summary = synthetic.main(["--out", out, "--identities", "2", "--poses_per_identity", "2",
                              "--height", "32", "--width", "16", "--seed", "1",
                              "--poses_from", hand_csv, "--poses_min_limb_joints", "6"])  # fmt: skip
    assert summary["pose_rows_eligible"] == len(ELIGIBLE)
    assert "4 of 10 rows eligible" in capsys.readouterr().out
    assert {r["pose_row"] for r in _rows(out)} <= set(ELIGIBLE)
    a = synthetic.parse_flags(["prog", "--out", out, "--identities", "2",
                               "--poses_per_identity", "2"])  # fmt: skip
    assert a.poses_from == "" and a.poses_min_limb_joints == pose_bank.MIN_LIMB_JOINTS


def test_builtin_poses_have_no_pose_row_column(tmp_path):
    synthetic.generate(str(tmp_path), 2, 2, H, W, 0)
    assert "pose_row" not in _rows(str(tmp_path))[0]


# ------------------------------------------------------------------ the field's real files


@pytest.mark.parametrize("path", [MARKET, DEEPFASHION], ids=["market", "deepfashion"])
def test_real_annotation_file(path, tmp_path):
    if not os.path.exists(path):
        pytest.skip(f"real annotation file not found: {path}")
    source = formats.read_annotations(path, tolerance=np.inf)
    vis = np.stack([pose_bank.present(v) for v in source.values()])
    limbs = vis[:, [KP[n] for n in pose_bank.LIMB_JOINTS]].sum(1)
    required = vis[:, [KP[n] for n in pose_bank.REQUIRED]].all(1)
    bank = pose_bank.load(path)
    eligible = set(bank.names)
    # The rule on the file: every kept row has the required joints and enough limb joints.
    names = list(source)
    kept = np.array([n in eligible for n in names])
    assert (required[kept]).all() and (limbs[kept] >= pose_bank.MIN_LIMB_JOINTS).all()
    assert kept.sum() < len(names)  # the file has rows with too few joints: left out
    assert "back" in bank.views and "side" in bank.views and "front" in bank.views
    out = str(tmp_path / "data")
    synthetic.generate(out, 8, K, H, W, SEED, test_fraction=0.5, poses_from=path)
    views = _check_dataset(out, source, eligible)
    # Back views appear when the rows have them (about a quarter of the eligible rows).
    more = str(tmp_path / "more")
    synthetic.generate(more, 20, 2, 32, 16, SEED, test_fraction=0.5, poses_from=path)
    views += [r["view"] for r in _rows(more)]
    assert "back" in views and "front" in views
