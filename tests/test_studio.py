"""spt_tf.studio: the page in headless Chromium (playwright) over the tiny trained model.

The server runs in a thread of this process on port 0, with a predictor that
records every call, so a test can check what reached the model: the moved
keypoint, the painted parsing, the second person's layout. Downloads are
rebuilt with the CLI and compared byte for byte. Without Chromium or playwright
the browser tests skip (the message names the package); the API tests still run.
"""

import base64
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import cv2
import numpy as np
import pytest

from spt_tf import labels
from spt_tf.apps import resize
from spt_tf.data import formats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("SPT_CHROMIUM", "/usr/bin/chromium")
LIMIT_MB = 1  # the test server's --max_request_mb: over-limit uploads stay small
KP = {n: i for i, n in enumerate(("nose", "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rhip", "Rkne",
                                  "Rank", "Lhip", "Lkne", "Lank", "Leye", "Reye", "Lear", "Rear"))}  # fmt: skip


class Recording:
    """The predictor with every pose_transfer / render call recorded (numpy copies of the inputs)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def pose_transfer(self, image, parsing, source_keypoints, target_keypoints):
        self.calls.append(("pose_transfer", {"image": np.array(image), "parsing": np.array(parsing),
                                             "source_keypoints": np.array(source_keypoints),
                                             "target_keypoints": np.array(target_keypoints)}))  # fmt: skip
        return self.inner.pose_transfer(image, parsing, source_keypoints, target_keypoints)

    def render(self, image, parsing, source_keypoints, target_keypoints, target_parsing):
        self.calls.append(("render", {"image": np.array(image), "parsing": np.array(parsing),
                                      "source_keypoints": np.array(source_keypoints),
                                      "target_keypoints": np.array(target_keypoints),
                                      "target_parsing": np.array(target_parsing)}))  # fmt: skip
        return self.inner.render(image, parsing, source_keypoints, target_keypoints, target_parsing)


@pytest.fixture(scope="module")
def env(_trained_info, tmp_path_factory):
    """The studio on the tiny export and data, served on a free port; torn down at the end."""
    from spt_tf import predictor
    from spt_tf.studio import core, server

    rec = Recording(predictor.load(model=_trained_info["export"]))
    studio = core.Studio(rec, ["--model", os.path.abspath(rec.source)], core.Dataset(_trained_info["data"]),
                         max_request_bytes=LIMIT_MB << 20)  # fmt: skip
    studio.warm_up()
    srv, thread = server.serve_in_thread(studio)
    files = tmp_path_factory.mktemp("studio_files")
    yield {"studio": studio, "model": rec, "url": srv.url, "data": _trained_info["data"], "files": files,
           "export": _trained_info["export"]}  # fmt: skip
    server.stop(srv, thread)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the 'playwright' Python package (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}: install the Debian package 'chromium' "
                    "(apt-get install -y chromium), or set SPT_CHROMIUM")  # fmt: skip
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, env):
    """A fresh page on the studio; every request it makes is recorded (must stay on the studio)."""
    context = browser.new_context(accept_downloads=True)
    pg = context.new_page()
    pg.requests = []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(env["url"])
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()


# ------------------------------------------------------------------ helpers


def _test_names(env):
    return env["studio"].dataset.names


def _person_files(env, name, out_dir, size=None):
    """A dataset person as uploads: photo (optionally resized), OpenPose JSON, SPT parsing PNG."""
    from spt_tf.studio import bundle

    image = formats.read_image(os.path.join(env["data"], "test", name))
    kp = formats.read_annotations(os.path.join(env["data"], "annotation-test.csv"))[name]
    parsing = formats.read_parsing(formats.find_parsing(os.path.join(env["data"], "parsing"), name))
    if size is not None:
        h, w = image.shape[:2]
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        parsing = cv2.resize(parsing, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        kp = np.where(kp == -1, -1, kp * [size[0] / h, size[1] / w]).astype(np.float32)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"image": os.path.join(out_dir, "photo.png"), "keypoints": os.path.join(out_dir, "photo.json"),
             "parsing": os.path.join(out_dir, "photo_parsing.png")}  # fmt: skip
    formats.write_image(paths["image"], image)
    with open(paths["keypoints"], "wb") as f:
        f.write(bundle.openpose_json(kp))
    formats.write_parsing(paths["parsing"], parsing)
    return paths, image, kp, parsing


def _name_with(env, joints):
    """The first test image whose CSV row has all of ``joints``."""
    rows = formats.read_annotations(os.path.join(env["data"], "annotation-test.csv"))
    for name in _test_names(env):
        if all(rows[name][KP[j], 0] >= 0 for j in joints):
            return name
    pytest.skip(f"no test image with {joints}")


def _result_id(page):
    return page.get_attribute("#result-image", "data-result-id")


def _wait_result(page, old, mode=None):
    """Waits for a result other than ``old`` (of ``mode``) on screen, with no render left to come."""
    page.wait_for_function(
        """([old, mode]) => { const i = document.querySelector('#result-image'); const s = window.studio;
                              return i.dataset.resultId && i.dataset.resultId !== old && i.complete
                                     && i.naturalWidth > 0 && s.idle() && (!mode || s.result.mode === mode); }""",
        arg=[old, mode], timeout=30000,
    )  # fmt: skip
    assert page.locator("#message").is_hidden(), page.locator("#message").text_content()
    return _result_id(page)


def _wait_message(page, *parts):
    page.wait_for_function("() => !document.querySelector('#message').hidden", timeout=30000)
    text = page.locator("#message").text_content()
    for part in parts:
        assert part in text, text
    return text


def _upload(page, slot, paths, **extra):
    old = _result_id(page)
    for field in ("image", "keypoints", "parsing"):
        if paths.get(field):
            page.set_input_files(f"#slot-{slot} .up-{field}", paths[field])
        else:
            page.set_input_files(f"#slot-{slot} .up-{field}", [])
    if "format" in extra:
        page.select_option(f"#slot-{slot} .up-format", extra["format"])
    page.click(f"#slot-{slot} .load-upload")
    return old


def _load_dataset(page, slot, name):
    old = _result_id(page)
    page.select_option(f"#slot-{slot} .dataset-select", name)
    page.click(f"#slot-{slot} .load-dataset")
    return old


def _canvas_point(page, selector, yx):
    """Page coordinates of photo pixel (y, x) on a canvas drawn by the page (pixel centres)."""
    return page.evaluate(
        """([sel, y, x]) => { const c = document.querySelector(sel); const r = c.getBoundingClientRect();
                             const s = Number(c.dataset.scale);
                             return [r.left + (x + 0.5) * s * r.width / c.width,
                                     r.top + (y + 0.5) * s * r.height / c.height]; }""",
        [selector, float(yx[0]), float(yx[1])],
    )  # fmt: skip


def _pixel(page, selector, yx):
    """RGBA of a canvas at photo pixel (y, x)."""
    return page.evaluate(
        """([sel, y, x]) => { const c = document.querySelector(sel); const s = Number(c.dataset.scale);
                             const px = c.getContext('2d').getImageData(Math.floor((x + 0.5) * s),
                                                                        Math.floor((y + 0.5) * s), 1, 1);
                             return Array.from(px.data); }""",
        [selector, float(yx[0]), float(yx[1])],
    )  # fmt: skip


def _last_call(env, name):
    calls = [c for n, c in env["model"].calls if n == name]
    assert calls, f"no {name} call reached the model"
    return calls[-1]


def _post(url, body: bytes):
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _unzip(data: bytes, out_dir) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(out_dir)
        return {n: z.read(n) for n in z.namelist()}


def _run_cli_in_process(out_dir, command: str, monkeypatch):
    """One line of a bundle's command.sh, run in this process (same code as ``python -m``)."""
    from spt_tf.apps import __main__ as apps_main
    from spt_tf.studio import garment

    argv = shlex.split(command)
    monkeypatch.chdir(out_dir)
    if argv[:3] == ["python", "-m", "spt_tf.apps"]:
        apps_main.main(argv[3:])
    elif argv[:3] == ["python", "-m", "spt_tf.studio.garment"]:
        garment.main(argv[3:])
    elif argv[0] == "cp":
        shutil.copyfile(argv[1], argv[2])
    else:
        raise AssertionError(f"unexpected command {command}")


