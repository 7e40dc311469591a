"""spt_tf.apps: converters and edits on hand-made cases, letterboxing, and each CLI
subcommand end to end on the tiny trained model (SavedModel and workdir)."""

import functools
import json
import os

import cv2
import numpy as np
import pytest

from spt_tf import labels
from spt_tf.apps import figures, parsing, resize
from spt_tf.apps import keypoints as kpl
from spt_tf.data import formats
from tests.helpers import app_args

# ------------------------------------------------------------------ hand-made references

# OpenPose's documented orders (doc/02_output.md), written out independently of the module.
OPENPOSE_COCO18 = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip",
                   "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar")  # fmt: skip
OPENPOSE_BODY25 = ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                   "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                   "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")  # fmt: skip


def _kp(**joints):
    """[18, 2] keypoints, -1 except the named joints (name=(y, x))."""
    kp = np.full((18, 2), -1.0, np.float32)
    for name, yx in joints.items():
        kp[kpl.KP[name]] = yx
    return kp


def test_names_and_skeleton_match_geometry():
    from spt_tf import geometry

    assert kpl.KEYPOINT_NAMES == geometry.KEYPOINT_NAMES
    assert figures.SKELETON == geometry.SKELETON


# ------------------------------------------------------------------ keypoints


def test_body25_to_coco18_by_name_with_missing_joints():
    values = []
    conf = {"RKnee": 0.0, "LEye": 0.0, "LWrist": 0.03, "LHeel": 0.0}
    for i, name in enumerate(OPENPOSE_BODY25):
        values += [10.0 + i, 100.0 + i, conf.get(name, 0.9)]  # x, y, c
    kp = kpl.from_openpose_array(values, threshold=0.05)
    assert kp.shape == (18, 2) and kp.dtype == np.float32
    for j, name in enumerate(OPENPOSE_COCO18):
        i = OPENPOSE_BODY25.index(name)
        if name in conf:
            np.testing.assert_array_equal(kp[j], [-1, -1], err_msg=name)
        else:
            np.testing.assert_array_equal(kp[j], [100.0 + i, 10.0 + i], err_msg=name)  # (y, x)
    # The same photo through OpenPose's COCO model gives the same array.
    coco = []
    for name in OPENPOSE_COCO18:
        i = OPENPOSE_BODY25.index(name)
        coco += [10.0 + i, 100.0 + i, conf.get(name, 0.9)]
    np.testing.assert_array_equal(kpl.from_openpose_array(coco, threshold=0.05), kp)


