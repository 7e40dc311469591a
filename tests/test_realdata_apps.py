"""Pose transfer on real photos end to end: ``python -m spt_tf.apps pose-transfer`` on the SPT
authors' demo set (6 DeepFashion photos, 256x256, with their keypoint CSV and parsing maps).

The set is research-only data read from ``../shared/realdata/spt_demo`` beside the
repository (the tests skip, naming the path, without it); everything the tests make from
it goes to pytest's tmp_path. The model is the suite's tiny 2-step one (32x16), so the
pictures are noise: what is checked is the plumbing (the 256x256 photos letterboxed into
32x16 and back, int8 and int64 label maps, keypoints looked up by image name, the files
written), the workdir and its SavedModel giving the same bytes, and the pose detector P
(``--detect``) and the human parser (``--parse``) standing in for the keypoints and maps.
"""

import functools
import itertools
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from spt_tf import labels
from spt_tf.apps import keypoints as kpl
from spt_tf.data import formats
from tests.helpers import app_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.normpath(os.path.join(REPO, "..", "shared", "realdata", "spt_demo"))
NAMES = ("1_A", "1_B", "2_A", "2_B", "3_A", "3_B")
ALL_PAIRS = list(itertools.permutations(NAMES, 2))  # the 30 ordered pairs of different photos
AB_PAIRS = [(f"{i}_A", f"{i}_B") for i in (1, 2, 3)] + [(f"{i}_B", f"{i}_A") for i in (1, 2, 3)]
SIZE = (256, 256)
MODEL = (32, 16)  # configs/testing.py
# The 256x256 photos in the 32x16 frame: scale 1/16, content 16x16, 8 rows of padding above and below.
CONTENT, TOP = 16, 8


@pytest.fixture(scope="session")
def demo():
    """Paths of the demo set; skips (naming the missing path) when it is not there."""
    paths = {"csv": os.path.join(DEMO, "keypoints.csv")}
    for n in NAMES:
        paths[n] = os.path.join(DEMO, "imgs", f"{n}.jpg")
        paths[n + "_parsing"] = os.path.join(DEMO, "parsing", f"{n}.npy")
    for path in [DEMO, *paths.values()]:
        if not os.path.exists(path):
            pytest.skip(f"real data not found: {path} (the SPT demo set, see ../shared/realdata/README.md)")
    return paths


# ------------------------------------------------------------------ models, loaded once


@functools.lru_cache(maxsize=None)
def _saved_model(path):
    from spt_tf import predictor

    return predictor.from_saved_model(path)


@functools.lru_cache(maxsize=None)
def _workdir(path):
    from spt_tf import predictor

    return predictor.from_workdir(path)


# The predictor's own loaders, kept by the fixture below before it replaces them.
_REAL = {}


@functools.lru_cache(maxsize=None)
def _parser(path):
    return _REAL["load_parser"](path)


@pytest.fixture(autouse=True)
def _load_each_model_once(monkeypatch):
    """The CLI loads its models on every call; the tests share one load per model (runtime)."""
    from spt_tf import predictor

    real_load, real_parser = predictor.load, predictor.load_parser
    _REAL.setdefault("load_parser", real_parser)

    def load(model=None, workdir=None, config=None):
        if config is not None or bool(model) == bool(workdir):
            return real_load(model, workdir, config)
        return _saved_model(predictor.resolve_saved_model(model)) if model else _workdir(workdir)

    def load_parser(workdir, config=None):
        return _parser(workdir) if config is None else real_parser(workdir, config)

    monkeypatch.setattr(predictor, "load", load)
    monkeypatch.setattr(predictor, "load_parser", load_parser)


def _pose_transfer(demo, a, b, *model, out, parsing=None, extra=()):
    """cli.run of ``pose-transfer`` A -> B with the CSV keypoints (by the photos' names)."""
    from spt_tf.apps import __main__ as cli

    return cli.run(app_args("pose-transfer", *model, "--image", demo[a], "--parsing", parsing or demo[a + "_parsing"],
                         "--keypoints_csv", demo["csv"], "--target_image", demo[b], "--out", str(out),
                         *extra))  # fmt: skip