def _commands(files: dict) -> list[str]:
    lines = files["command.sh"].decode().splitlines()
    return [ln for ln in lines if ln.startswith(("python ", "cp "))]


# ------------------------------------------------------------------ the page


def test_page_loads_with_every_asset_from_the_studio(page, env):
    assert "32×16" in page.text_content("#model-info")
    names = page.eval_on_selector_all("#slot-source .dataset-select option", "os => os.map(o => o.value)")
    assert names == _test_names(env)
    assert page.eval_on_selector_all("#palette button", "bs => bs.length") == labels.NUM_LABELS
    assert page.requests and all(u.startswith(env["url"]) for u in page.requests), page.requests


def test_upload_source_overlays_and_drag_a_joint(page, env, tmp_path):
    name = _test_names(env)[0]
    # A photo of another aspect ratio than the model's: the studio letterboxes it as the apps do.
    paths, image, kp, _ = _person_files(env, name, tmp_path / "up", size=(80, 56))
    old = _upload(page, "source", paths)
    first = _wait_result(page, old)
    info = page.text_content("#slot-source .person-info")
    assert "photo.png (80×56)" in info and "OpenPose JSON photo.json" in info and "SPT map photo_parsing.png" in info
    # The skeleton's joints are drawn white over the photo; the parsing overlay changes the body's pixels.
    assert _pixel(page, "#pose-canvas", kp[KP["Rsho"]])[:3] == [255, 255, 255]
    page.uncheck("#show-skeleton")
    torso = (kp[KP["neck"]] + kp[KP["Rhip"]] + kp[KP["Lhip"]]) / 3
    with_overlay = _pixel(page, "#slot-source canvas.view", torso)
    page.uncheck("#show-parsing")
    assert _pixel(page, "#slot-source canvas.view", torso) != with_overlay
    page.check("#show-parsing")
    page.check("#show-skeleton")

    # Drag the left wrist 4 photo pixels down and 3 to the right; release re-renders.
    j = KP["Lwri"] if kp[KP["Lwri"], 0] >= 0 else KP["Lelb"]
    start = page.evaluate("j => window.studio.target[j]", j)
    x0, y0 = _canvas_point(page, "#pose-canvas", start)
    x1, y1 = _canvas_point(page, "#pose-canvas", (start[0] + 4, start[1] + 3))
    n_calls = len(env["model"].calls)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()
    second = _wait_result(page, first)
    assert second != first
    sent = np.asarray(page.evaluate("() => window.studio.target"), np.float32)
    np.testing.assert_allclose(sent[j], [start[0] + 4, start[1] + 3], atol=0.3)
    call = _last_call(env, "pose_transfer")
    assert len(env["model"].calls) == n_calls + 1  # one release, one model call
    lb = resize.fit(image.shape[:2], env["studio"].predictor.size)
    assert lb.padded
    np.testing.assert_allclose(call["target_keypoints"][0], lb.keypoints(sent), atol=1e-4)
    np.testing.assert_allclose(call["source_keypoints"][0], lb.keypoints(kp), atol=1e-4)
    np.testing.assert_array_equal(call["image"][0], lb.image(image))
    assert page.text_content("#latency").startswith("release → image")
    stats = page.evaluate("() => window.studio.stats")
    assert stats[-1]["kind"] == "pose" and stats[-1]["release_to_image_ms"] > 0 and stats[-1]["model_ms"] > 0