def test_openpose_json_people_and_errors(tmp_path):
    def person(shift, conf=0.8):
        return {"pose_keypoints_2d": [v for i in range(18) for v in (i + shift, 2 * i + shift, conf)]}

    path = tmp_path / "two.json"
    path.write_text(json.dumps({"version": 1.3, "people": [person(0), person(5)]}))
    with pytest.raises(kpl.KeypointError, match="2 people.*--person"):
        kpl.read_openpose_json(path)
    kp = kpl.read_openpose_json(path, person=1)
    np.testing.assert_array_equal(kp[3], [2 * 3 + 5, 3 + 5])
    with pytest.raises(kpl.KeypointError, match="out of range"):
        kpl.read_openpose_json(path, person=2)
    old = tmp_path / "old.json"  # OpenPose < 1.2 key
    old.write_text(json.dumps({"people": [{"pose_keypoints": person(1)["pose_keypoints_2d"]}]}))
    np.testing.assert_array_equal(kpl.read_openpose_json(old)[0], [1, 1])
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"people": []}))
    with pytest.raises(kpl.KeypointError, match="no person found"):
        kpl.read_openpose_json(empty)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": [1, 2, 3] * 15}]}))
    with pytest.raises(kpl.KeypointError, match="18 .* or 25 .* got 45"):
        kpl.read_openpose_json(bad)
    with pytest.raises(formats.FormatError, match="file not found"):
        kpl.read_openpose_json(tmp_path / "nope.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(formats.FormatError, match="cannot read JSON"):
        kpl.read_openpose_json(tmp_path / "junk.json")


def test_heatmap_peaks_with_threshold():
    h, w = 20, 12
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    hm = np.zeros((h, w, 18))
    hm[..., 0] = np.exp(-((yy - 5) ** 2 + (xx - 7) ** 2) / 8.0)  # integer peak
    hm[..., 1] = np.exp(-((yy - 10.5) ** 2 + (xx - 3) ** 2) / 8.0)  # between rows 10 and 11
    hm[..., 2] = 0.05 * np.exp(-((yy - 2) ** 2 + (xx - 2) ** 2) / 8.0)  # below the threshold
    kp = kpl.from_heatmaps(hm, threshold=0.1)
    np.testing.assert_allclose(kp[0], [5, 7], atol=1e-6)
    assert abs(kp[1, 0] - 10.5) < 0.5 and 10.0 <= kp[1, 0] <= 11.0 and abs(kp[1, 1] - 3) < 1e-6
    np.testing.assert_array_equal(kp[2:], -1)
    np.testing.assert_allclose(kpl.from_heatmaps(hm, threshold=0.01)[2], [2, 2], atol=1e-6)


def test_too_few_keypoints_names_the_missing_joints(tmp_path):
    kp = _kp(neck=(5, 5), Rsho=(6, 3), Lsho=(6, 7), Lhip=(12, 6), Rkne=(15, 4))
    with pytest.raises(kpl.KeypointError) as e:
        kpl.check_keypoints(kp, "target pose (b.json)")
    msg = str(e.value)
    assert "b.json" in msg and "missing Rhip" in msg and "torso" in msg and "both hips" in msg
    assert "Lsho" not in msg.split("missing")[1].split(";")[0]  # present joints are not listed as missing
    with pytest.raises(kpl.KeypointError, match="no person found"):
        kpl.check_keypoints(np.full((18, 2), -1.0), "x")
    csv = tmp_path / "a.csv"
    formats.write_annotations(csv, {"a.png": kp})
    with pytest.raises(formats.FormatError, match="no row for image 'b.png'"):
        kpl.from_annotations(csv, "b.png")
    np.testing.assert_array_equal(kpl.from_annotations(csv, "a.png"), kp)


def test_from_annotations_tolerance(tmp_path):
    """A 256x176 resize-rule row (a point 31 px left of the frame) needs the larger tolerance."""
    kp = _kp(neck=(40, 90), Rsho=(45, 70), Lsho=(45, 110), Rhip=(120, 75), Lhip=(120, 105), Relb=(80, -31))
    ok = _kp(neck=(40, 90), Rsho=(45, 70), Lsho=(45, 110), Rhip=(120, 75), Lhip=(120, 105))
    csv = tmp_path / "fasion-resize-annotation-test.csv"
    formats.write_annotations(csv, {"ok.jpg": ok, "wide.jpg": kp})
    for name in ("wide.jpg", "ok.jpg"):  # the reader refuses the whole file at the default
        with pytest.raises(formats.FormatError) as e:
            kpl.from_annotations(csv, name)
        assert (e.value.path, e.value.row, e.value.field) == (str(csv), 3, "keypoints_x")
        assert "coordinate -31" in str(e.value) and "DEEPFASHION_176_TOLERANCE" in str(e.value)
    got = kpl.from_annotations(csv, "wide.jpg", tolerance=formats.DEEPFASHION_176_TOLERANCE)
    np.testing.assert_array_equal(got, kp)  # kept as it is, not clipped
    np.testing.assert_array_equal(kpl.from_annotations(csv, "ok.jpg", tolerance=31), ok)
    with pytest.raises(formats.FormatError, match="row 3, field 'keypoints_x'"):
        kpl.from_annotations(csv, "ok.jpg", tolerance=30)


# ------------------------------------------------------------------ resize


def test_letterbox_sizes_and_keypoint_round_trip():
    lb = resize.fit((50, 20), (32, 16))  # scale min(32/50, 16/20) = 0.64 -> 32 x 12.8 -> 32 x 13
    assert (lb.new_h, lb.new_w, lb.top, lb.left) == (32, 13, 0, 1)
    kp = _kp(nose=(10, 4), Rsho=(49, 19), Lank=(0, 0))
    m = lb.keypoints(kp)
    np.testing.assert_allclose(m[0], [10 * 32 / 50, 4 * 13 / 20 + 1], rtol=1e-6)
    np.testing.assert_array_equal(m[1], [-1, -1])  # missing stays missing
    np.testing.assert_allclose(lb.undo_keypoints(m), kp, atol=1e-5)
    wide = resize.fit((10, 40), (32, 16))  # scale 0.4 -> 4 x 16, padded top / bottom
    assert (wide.new_h, wide.new_w, wide.top, wide.left) == (4, 16, 14, 0)
    np.testing.assert_allclose(wide.undo_keypoints(wide.keypoints(kp[:1] * 0 + [[9, 39]])), [[9, 39]], atol=1e-5)
    same = resize.fit((64, 32), (32, 16))  # the dataset's aspect: plain resize, as the pipeline
    assert not same.padded
    np.testing.assert_allclose(same.keypoints(kp)[0], kp[0] / 2)


def test_letterbox_images_and_labels_round_trip():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 10, (32, 12)).astype(np.uint8)
    lab = np.repeat(np.repeat(blocks, 2, 0), 2, 1)  # [64, 24] of 2x2 blocks
    lb = resize.fit(lab.shape, (32, 16))
    assert (lb.new_h, lb.new_w, lb.top, lb.left) == (32, 12, 0, 2)
    m = lb.labels(lab)
    assert m.shape == (32, 16)
    np.testing.assert_array_equal(m[:, :2], 0)  # padding is background
    np.testing.assert_array_equal(m[:, 2:14], blocks)
    np.testing.assert_array_equal(lb.undo_labels(m), lab)
    img = np.repeat(lab[..., None] * 20, 3, 2)
    mi = lb.image(img)
    np.testing.assert_array_equal(mi[:, 0], mi[:, 2])  # edge padding repeats the border column
    np.testing.assert_array_equal(mi[:, 2:14, 0], blocks * 20)
    out = np.full((32, 16, 3), 255, np.uint8)
    out[:, 2:14] = 7  # the model's output: content 7, padding 255
    un = lb.undo_image(out)
    assert un.shape == (64, 24, 3)
    np.testing.assert_array_equal(un, 7)  # padding cropped, nothing of it left
    with pytest.raises(ValueError, match="expected"):
        lb.undo_image(un)