def _csv_rows(path):
    """The keypoint CSV parsed by hand (``name: [18 y]: [18 x]``), independently of spt_tf."""
    rows = {}
    with open(path) as f:
        assert f.readline().strip() == "name:keypoints_y:keypoints_x"
        for line in f:
            name, ys, xs = re.fullmatch(r"(\S+): (\[.*\]): (\[.*\])", line.strip()).groups()
            rows[name] = np.stack([json.loads(ys), json.loads(xs)], axis=1).astype(np.float32)
    return rows


def _to_model_frame(image, parsing, kp):
    """The letterbox of docs/applications.md by hand for a 256x256 photo in the 32x16 frame:
    scaled to 16x16 (INTER_AREA), 8 rows above and below, the image's border rows repeated,
    the parsing's padding background; keypoints y / 16 + 8, x / 16."""
    img = cv2.resize(image, (CONTENT, CONTENT), interpolation=cv2.INTER_AREA)
    img = np.concatenate([np.repeat(img[:1], TOP, 0), img, np.repeat(img[-1:], TOP, 0)])
    par = cv2.resize(parsing, (CONTENT, CONTENT), interpolation=cv2.INTER_NEAREST)
    par = np.pad(par, ((TOP, TOP), (0, 0)))
    k = np.where(kp < 0, -1, kp / 16 + [TOP, 0]).astype(np.float32)
    return img, par, k


def _from_model_frame(image):
    """The padding rows cropped, the 16x16 content enlarged (bilinear) to the photo's 256x256."""
    return cv2.resize(image[TOP : TOP + CONTENT], SIZE[::-1], interpolation=cv2.INTER_LINEAR)


def _arm_sides(kp, parsing):
    """For each arm label, the shoulder keypoint its pixels' mean column lies nearer."""
    out = {}
    for lab in (labels.LEFT_ARM, labels.RIGHT_ARM):
        xs = np.nonzero(parsing == lab)[1]
        if len(xs):
            d = {s: abs(xs.mean() - kp[kpl.KP[s], 1]) for s in ("Lsho", "Rsho")}
            out[lab] = min(d, key=d.get)
    return out


# ------------------------------------------------------------------ the set


def test_the_demo_set_is_as_described(demo):
    rows = _csv_rows(demo["csv"])
    assert set(rows) == {n + ".jpg" for n in NAMES}
    for n in NAMES:
        assert formats.read_image(demo[n]).shape == SIZE + (3,)
        raw = np.load(demo[n + "_parsing"])
        assert raw.shape == SIZE and raw.dtype == (np.int64 if n in ("1_B", "3_B") else np.int8), n
        assert 0 <= raw.min() and raw.max() < labels.NUM_LABELS
        kpl.check_keypoints(rows[n + ".jpg"], n)  # every photo has its torso
    # 3_B is a back view (no face keypoints, the right shoulder on the image's right): its
    # map's left-arm label lies on the keypoints' right arm; on the front view 1_A they agree.
    back, front = rows["3_B.jpg"], rows["1_A.jpg"]
    assert (back[kpl.KP["nose"]] == -1).all() and back[kpl.KP["Rsho"], 1] > back[kpl.KP["Lsho"], 1]
    assert _arm_sides(back, np.load(demo["3_B_parsing"]))[labels.LEFT_ARM] == "Rsho"
    assert _arm_sides(front, np.load(demo["1_A_parsing"])) == {labels.LEFT_ARM: "Lsho", labels.RIGHT_ARM: "Rsho"}


# ------------------------------------------------------------------ given keypoints and maps