def test_remove_and_add_a_joint(page, env):
    old = _load_dataset(page, "source", _name_with(env, ["nose"]))
    first = _wait_result(page, old)
    nose = KP["nose"]
    page.select_option("#joint-select", str(nose))
    was = page.evaluate("j => window.studio.target[j]", nose)
    assert was[0] >= 0
    page.click("#joint-remove")
    second = _wait_result(page, first)
    assert (_last_call(env, "pose_transfer")["target_keypoints"][0, nose] == -1).all()
    assert "nose (missing)" in page.text_content("#joint-select")
    # A missing joint is placed where the photo is clicked (a corner: no joint to grab there).
    x, y = _canvas_point(page, "#pose-canvas", (1.0, 1.0))
    page.mouse.click(x, y)
    _wait_result(page, second)
    placed = _last_call(env, "pose_transfer")["target_keypoints"][0, nose]
    lb = resize.fit(env["studio"].result(_result_id(page)).source.person.shape, env["studio"].predictor.size)
    np.testing.assert_allclose(placed, lb.keypoints(np.array([[1.0, 1.0]] * 18))[0], atol=0.2)
    # Removing a torso joint is refused with the joint named, and the next good request works.
    page.select_option("#joint-select", str(KP["Rhip"]))
    page.click("#joint-remove")
    _wait_message(page, "too few keypoints", "Rhip")
    third = _result_id(page)
    page.click("#pose-reset")
    _wait_result(page, third)