# ------------------------------------------------------------------ parsing

# A T-pose person on a 40 x 40 map, facing the viewer (its right arm on the image's left).
T_KP = _kp(nose=(3, 20), neck=(8, 20), Rsho=(8, 14), Relb=(8, 8), Rwri=(8, 3), Lsho=(8, 26), Lelb=(8, 32),
           Lwri=(8, 37), Rhip=(24, 16), Lhip=(24, 24), Rkne=(31, 16), Lkne=(31, 24), Rank=(38, 16),
           Lank=(38, 24))  # fmt: skip


def _t_map(lower="pants"):
    m = np.zeros((40, 40), np.uint8)
    m[0:6, 17:24] = labels.FACE
    m[0:2, 17:24] = labels.HAIR
    m[8:25, 14:27] = labels.UPPER  # torso (cols 14..26)
    m[6:11, 9:13] = labels.UPPER  # right short sleeve, cols 9..12 (col 13 left empty)
    m[6:11, 28:32] = labels.UPPER  # left short sleeve, cols 28..31
    m[6:11, 0:9] = labels.RIGHT_ARM  # forearm skin and hand (past the wrist at col 3)
    m[6:11, 32:40] = labels.LEFT_ARM
    if lower == "pants":
        m[25:28, 15:26] = labels.PANTS  # pelvis
        m[28:38, 15:18] = labels.PANTS  # right leg
        m[28:38, 23:26] = labels.PANTS
    else:
        m[25:32, 10:31] = labels.SKIRT  # flared, to the knees
        m[32:38, 15:18] = labels.RIGHT_LEG
        m[32:38, 23:26] = labels.LEFT_LEG
    m[38:40, 15:18] = labels.RIGHT_LEG  # feet
    m[38:40, 23:26] = labels.LEFT_LEG
    return m


def test_sleeves_change_exactly_the_arm_labels():
    m = _t_map()
    none = parsing.set_sleeves(m, T_KP, "none")
    want = m.copy()
    want[6:11, 9:13] = labels.RIGHT_ARM
    want[6:11, 28:32] = labels.LEFT_ARM
    np.testing.assert_array_equal(none, want)
    # Long: arm skin before the wrist becomes sleeve (right: cols 4..8, left: 32..36); wrists and hands stay.
    long = parsing.set_sleeves(m, T_KP, "long")
    want = m.copy()
    want[6:11, 4:9] = labels.UPPER
    want[6:11, 32:37] = labels.UPPER
    np.testing.assert_array_equal(long, want)
    # Short: the sleeve ends at mid upper arm (s = 0.5: right col <= 11, left col >= 29).
    short = parsing.set_sleeves(long, T_KP, "short")
    want = m.copy()
    want[6:11, 9:12] = labels.RIGHT_ARM
    want[6:11, 29:32] = labels.LEFT_ARM
    np.testing.assert_array_equal(short, want)
    with pytest.raises(kpl.KeypointError, match="missing keypoints Relb"):
        parsing.set_sleeves(m, np.where(np.arange(18)[:, None] == kpl.KP["Relb"], -1, T_KP), "none")
    with pytest.raises(ValueError, match="sleeves must be one of"):
        parsing.set_sleeves(m, T_KP, "medium")