def test_every_pair_from_the_workdir_and_the_saved_model(demo, trained, tmp_path):
    """All 30 ordered pairs, each through the CLI from the workdir and from its SavedModel:
    256x256 outputs equal to the model run by hand (letterbox by hand, one batch of 30) and
    the same bytes from both."""
    rows = _csv_rows(demo["csv"])
    photos = {n: formats.read_image(demo[n]) for n in NAMES}
    framed = {n: _to_model_frame(photos[n], np.load(demo[n + "_parsing"]).astype(np.uint8), rows[n + ".jpg"])
              for n in NAMES}  # fmt: skip
    sm = _saved_model(trained["export"])
    assert sm.size == MODEL
    ref = sm.pose_transfer(
        np.stack([framed[a][0] for a, _ in ALL_PAIRS]),
        np.stack([framed[a][1] for a, _ in ALL_PAIRS]),
        np.stack([framed[a][2] for a, _ in ALL_PAIRS]),
        np.stack([framed[b][2] for _, b in ALL_PAIRS]),
    )
    backends = {"sm": ("--model", os.path.dirname(trained["export"])), "wd": ("--workdir", trained["workdir"])}
    for i, (a, b) in enumerate(ALL_PAIRS):
        res = {k: _pose_transfer(demo, a, b, *m, out=tmp_path / k / f"{a}_{b}") for k, m in backends.items()}
        for k, r in res.items():
            what = f"{k} {a}->{b}"
            written = formats.read_image(r["paths"]["output"])
            assert written.shape == SIZE + (3,) and written.dtype == np.uint8, what
            np.testing.assert_array_equal(written, r["image"], err_msg=what)
            # The content of the model's output only: its padding rows do not reach the photo.
            np.testing.assert_array_equal(r["image"], _from_model_frame(ref["image"][i]), err_msg=what)
            par = formats.read_parsing(r["paths"]["output_parsing"])
            assert par.shape == SIZE and par.max() < labels.NUM_LABELS, what
            np.testing.assert_array_equal(par, cv2.resize(ref["parsing"][i][TOP : TOP + CONTENT], SIZE[::-1],
                                                          interpolation=cv2.INTER_NEAREST), err_msg=what)  # fmt: skip
            fig = formats.read_image(r["paths"]["figure"])
            assert fig.ndim == 3 and fig.shape[0] >= 192 and fig.shape[1] > 6 * 192, what
            assert not any(key.startswith("predicted") for key in r["paths"]), what  # nothing was predicted
        # The export is of the workdir's checkpoint: the same bytes on disk.
        for key in ("output", "output_parsing"):
            with open(res["sm"]["paths"][key], "rb") as f_sm, open(res["wd"]["paths"][key], "rb") as f_wd:
                assert f_sm.read() == f_wd.read(), f"{key} {a}->{b}"


def test_label_maps_int64_png_and_refusals(demo, trained, tmp_path, capsys):
    from spt_tf.apps import __main__ as cli
    from spt_tf.apps import parsing

    model = ("--model", trained["export"])
    # The int64 map is read as uint8 labels; the same labels as a PNG give the same output.
    lab = parsing.read_spt(demo["3_B_parsing"], SIZE)
    np.testing.assert_array_equal(lab, np.load(demo["3_B_parsing"]))
    assert lab.dtype == np.uint8
    formats.write_parsing(tmp_path / "3_B.png", lab)
    from_npy = _pose_transfer(demo, "3_B", "1_A", *model, out=tmp_path / "npy")
    from_png = _pose_transfer(demo, "3_B", "1_A", *model, out=tmp_path / "png", parsing=str(tmp_path / "3_B.png"))
    np.testing.assert_array_equal(from_png["image"], from_npy["image"])

    # Refused before any model loads: one line naming the file, exit status 2.
    raw = np.load(demo["3_B_parsing"])
    bad = {"ten": raw.copy(), "negative": np.load(demo["1_A_parsing"]).copy(), "narrow": raw[:, :255],
           "half": raw[::2, ::2]}  # fmt: skip
    bad["ten"][100, 100] = 10
    bad["negative"][5, 7] = -1
    want = {"ten": "label 10 out of range 0..9", "negative": "label -1 out of range 0..9",
            "narrow": f"parsing size (256, 255) differs from the image {demo['3_B']} (256, 256)",
            "half": "parsing size (128, 128) differs from the image"}  # fmt: skip
    for name, arr in bad.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, arr)
        src = "1_A" if name == "negative" else "3_B"
        with pytest.raises(SystemExit) as e:
            cli.main(app_args("pose-transfer", *model, "--image", demo[src], "--parsing", str(path), "--keypoints_csv",
                           demo["csv"], "--target_image", demo["2_A"], "--out", str(tmp_path / name)))  # fmt: skip
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"error: {path}") and want[name] in err, (name, err)
        assert len(err.strip().splitlines()) == 1 and not os.path.exists(tmp_path / name)