def test_paint_a_region_sends_the_parsing(page, env):
    studio = env["studio"]
    old = _load_dataset(page, "source", _name_with(env, ["Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Lkne"]))
    first = _wait_result(page, old)
    page.click(".tabs button[data-tab='edit']")
    page.click(f"#palette button[data-label='{labels.HAIR}']")  # hair on the hips: surely new there
    page.eval_on_selector("#brush-size", "e => { e.value = '3'; e.dispatchEvent(new Event('input')); }")
    assert page.text_content("#brush-value") == "3 px"
    src = page.evaluate("() => window.studio.people.source.keypoints")
    rhip, lkne = src[KP["Rhip"]], src[KP["Lkne"]]
    x0, y0 = _canvas_point(page, "#paint-canvas", rhip)
    x1, y1 = _canvas_point(page, "#paint-canvas", lkne)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    second = _wait_result(page, first)
    painted = np.frombuffer(bytes(page.evaluate("() => Array.from(window.studio.edit)")), np.uint8)
    res = studio.result(second)
    assert res.mode == "edit" and res.changed_pixels > 0
    np.testing.assert_array_equal(res.edited_parsing.reshape(-1), painted)
    rec = res.source.person
    call = _last_call(env, "render")
    lb = resize.fit(rec.shape, studio.predictor.size)
    np.testing.assert_array_equal(call["target_parsing"][0], lb.labels(res.edited_parsing))  # the edit
    np.testing.assert_array_equal(call["target_parsing"][1], lb.labels(rec.parsing))  # the reconstruction
    assert (call["target_parsing"][0] == labels.HAIR).sum() > (lb.labels(rec.parsing) == labels.HAIR).sum()
    assert "labels changed" in page.text_content("#result-mode")
    # Undo restores the map; the render then changes nothing.
    page.click("#paint-undo")
    third = _wait_result(page, second)
    assert studio.result(third).changed_pixels == 0
    # The apps' sleeve edit, on the painted map, as a button.
    page.click("#presets button[data-sleeves='none']")
    _wait_result(page, third)