def test_pants_to_skirt_and_back():
    m = _t_map("pants")
    skirt = parsing.set_lower(m, T_KP, "skirt")
    changed = skirt != m
    assert set(np.unique(m[changed])) <= {labels.PANTS, labels.BACKGROUND, labels.LEFT_LEG, labels.RIGHT_LEG}
    assert not (skirt == labels.PANTS).any()
    assert skirt[28, 20] == labels.SKIRT  # between the thighs (was background)
    assert skirt[26, 20] == labels.SKIRT and skirt[30, 16] == labels.SKIRT
    assert skirt[35, 16] == labels.RIGHT_LEG and skirt[35, 24] == labels.LEFT_LEG  # below the hem: skin
    assert skirt[39, 16] == labels.RIGHT_LEG  # feet as they were
    assert skirt[30, 2] == labels.BACKGROUND and skirt[36, 20] == labels.BACKGROUND  # far / below the hem
    keep = ~np.isin(m, [labels.PANTS, labels.BACKGROUND, labels.LEFT_LEG, labels.RIGHT_LEG])
    np.testing.assert_array_equal(skirt[keep], m[keep])

    s = _t_map("skirt")
    pants = parsing.set_lower(s, T_KP, "pants")
    changed = pants != s
    assert set(np.unique(s[changed])) <= {labels.SKIRT, labels.LEFT_LEG, labels.RIGHT_LEG}
    assert not (pants == labels.SKIRT).any()
    assert pants[25, 20] == labels.PANTS  # pelvis
    assert pants[29, 16] == labels.PANTS and pants[29, 24] == labels.PANTS  # thighs
    assert pants[30, 20] == labels.BACKGROUND and pants[28, 11] == labels.BACKGROUND  # crotch gap, flare
    assert pants[34, 16] == labels.PANTS and pants[34, 24] == labels.PANTS  # bare shins
    assert pants[39, 16] == labels.RIGHT_LEG and pants[39, 24] == labels.LEFT_LEG  # feet stay
    with pytest.raises(parsing.EditError, match="no skirt pixels"):
        parsing.set_lower(m, T_KP, "pants")
    no_knees = T_KP.copy()
    no_knees[[kpl.KP["Rkne"], kpl.KP["Lkne"]]] = -1
    with pytest.raises(kpl.KeypointError, match="missing keypoints Rkne, Lkne"):
        parsing.set_lower(m, no_knees, "skirt")


def test_lip_conversion_and_painted_labels(tmp_path):
    lip = np.zeros((40, 40), np.uint8)
    lip[0:2, 17:24] = labels.LIP_LABELS.index("hat")
    lip[8:25, 14:27] = labels.LIP_LABELS.index("dress")
    lip[6:11, 0:3] = labels.LIP_LABELS.index("glove")  # nearer the right wrist (8, 3)
    lip[38:40, 23:26] = labels.LIP_LABELS.index("left_shoe")
    formats.write_parsing(tmp_path / "lip.png", lip)
    spt = parsing.read_lip(tmp_path / "lip.png", (40, 40), T_KP)
    want = np.zeros((40, 40), np.uint8)
    want[0:2, 17:24] = labels.HAIR
    want[8:25, 14:27] = labels.UPPER
    want[6:11, 0:3] = labels.RIGHT_ARM
    want[38:40, 23:26] = labels.LEFT_LEG
    np.testing.assert_array_equal(spt, want)
    with pytest.raises(formats.FormatError, match=r"differs from the image photo.png \(30, 40\)"):
        parsing.read_lip(tmp_path / "lip.png", (30, 40), T_KP, "photo.png")

    m = _t_map()
    formats.write_image(tmp_path / "painted.png", labels.colorize(m))  # a colour PNG painted with the palette
    np.testing.assert_array_equal(parsing.read_label_edit(tmp_path / "painted.png", m.shape), m)
    formats.write_parsing(tmp_path / "grey.png", m)
    np.testing.assert_array_equal(parsing.read_label_edit(tmp_path / "grey.png", m.shape), m)
    rgb = labels.colorize(m)
    rgb[5, 6] = (12, 200, 77)
    formats.write_image(tmp_path / "off.png", rgb)
    with pytest.raises(formats.FormatError, match="1 pixels match no label colour.*y=5, x=6"):
        parsing.read_label_edit(tmp_path / "off.png", m.shape)
    with pytest.raises(formats.FormatError, match="differs from the image"):
        parsing.read_label_edit(tmp_path / "painted.png", (40, 41))