def test_keypoints_by_name_and_the_back_view(demo, trained, tmp_path, capsys):
    """The CSV row is the photo's file name (or --name); the back view's mirrored arm labels
    go to the model as they are in the file, both as source and as target."""
    from spt_tf.apps import __main__ as cli
    from spt_tf.apps import commands

    rows = _csv_rows(demo["csv"])
    person = commands.load_person(demo["3_B"], commands.KeypointSource(csv=demo["csv"], name="3_B.jpg"),
                                  demo["3_B_parsing"])  # fmt: skip
    np.testing.assert_array_equal(person.keypoints, rows["3_B.jpg"])
    np.testing.assert_array_equal(person.parsing, np.load(demo["3_B_parsing"]))  # no label swapped
    model = ("--model", trained["export"])
    res = {(a, b): _pose_transfer(demo, a, b, *model, out=tmp_path / f"{a}_{b}")
           for a, b in (("3_B", "3_A"), ("3_A", "3_B"), ("3_B", "2_A"))}  # fmt: skip
    for r in res.values():
        assert r["image"].shape == SIZE + (3,) and os.path.isfile(r["paths"]["figure"])
    # A photo under another file name: its row given by --name (and the target's by --target_name).
    shutil.copy(demo["3_B"], tmp_path / "photo.jpg")
    shutil.copy(demo["3_A"], tmp_path / "target.jpg")
    renamed = cli.run(app_args("pose-transfer", *model, "--image", str(tmp_path / "photo.jpg"), "--name", "3_B.jpg",
                            "--parsing", demo["3_B_parsing"], "--keypoints_csv", demo["csv"],
                            "--target_image", str(tmp_path / "target.jpg"), "--target_name", "3_A.jpg",
                            "--out", str(tmp_path / "renamed")))  # fmt: skip
    np.testing.assert_array_equal(renamed["image"], res["3_B", "3_A"]["image"])
    with pytest.raises(SystemExit):
        cli.main(app_args("pose-transfer", *model, "--image", str(tmp_path / "photo.jpg"), "--parsing",
                       demo["3_B_parsing"], "--keypoints_csv", demo["csv"], "--target_image", demo["3_A"],
                       "--out", str(tmp_path / "x")))  # fmt: skip
    err = capsys.readouterr().err
    assert f"{demo['csv']}, field 'name': no row for image 'photo.jpg'" in err


def test_the_command_line(demo, trained, tmp_path):
    """One pair through a real ``python -m spt_tf.apps pose-transfer``: the bytes of the in-process run."""
    out = tmp_path / "cli"
    argv = [sys.executable, "-m", "spt_tf.apps", "pose-transfer", "--model", trained["export"], "--image", demo["1_A"],
            "--parsing", demo["1_A_parsing"], "--keypoints_csv", demo["csv"], "--target_image", demo["1_B"],
            "--out", str(out)]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    for key in ("output", "output_parsing", "output_parsing_color", "figure"):
        assert printed[key] == str(out / f"{key}.png") and os.path.isfile(printed[key]), key
    assert formats.read_image(printed["output"]).shape == SIZE + (3,)
    here = _pose_transfer(demo, "1_A", "1_B", "--model", trained["export"], out=tmp_path / "here")
    for key in ("output", "output_parsing"):
        with open(printed[key], "rb") as f_cli, open(here["paths"][key], "rb") as f_here:
            assert f_cli.read() == f_here.read(), key