def test_texture_transfer_with_a_second_person(page, env):
    from spt_tf.studio import garment

    names = _test_names(env)
    old = _load_dataset(page, "source", names[0])
    first = _wait_result(page, old)
    page.select_option("#slot-second .dataset-select", names[4])
    page.click("#slot-second .load-dataset")
    page.wait_for_function("() => window.studio.people.second !== null")
    page.click(".tabs button[data-tab='texture']")
    page.select_option("#garment-select", "upper_clothes")
    page.click("#texture-run")
    rid = _wait_result(page, first)
    res = env["studio"].result(rid)
    a, b = res.source.person, res.donor.person
    assert (a.label, b.label) == (names[0], names[4])
    call = _last_call(env, "render")
    size = env["studio"].predictor.size
    la, lbb = resize.fit(a.shape, size), resize.fit(b.shape, size)
    # One batch of two, as texture-transfer: A on B's layout and B on A's.
    np.testing.assert_array_equal(call["target_parsing"][0], lbb.labels(b.parsing))
    np.testing.assert_array_equal(call["target_parsing"][1], la.labels(a.parsing))
    np.testing.assert_array_equal(call["image"][1], lbb.image(b.image))
    expect = garment.compose(a.image, a.parsing, res.images["b_on_a.png"], labels.UPPER)
    np.testing.assert_array_equal(res.output, expect)
    shown = cv2.imdecode(np.frombuffer(base64.b64decode(page.get_attribute("#result-image", "src").split(",")[1]),
                                       np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]  # fmt: skip
    np.testing.assert_array_equal(shown, expect)
    # The pose of the second person (same photo size: taken as it is).
    page.click(".tabs button[data-tab='pose']")
    page.click("#pose-take")
    _wait_result(page, rid, "pose")
    np.testing.assert_allclose(_last_call(env, "pose_transfer")["target_keypoints"][0], la.keypoints(b.keypoints))


def test_downloads_rebuild_with_the_cli_byte_for_byte(page, env, tmp_path, monkeypatch):
    names = _test_names(env)
    source = _name_with(env, ["Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rkne"])
    old = _load_dataset(page, "source", source)
    first = _wait_result(page, old)
    # Pose: drag the right knee, download the bundle, run its command.sh with `python -m`.
    j = KP["Rkne"]
    start = page.evaluate("j => window.studio.target[j]", j)
    x0, y0 = _canvas_point(page, "#pose-canvas", start)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 12, y0 - 6, steps=3)
    page.mouse.up()
    rid = _wait_result(page, first)
    with page.expect_download() as dl:
        page.click("#download-bundle")
    path = tmp_path / "pose.zip"
    dl.value.save_as(path)
    files = _unzip(path.read_bytes(), tmp_path / "pose")
    meta = json.loads(files["studio.json"])
    assert meta["mode"] == "pose" and meta["source"]["name"] == source
    np.testing.assert_allclose(meta["target_keypoints"], page.evaluate("() => window.studio.target"), atol=1e-4)
    assert len(meta["source"]["parsing_rows"]) == 64 and meta["source"]["keypoints_from"].startswith("annotation CSV")
    shown = base64.b64decode(page.get_attribute("#result-image", "src").split(",")[1])
    assert files["output.png"] == shown
    with page.expect_download() as dl:
        page.click("#download-image")
    assert open(dl.value.path(), "rb").read() == shown
    venv = os.path.dirname(sys.executable)
    proc = subprocess.run(["sh", str(tmp_path / "pose" / "command.sh")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": venv + os.pathsep + os.environ["PATH"],
                               "PYTHONPATH": REPO})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "same bytes as the studio: output.png" in proc.stdout
    assert env["studio"].result(rid).mode == "pose"

    # Edit and texture bundles: their commands run in this process (the same code as `python -m`).
    page.click(".tabs button[data-tab='edit']")
    page.click("#presets button[data-sleeves='none']")
    rid = _wait_result(page, rid)
    page.select_option("#slot-second .dataset-select", names[0])
    page.click("#slot-second .load-dataset")
    page.wait_for_function("() => window.studio.people.second !== null")
    page.click(".tabs button[data-tab='texture']")
    present = np.bincount(env["studio"].result(rid).source.person.parsing.ravel(), minlength=labels.NUM_LABELS)
    lower = "pants" if present[labels.PANTS] else "skirt"
    for garment_label in (lower, "all"):
        page.select_option("#garment-select", garment_label)
        page.click("#texture-run")
        rid = _wait_result(page, rid)
        _check_bundle(env, rid, tmp_path / garment_label, monkeypatch)
    # (the edit result is among the studio's latest)
    edit_id = [r for r in env["studio"]._results.values() if r.mode == "edit"][-1].id
    _check_bundle(env, edit_id, tmp_path / "edit", monkeypatch)


def _check_bundle(env, rid, out_dir, monkeypatch):
    data = urllib.request.urlopen(f"{env['url']}api/result/{rid}/bundle.zip", timeout=60).read()
    files = _unzip(data, out_dir)
    for command in _commands(files):
        _run_cli_in_process(out_dir, command, monkeypatch)
    from spt_tf.studio import bundle

    mode = json.loads(files["studio.json"])["mode"]
    for name in bundle.CHECKED[mode]:
        assert (out_dir / "out" / name).read_bytes() == files[name], f"{mode}: out/{name} differs"