def test_figures_draw_panels():
    canvas = figures.draw_skeleton(T_KP, shape=(40, 40), thickness=1)
    assert canvas[8, 10].any() and canvas[16, 18].any()  # on Rsho-Relb and neck-Rhip
    assert not canvas[30, 2].any()
    fig = figures.side_by_side([[("a", canvas), ("b", labels.colorize(_t_map()))], [("c", canvas)]], height=80)
    assert fig.dtype == np.uint8 and fig.shape[0] == 2 * (80 + figures.CAPTION_HEIGHT) + 4


# ------------------------------------------------------------------ end to end on the tiny trained model


@functools.lru_cache(maxsize=None)
def _saved_model(path):
    from spt_tf import predictor

    return predictor.from_saved_model(path)


@functools.lru_cache(maxsize=None)
def _workdir(path):
    from spt_tf import predictor

    return predictor.from_workdir(path)  # the run's WORKDIR/config.json


@pytest.fixture(autouse=True)
def _load_each_model_once(monkeypatch):
    """The CLI loads its model on every call; the tests share one load per model (runtime)."""
    from spt_tf import predictor

    real = predictor.load

    def load(model=None, workdir=None, config=None):
        if config is not None or bool(model) == bool(workdir):
            return real(model, workdir, config)
        if model:
            return _saved_model(predictor.resolve_saved_model(model))
        return _workdir(workdir)

    monkeypatch.setattr(predictor, "load", load)


def _test_files(data):
    csv = os.path.join(data, "annotation-test.csv")
    names = list(formats.read_annotations(csv))
    return csv, [(os.path.join(data, "test", n), os.path.join(data, "parsing", n), n) for n in names]


def test_pose_transfer_saved_model_and_workdir(trained, tmp_path):
    from spt_tf.apps import __main__ as cli

    csv, people = _test_files(trained["data"])
    (img_a, par_a, _), (img_b, _, name_b) = people[0], people[1]
    base = ["pose-transfer", "--image", img_a, "--parsing", par_a, "--keypoints_csv", csv, "--target_image", img_b]
    res = cli.run(app_args(*base, "--model", os.path.dirname(trained["export"]), "--out", str(tmp_path / "sm")))
    photo = formats.read_image(img_b)
    assert res["image"].shape == photo.shape and res["parsing"].shape == photo.shape[:2]
    assert res["parsing"].max() < labels.NUM_LABELS
    for key in ("output", "output_parsing", "output_parsing_color", "figure"):
        assert os.path.isfile(res["paths"][key]), key
    np.testing.assert_array_equal(formats.read_image(res["paths"]["output"]), res["image"])
    np.testing.assert_array_equal(formats.read_parsing(res["paths"]["output_parsing"]), res["parsing"])
    # Reference: the model on the photos resized to 32 x 16 by hand, its outputs resized back.
    table = formats.read_annotations(csv)
    half = lambda kp: np.where(kp < 0, -1, kp / 2)[None]  # noqa: E731
    ref = _saved_model(trained["export"]).pose_transfer(
        cv2.resize(formats.read_image(img_a), (16, 32), interpolation=cv2.INTER_AREA)[None],
        cv2.resize(formats.read_parsing(par_a), (16, 32), interpolation=cv2.INTER_NEAREST)[None],
        half(table[people[0][2]]), half(table[name_b]))  # fmt: skip
    np.testing.assert_array_equal(res["image"], cv2.resize(ref["image"][0], (32, 64)))
    np.testing.assert_array_equal(res["parsing"], cv2.resize(ref["parsing"][0], (32, 64),
                                                             interpolation=cv2.INTER_NEAREST))  # fmt: skip
    # The workdir path: same command, same shapes and files.
    wd = cli.run(app_args(*base, "--workdir", trained["workdir"], "--out", str(tmp_path / "wd")))  # WORKDIR/config.json
    assert wd["image"].shape == photo.shape and wd["parsing"].max() < labels.NUM_LABELS
    assert os.path.isfile(wd["paths"]["figure"])