# ------------------------------------------------------------------ predicted keypoints and maps


def test_parsing_predicted_by_the_parser(demo, trained, parser_workdir, tmp_path):
    """--parse on the A<->B pairs: the map the parser predicts (the photo letterboxed into its
    32x16 frame, argmax, back to 256x256) is written beside the output and used as a given map."""
    from spt_tf.apps import __main__ as cli
    from spt_tf.apps import commands

    parser = _parser(parser_workdir)
    assert parser.size == MODEL
    for a, b in AB_PAIRS:
        res = cli.run(app_args("pose-transfer", "--workdir", parser_workdir, "--parse", "--image", demo[a],
                            "--keypoints_csv", demo["csv"], "--target_image", demo[b],
                            "--out", str(tmp_path / f"{a}_{b}")))  # fmt: skip
        assert res["image"].shape == SIZE + (3,) and os.path.isfile(res["paths"]["figure"])
        predicted = formats.read_parsing(res["paths"]["predicted_parsing"])
        assert predicted.shape == SIZE and predicted.max() < labels.NUM_LABELS
        np.testing.assert_array_equal(predicted, commands.predict_parsing(parser, formats.read_image(demo[a])))
        assert os.path.isfile(res["paths"]["predicted_parsing_color"])
        assert "predicted_keypoints" not in res["paths"]  # the keypoints came from the CSV
    # The written map given back, and the generators of the SavedModel with the workdir's parser:
    # the same output (the parser copy keeps the trained workdir's generator checkpoints).
    given = _pose_transfer(demo, a, b, "--model", trained["export"], out=tmp_path / "given",
                           parsing=res["paths"]["predicted_parsing"])  # fmt: skip
    mixed = cli.run(app_args("pose-transfer", "--model", trained["export"], "--parse", "--parser_workdir",
                          parser_workdir, "--image", demo[a], "--keypoints_csv", demo["csv"], "--target_image",
                          demo[b], "--out", str(tmp_path / "mixed")))  # fmt: skip
    np.testing.assert_array_equal(given["image"], res["image"])
    np.testing.assert_array_equal(mixed["image"], res["image"])