def test_bad_inputs_show_a_message_and_the_studio_keeps_running(page, env, tmp_path):
    names = _test_names(env)
    paths, image, kp, parsing = _person_files(env, names[1], tmp_path / "good")

    def good_request():
        old = _load_dataset(page, "source", names[1])
        _wait_result(page, old)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (bad / "nobody.json").write_text(json.dumps({"version": 1.3, "people": []}))
    small = cv2.resize(parsing, (16, 32), interpolation=cv2.INTER_NEAREST)
    formats.write_parsing(str(bad / "small_parsing.png"), small)
    wrong = parsing.copy()
    wrong[0, 0] = 12
    cv2.imwrite(str(bad / "wrong_labels.png"), wrong)
    (bad / "huge.png").write_bytes(os.urandom(int(LIMIT_MB * 1.2 * (1 << 20))))
    cases = [
        ({**paths, "image": str(bad / "broken.png")}, ("broken.png", "cannot decode the image")),
        ({**paths, "keypoints": str(bad / "nobody.json")}, ("nobody.json", "no person found")),
        ({**paths, "parsing": str(bad / "small_parsing.png")}, ("small_parsing.png", "parsing size (32, 16)",
                                                               "photo.png (64, 32)")),
        ({**paths, "parsing": str(bad / "wrong_labels.png")}, ("wrong_labels.png", "label 12 out of range 0..9")),
        ({**paths, "image": str(bad / "huge.png")}, ("huge.png", "--max_request_mb")),
    ]  # fmt: skip
    for files, parts in cases:
        n = len(env["studio"]._people)
        _upload(page, "source", files)
        _wait_message(page, *parts)
        assert len(env["studio"]._people) == n  # nothing was loaded
        good_request()
    # A LIP map of the right size is converted (not refused).
    _upload(page, "source", {**paths, "parsing": paths["parsing"]}, format="lip")
    page.wait_for_function("() => document.querySelector('#slot-source .person-info').textContent.includes('LIP')")
    # The server's own limit (a client that does not check first): 413 with the limit named.
    status, reply = _post(env["url"] + "api/person", b"{" + b" " * ((LIMIT_MB << 20) + 10) + b"}")
    assert status == 413 and "--max_request_mb" in reply["error"]
    status, reply = _post(env["url"] + "api/pose", b"not json")
    assert status == 400 and "not JSON" in reply["error"]
    status, reply = _post(env["url"] + "api/pose", json.dumps({"person": "nobody", "target_keypoints": []}).encode())
    assert status == 404 and "unknown person" in reply["error"]
    good_request()


# ------------------------------------------------------------------ without a browser


def test_detector_and_parser_fill_in_missing_uploads(env, tmp_path, monkeypatch):
    """No keypoint file: the pose detector P; no parsing file: the human parser (stand-ins here,
    as the tiny model's 2-step P finds no joint); the bundle then carries what they predicted."""
    from spt_tf.apps import keypoints as kp_lib
    from spt_tf.studio import bundle, core

    studio, size = env["studio"], env["studio"].predictor.size
    name = _test_names(env)[5]
    paths, image, kp, parsing = _person_files(env, name, tmp_path / "in")
    lb = resize.fit(image.shape[:2], size)

    class Detector(Recording):
        can_detect = True

        def detect_heatmaps(self, img):
            hm = np.zeros((1, *size, 18), np.float32)
            for i, (y, x) in enumerate(lb.keypoints(kp)):
                if y >= 0:
                    hm[0, int(round(y)), int(round(x)), i] = 1.0
            return hm

    class Parser:
        def __init__(self):
            self.size = size

        def parse_labels(self, img):
            return lb.labels(parsing)[None]

    other = core.Studio(Detector(env["model"].inner), studio.model_args, parser=Parser())
    with open(paths["image"], "rb") as f:
        rec = other.load_upload_person(core.Upload("photo.png", f.read()))
    assert (rec.keypoints_from, rec.parsing_from) == ("the pose detector P", "the human parser")
    present = kp[:, 0] >= 0
    np.testing.assert_allclose(rec.person.keypoints[present], np.round(lb.keypoints(kp)[present]) * 2, atol=1e-4)
    np.testing.assert_array_equal(rec.person.parsing, lb.undo_labels(lb.labels(parsing)))
    res = other.edit(rec.id, rec.person.parsing)
    files = bundle.files(res, studio.model_args, {"kind": "saved_model"})
    out = tmp_path / "bundle"
    out.mkdir()
    for n, data in files.items():
        (out / n).write_bytes(data)
    np.testing.assert_array_equal(kp_lib.read_openpose_json(out / "source_keypoints.json"), rec.person.keypoints)
    for command in _commands(files):
        _run_cli_in_process(out, command, monkeypatch)
    assert (out / "out" / "output.png").read_bytes() == files["output.png"]