def test_cli_keypoint_tolerance_reads_points_outside_the_photo(trained, tmp_path):
    """Annotation rows with points outside the photo (as the field's 256x176 DeepFashion files have)
    are refused by default, naming the file, and read with --keypoint_tolerance."""
    from spt_tf.apps import __main__ as cli

    csv, people = _test_files(trained["data"])
    (img_a, par_a, name_a), (img_b, _, name_b) = people[0], people[1]
    table = formats.read_annotations(csv)
    shifted = {name_a: table[name_a].copy(), name_b: table[name_b].copy()}
    present = np.flatnonzero(shifted[name_a][:, 1] >= 0)
    shifted[name_a][present[0], 1] = -31.0  # 31 px left of the photo
    out_csv = str(tmp_path / "shifted.csv")
    formats.write_annotations(out_csv, shifted)
    base = ["pose-transfer", "--model", trained["export"], "--image", img_a, "--parsing", par_a,
            "--keypoints_csv", out_csv, "--target_image", img_b]  # fmt: skip
    with pytest.raises(formats.FormatError, match=r"shifted.csv, row \d+, field .keypoints_x."):
        cli.run(app_args(*base, "--out", str(tmp_path / "refused")))
    res = cli.run(app_args(*base, "--keypoint_tolerance", "40", "--out", str(tmp_path / "read")))
    assert res["image"].shape == formats.read_image(img_b).shape


def test_workdir_and_saved_model_give_the_same_result(trained):
    """The workdir backend restores the exported weights: same outputs as the SavedModel."""
    be_wd = _workdir(trained["workdir"])
    be_sm = _saved_model(trained["export"])
    assert be_wd.kind == "checkpoint" and be_wd.size == be_sm.size == (32, 16)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 32, 16, 3)).astype(np.uint8)
    par = rng.integers(0, 10, (2, 32, 16)).astype(np.uint8)
    table = formats.read_annotations(os.path.join(trained["data"], "annotation-test.csv"))
    kp = np.stack([np.where(v < 0, -1, v / 2) for v in list(table.values())[:2]]).astype(np.float32)
    a, b = be_wd.pose_transfer(img, par, kp, kp[::-1]), be_sm.pose_transfer(img, par, kp, kp[::-1])
    assert np.abs(a["image"].astype(int) - b["image"]).max() <= 1
    assert (a["parsing"] == b["parsing"]).mean() > 0.99


def test_lip_parsing_through_the_app_and_detection(trained, tmp_path):
    from spt_tf import predictor
    from spt_tf.apps import __main__ as cli

    csv, people = _test_files(trained["data"])
    (img_a, par_a, _), (_, _, name_b) = people[0], people[2]
    # SPT -> LIP by hand (one LIP label per SPT label); the app must convert it back.
    to_lip = [labels.LIP_LABELS.index(n) for n in labels.SPT_LABELS]
    spt = formats.read_parsing(par_a)
    formats.write_parsing(tmp_path / "lip.png", np.asarray(to_lip, np.uint8)[spt])
    model = ["--model", trained["export"], "--image", img_a, "--keypoints_csv", csv, "--target_name", name_b]
    a = cli.run(app_args("pose-transfer", *model, "--parsing", par_a, "--out", str(tmp_path / "spt")))
    b = cli.run(app_args("pose-transfer", *model, "--lip_parsing", str(tmp_path / "lip.png"),
                      "--out", str(tmp_path / "lip")))  # fmt: skip
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["parsing"], b["parsing"])
    # P from the workdir: with threshold 0 every channel has a peak (the tiny P is untrained).
    be = _workdir(trained["workdir"])
    assert be.can_detect
    from spt_tf.apps import commands

    photo = formats.read_image(img_a)
    kp = commands.detect_keypoints(be, photo, threshold=0.0)
    assert kp.shape == (18, 2) and (kp >= 0).all() and (kp[:, 0] <= 63).all() and (kp[:, 1] <= 31).all()
    np.testing.assert_array_equal(commands.detect_keypoints(be, photo, threshold=1.01), -1)  # no peak
    with pytest.raises(kpl.KeypointError, match="no person found"):
        commands.read_keypoints(commands.KeypointSource(detect=True, detect_threshold=1.01), photo, "src", be)
    with pytest.raises(predictor.ModelError, match="only a training workdir"):
        _saved_model(trained["export"]).detect_heatmaps(np.zeros((1, 32, 16, 3), np.uint8))
    # The CLI with P for both people (no CSV, no JSON).
    res = cli.run(app_args("pose-transfer", "--workdir", trained["workdir"], "--detect", "--detect_threshold", "0",
                        "--image", img_a, "--parsing", par_a, "--target_image", people[2][0],
                        "--out", str(tmp_path / "detect")))  # fmt: skip
    assert res["image"].shape == (64, 32, 3) and os.path.isfile(res["paths"]["figure"])