def test_keypoints_predicted_by_p(demo, parser_workdir, tmp_path, capsys):
    """--detect (and --parse): P's keypoints are written beside the output as OpenPose JSON.

    The 2-step P puts many peaks in the letterbox padding of these square photos, where they
    count as missing: a pair runs when P found both torsos, else the command refuses it naming
    the photo and the missing joints. A 2:1 crop (the model's aspect, no padding) always runs.
    """
    from spt_tf.apps import __main__ as cli
    from spt_tf.apps import commands

    be = _workdir(parser_workdir)
    detected = {n: commands.detect_keypoints(be, formats.read_image(demo[n]), threshold=0.0) for n in NAMES}
    for n, kp in detected.items():
        found = (kp >= 0).all(-1)
        assert found.any(), n
        assert (kp[found] <= [SIZE[0] - 1, SIZE[1] - 1]).all() and (kp[found] >= 0).all(), n  # inside the photo

    def run(a, b, out):
        return cli.run(app_args("pose-transfer", "--workdir", parser_workdir, "--detect", "--detect_threshold", "0",
                             "--parse", "--image", a, "--target_image", b, "--out", str(out)))  # fmt: skip

    def check_written(res, kp_a, kp_b, shape_b):
        assert res["image"].shape == shape_b + (3,) and os.path.isfile(res["paths"]["figure"])
        for key, kp in (("predicted_keypoints", kp_a), ("target_predicted_keypoints", kp_b)):
            assert res["paths"][key].endswith(f"{key}.json")
            np.testing.assert_array_equal(kpl.read_openpose_json(res["paths"][key]), kp, err_msg=key)
        assert os.path.isfile(res["paths"]["predicted_parsing"])

    for a, b in AB_PAIRS:
        torso = {n: not kpl.missing_names(detected[n], kpl.REQUIRED) for n in (a, b)}
        if all(torso.values()):
            check_written(run(demo[a], demo[b], tmp_path / f"{a}_{b}"), detected[a], detected[b], SIZE)
            continue
        with pytest.raises(SystemExit) as e:
            cli.main(app_args("pose-transfer", "--workdir", parser_workdir, "--detect", "--detect_threshold", "0",
                           "--parse", "--image", demo[a], "--target_image", demo[b],
                           "--out", str(tmp_path / f"{a}_{b}")))  # fmt: skip
        err = capsys.readouterr().err
        who = a if not torso[a] else b
        assert e.value.code == 2 and f"{who}.jpg" in err and "too few keypoints" in err, err
        assert ", ".join(kpl.missing_names(detected[who], kpl.REQUIRED)) in err

    # The model's aspect: every peak is in the content, so with threshold 0 every joint is found.
    crops = {}
    for n in ("1_A", "2_B"):
        crops[n] = str(tmp_path / f"{n}_crop.png")
        formats.write_image(crops[n], formats.read_image(demo[n])[:, 64:192])
    res = run(crops["1_A"], crops["2_B"], tmp_path / "crop")
    kp = {n: commands.detect_keypoints(be, formats.read_image(crops[n]), threshold=0.0) for n in crops}
    assert all((k >= 0).all() for k in kp.values())
    check_written(res, kp["1_A"], kp["2_B"], (256, 128))
    # The written keypoints and map, given back, reproduce the output.
    again = cli.run(app_args("pose-transfer", "--workdir", parser_workdir, "--image", crops["1_A"],
                          "--openpose_json", res["paths"]["predicted_keypoints"],
                          "--parsing", res["paths"]["predicted_parsing"], "--target_image", crops["2_B"],
                          "--target_openpose_json", res["paths"]["target_predicted_keypoints"],
                          "--out", str(tmp_path / "again")))  # fmt: skip
    np.testing.assert_array_equal(again["image"], res["image"])
    assert not any("predicted" in key for key in again["paths"])


def test_detected_peaks_on_the_content_edge_stay_in_the_photo(tmp_path):
    """A peak on the first content row whose centroid leans into the padding above is
    clipped to the photo's row 0 (half a model pixel is 8 photo pixels here), not refused
    as a keypoint of another image; the written JSON reads back the same array."""
    from spt_tf.apps import commands

    class FakeP:
        size = MODEL

        def detect_heatmaps(self, image):
            hm = np.zeros((1,) + MODEL + (18,), np.float32)
            hm[0, TOP, 5, :] = 1.0  # the content's first row...
            hm[0, TOP - 1, 5, :] = 0.5  # ...and the padding row above it
            hm[0, TOP + 10, 5, kpl.KP["Rhip"]] = 2.0  # Rhip well inside
            hm[..., kpl.KP["Lear"]] = 0.0  # not found
            return hm

    photo = np.zeros(SIZE + (3,), np.uint8)
    kp = commands.detect_keypoints(FakeP(), photo, threshold=0.1)
    assert kp[kpl.KP["nose"], 0] == 0.0 and kp[kpl.KP["nose"], 1] == 5 * 16
    np.testing.assert_allclose(kp[kpl.KP["Rhip"]], [160, 80])
    assert (kp[kpl.KP["Lear"]] == -1).all()
    person = commands.read_keypoints(commands.KeypointSource(detect=True), photo, "photo", FakeP())
    np.testing.assert_array_equal(person, kp)
    kpl.write_openpose_json(tmp_path / "kp.json", kp)
    np.testing.assert_array_equal(kpl.read_openpose_json(tmp_path / "kp.json", threshold=0.05), kp)