def test_field_errors_name_the_field(env):
    from spt_tf.studio import core

    studio = env["studio"]
    rec = studio.load_dataset_person(_test_names(env)[0])
    with pytest.raises(core.StudioError, match=r"target_keypoints\[4\] \(Rwri\): expected \[y, x\]"):
        studio.pose(rec.id, [[1, 2]] * 4 + [["a", 1]] + [[1, 2]] * 13)
    with pytest.raises(core.StudioError, match="outside the 64x32 image"):
        studio.pose(rec.id, [[200.0, 5.0]] + rec.person.keypoints[1:].tolist())
    with pytest.raises(core.StudioError, match=r"edited_parsing: 3 labels, the photo has 64x32 = 2048"):
        studio.edit(rec.id, base64.b64encode(b"abc").decode())
    bad = np.full(rec.person.shape, 10, np.uint8)
    with pytest.raises(core.StudioError, match="edited_parsing: label 10 out of range 0..9"):
        studio.edit(rec.id, base64.b64encode(bad.tobytes()).decode())
    with pytest.raises(core.StudioError, match="garment: must be"):
        studio.texture(rec.id, rec.id, "hat")
    with pytest.raises(core.StudioError, match="keypoints must be an OpenPose .json or an annotation .csv"):
        with open(os.path.join(env["data"], "test", rec.person.label), "rb") as f:
            studio.load_upload_person(core.Upload("p.png", f.read()), core.Upload("k.txt", b"x"))
    big = core.Studio(studio.predictor, studio.model_args, max_side=40)
    with pytest.raises(core.StudioError, match=r"p.png: the photo is 64x32 pixels; .* up to 40"):
        with open(os.path.join(env["data"], "test", rec.person.label), "rb") as f:
            big.load_upload_person(core.Upload("p.png", f.read()), core.Upload("k.csv",
                                   open(os.path.join(env["data"], "annotation-test.csv"), "rb").read()),
                                   csv_row=rec.person.label, parsing=core.Upload(
                                   "m.png", core.encode_label_png(rec.person.parsing)))  # fmt: skip


def test_the_command_starts_the_studio_and_prints_its_address(env):
    """``python -m spt_tf.studio --saved_model DIR --port 0`` prints the address it serves on."""
    cmd = [sys.executable, "-m", "spt_tf.studio", "--saved_model", os.path.dirname(env["export"]), "--data_dir",
           env["data"], "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("SPT studio: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            info = json.loads(r.read())
        assert info["model"]["height"] == 32 and info["dataset"]["names"] == _test_names(env)
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b"/static/studio.js" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_workdir_studio_detects_with_p_and_its_bundle_rebuilds(env, _trained_info, tmp_path, monkeypatch):
    """A workdir model (P included): a photo without keypoints goes to P (the 2-step P may find
    nobody: then the message says so); a result's bundle names --workdir and rebuilds byte for byte."""
    from configs import testing
    from spt_tf import predictor
    from spt_tf.studio import bundle, core

    config = testing.get_config()
    config.data.root = _trained_info["data"]
    be = predictor.load(workdir=_trained_info["workdir"], config=config)
    assert be.can_detect
    studio = core.Studio(be, ["--workdir", _trained_info["workdir"]], core.Dataset(_trained_info["data"]))
    name = _test_names(env)[0]
    paths, *_ = _person_files(env, name, tmp_path / "in")
    with open(paths["image"], "rb") as f, open(paths["parsing"], "rb") as g:
        try:
            rec = studio.load_upload_person(core.Upload("photo.png", f.read()),
                                            parsing=core.Upload("photo_parsing.png", g.read()))  # fmt: skip
            assert rec.keypoints_from == "the pose detector P"
        except core.StudioError as e:
            assert str(e).startswith("source photo.png (keypoints from the pose detector)"), e
    rec = studio.load_dataset_person(name)
    res = studio.pose(rec.id, rec.person.keypoints)
    files = bundle.files(res, studio.model_args, {"kind": be.kind})
    assert "--workdir" in files["command.sh"].decode()
    out = tmp_path / "bundle"
    out.mkdir()
    for n, data in files.items():
        (out / n).write_bytes(data)
    for command in _commands(files):
        _run_cli_in_process(out, command, monkeypatch)
    assert (out / "out" / "output.png").read_bytes() == files["output.png"]