def test_texture_transfer_on_photos_of_other_sizes(trained, tmp_path):
    from spt_tf.apps import __main__ as cli

    csv, people = _test_files(trained["data"])
    (img_a, par_a, name_a), (img_b, par_b, name_b) = people[0], people[3]
    # Person B as a wider 64 x 48 photo: padded by 8 columns each side, keypoints shifted.
    photo, lab = formats.read_image(img_b), formats.read_parsing(par_b)
    formats.write_image(tmp_path / "b.png", cv2.copyMakeBorder(photo, 0, 0, 8, 8, cv2.BORDER_REPLICATE))
    formats.write_parsing(tmp_path / "b_par.png", cv2.copyMakeBorder(lab, 0, 0, 8, 8, cv2.BORDER_CONSTANT, value=0))
    kp_b = formats.read_annotations(csv)[name_b]
    kp_b = np.where(kp_b < 0, -1, kp_b + [0, 8])
    xy = np.stack([kp_b[:, 1], kp_b[:, 0], (kp_b[:, 0] >= 0).astype(float)], 1).reshape(-1)
    (tmp_path / "b.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": xy.tolist()}]}))
    res = cli.run(app_args("texture-transfer", "--model", trained["export"], "--image", img_a, "--parsing", par_a,
                        "--keypoints_csv", csv, "--target_image", str(tmp_path / "b.png"),
                        "--target_parsing", str(tmp_path / "b_par.png"),
                        "--target_openpose_json", str(tmp_path / "b.json"), "--out", str(tmp_path / "tt")))  # fmt: skip
    assert res["a_on_b"].shape == (64, 48, 3) and res["b_on_a"].shape == (64, 32, 3)
    for key in ("a_on_b", "b_on_a", "figure"):
        assert os.path.isfile(res["paths"][key])
    # Reference: the render signature, batch [A on B, B on A], on the letterboxed inputs.
    be = _saved_model(trained["export"])
    lb_a, lb_b = resize.fit((64, 32), (32, 16)), resize.fit((64, 48), (32, 16))
    assert lb_b.padded and (lb_b.new_h, lb_b.new_w) == (21, 16)
    kp_a = formats.read_annotations(csv)[name_a]
    img_b, par_b = formats.read_image(tmp_path / "b.png"), formats.read_parsing(tmp_path / "b_par.png")
    ref = be.render(
        np.stack([lb_a.image(formats.read_image(img_a)), lb_b.image(img_b)]),
        np.stack([lb_a.labels(formats.read_parsing(par_a)), lb_b.labels(par_b)]),
        np.stack([lb_a.keypoints(kp_a), lb_b.keypoints(kp_b)]),
        np.stack([lb_b.keypoints(kp_b), lb_a.keypoints(kp_a)]),
        np.stack([lb_b.labels(par_b), lb_a.labels(formats.read_parsing(par_a))]),
    )
    np.testing.assert_array_equal(res["a_on_b"], lb_b.undo_image(ref[0]))
    np.testing.assert_array_equal(res["b_on_a"], lb_a.undo_image(ref[1]))


def test_edit_sleeves_via_cli_and_errors(trained, tmp_path, capsys):
    from spt_tf.apps import __main__ as cli

    csv, people = _test_files(trained["data"])
    table = formats.read_annotations(csv)
    # A person whose upper clothes reach along an arm, so the sleeve edit changes something.
    img, par, name = next(p for p in people if (parsing.set_sleeves(formats.read_parsing(p[1]), table[p[2]], "none")
                                                != formats.read_parsing(p[1])).any())  # fmt: skip
    # The person and the model of both edits below.
    person = ["--model", trained["export"], "--image", img, "--parsing", par, "--keypoints_csv", csv]
    res = cli.run(app_args("edit", *person, "--sleeves", "none", "--out", str(tmp_path / "ed")))
    orig = formats.read_parsing(par)
    edited = formats.read_parsing(res["paths"]["edited_parsing"])
    changed = edited != orig
    assert res["changed_pixels"] == changed.sum() > 0
    assert set(np.unique(orig[changed])) == {labels.UPPER}
    assert set(np.unique(edited[changed])) <= {labels.LEFT_ARM, labels.RIGHT_ARM}
    assert res["image"].shape == res["reconstruction"].shape == (64, 32, 3)
    for key in ("output", "reconstruction", "edited_parsing_color", "figure"):
        assert os.path.isfile(res["paths"][key])

    # A painted label map (palette colours): rendered as painted.
    painted = orig.copy()
    painted[orig == labels.UPPER] = labels.SKIRT
    formats.write_image(tmp_path / "painted.png", labels.colorize(painted))
    res = cli.run(
        app_args("edit", *person, "--labels", str(tmp_path / "painted.png"), "--out", str(tmp_path / "painted"))
    )
    np.testing.assert_array_equal(res["edited_parsing"], painted)
    assert not np.array_equal(res["image"], res["reconstruction"])

    # Errors: one line naming the problem, exit status 2.
    bad = tmp_path / "nohips.json"
    kp = table[name].copy()
    kp[[kpl.KP["Rhip"], kpl.KP["Lhip"]]] = -1
    xy = np.stack([kp[:, 1], kp[:, 0], (kp[:, 0] >= 0).astype(float)], 1).reshape(-1)
    bad.write_text(json.dumps({"people": [{"pose_keypoints_2d": xy.tolist()}]}))
    base = ["edit", "--model", trained["export"], "--image", img, "--sleeves", "long", "--out", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as e:
        cli.main(app_args(*base, "--parsing", par, "--openpose_json", str(bad)))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing Rhip, Lhip" in err and "torso" in err
    small = tmp_path / "small.png"
    formats.write_parsing(small, orig[:32])
    with pytest.raises(SystemExit):
        cli.main(app_args(*base, "--parsing", str(small), "--keypoints_csv", csv))
    assert "parsing size (32, 32) differs from the image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(app_args(*base, "--parsing", par, "--keypoints_csv", csv, "--name", "nobody.png"))
    assert "no row for image 'nobody.png'" in capsys.readouterr().err
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SystemExit):
        cli.main(app_args("edit", "--model", trained["export"], "--image", str(tmp_path / "broken.png"),
                       "--parsing", par, "--keypoints_csv", csv, "--name", name, "--sleeves", "none",
                       "--out", str(tmp_path / "x")))  # fmt: skip
    assert "cannot decode the image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(app_args(*base, "--parsing", par, "--detect"))
    assert "only a training workdir holds" in capsys.readouterr().err


def test_model_resolution_errors(trained, tmp_path):
    from configs import testing
    from spt_tf import predictor

    assert predictor.resolve_saved_model(os.path.dirname(trained["export"])) == trained["export"]
    with pytest.raises(predictor.ModelError, match="no saved_model.pb"):
        predictor.resolve_saved_model(str(tmp_path))
    with pytest.raises(predictor.ModelError, match="exactly one of --model"):
        predictor.load(trained["export"], trained["workdir"])
    with pytest.raises(predictor.ModelError, match="no checkpoint of stage"):
        os.makedirs(tmp_path / "empty_wd")
        predictor.from_workdir(str(tmp_path / "empty_wd"), testing.__file__)


def test_cli_main_takes_an_argv_list_and_app_run_parses(tmp_path, capsys):
    """``main`` from code with the arguments (no program name), as ``app.run`` would run it
    after ``parse``; a missing photo fails before any model loads, naming the file."""
    from spt_tf.apps import __main__ as cli

    missing = str(tmp_path / "missing.png")
    argv = ["edit", "--model", str(tmp_path), "--image", missing, "--sleeves", "none", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{missing}: file not found" in err
    args = cli.parse(["python -m spt_tf.apps", *argv])
    assert (args.command, args.image, args.sleeves) == ("edit", missing, "none")
