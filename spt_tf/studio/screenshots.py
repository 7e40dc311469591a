"""Screenshots of the studio's main states (docs/figures/studio_*.png), from a trained model.

  python -m spt_tf.studio.screenshots --saved_model runs/demo/export --data_dir runs/demo/data \\
      --parser_workdir runs/demo/train --out docs/figures

Serves the studio in this process and drives the page in headless Chromium
(:mod:`spt_tf.studio.browser`) through: a person loaded (skeleton and parsing
over the photo), a pose taken from a second person and a joint dragged, the
parsing edited (the apps' sleeve and skirt edits, then a painted stroke), a
garment swapped, and a bad upload's message. The people are test identities
of the demo's synthetic data (``--source`` etc. pick others).
"""

from __future__ import annotations

import argparse
import os
import tempfile

from spt_tf.skeleton import KP


def make(studio, out_dir: str, names: dict, width: int = 1400, height: int = 860) -> list[str]:
    """Writes ``studio_{source,pose,edit,texture,error}.png`` to ``out_dir``; returns the paths."""
    from playwright.sync_api import sync_playwright

    from spt_tf.studio import browser, server

    os.makedirs(out_dir, exist_ok=True)
    srv, thread = server.serve_in_thread(studio)
    paths = []

    def shot(page, name):
        path = os.path.join(out_dir, f"studio_{name}.png")
        page.screenshot(path=path, full_page=True)
        paths.append(path)

    try:
        with sync_playwright() as p:
            b = browser.launch(p)
            page = browser.open_page(b, srv.url, width, height)
            # 1. A person loaded: the photo with its skeleton and parsing; the first render.
            browser.load_dataset(page, "source", names["pose_source"])
            browser.load_dataset(page, "second", names["pose_target"])
            shot(page, "source")
            # 2. The pose of the second person, then the left wrist dragged up.
            old = browser.result_id(page)
            page.click("#pose-take")
            old = browser.wait_result(page, old)
            wrist = browser.target(page, KP["Lwri"])
            elbow = browser.target(page, KP["Lelb"])
            browser.drag(page, "#pose-canvas", wrist, (elbow[0] - 8, wrist[1] + 3))
            browser.wait_result(page, old)
            shot(page, "pose")
            # 3. Parsing edits: long sleeves and a skirt (the apps' edits), then a painted stroke.
            browser.load_dataset(page, "source", names["edit"])
            page.click(".tabs button[data-tab='edit']")
            for button in ("[data-sleeves='long']", "[data-lower='skirt']"):
                old = browser.result_id(page)
                page.click(f"#presets button{button}")
                browser.wait_result(page, old)
            page.click("#palette button[data-label='2']")  # hair, longer
            page.eval_on_selector("#brush-size", "e => { e.value = '3'; e.dispatchEvent(new Event('input')); }")
            neck = page.evaluate(f"() => window.studio.people.source.keypoints[{KP['neck']}]")
            lsho = page.evaluate(f"() => window.studio.people.source.keypoints[{KP['Lsho']}]")
            old = browser.result_id(page)
            browser.drag(page, "#paint-canvas", (neck[0] - 2, lsho[1]), (neck[0] + 6, lsho[1]), steps=6)
            browser.wait_result(page, old)
            shot(page, "edit")
            # 4. Texture transfer: the second person's upper clothes on the source.
            browser.load_dataset(page, "source", names["texture_source"])
            browser.load_dataset(page, "second", names["texture_donor"])
            page.click(".tabs button[data-tab='texture']")
            page.select_option("#garment-select", "upper_clothes")
            old = browser.result_id(page)
            page.click("#texture-run")
            browser.wait_result(page, old)
            shot(page, "texture")
            # 5. A bad upload: a parsing map of another size; the message names the file.
            with tempfile.TemporaryDirectory() as tmp:
                _bad_upload(studio, names["texture_source"], tmp)
                page.set_input_files("#slot-source .up-image", os.path.join(tmp, "photo.png"))
                page.set_input_files("#slot-source .up-keypoints", os.path.join(tmp, "photo.json"))
                page.set_input_files("#slot-source .up-parsing", os.path.join(tmp, "photo_parsing.png"))
                page.click("#slot-source .load-upload")
                page.wait_for_function("() => !document.querySelector('#message').hidden")
            shot(page, "error")
            b.close()
    finally:
        server.stop(srv, thread)
    return paths


def _bad_upload(studio, name: str, out_dir: str) -> None:
    """A test person's photo and keypoints, with its parsing map at half size."""
    import cv2

    from spt_tf.data import formats
    from spt_tf.studio import bundle

    image_path, parsing_path = studio.dataset.paths(name)
    formats.write_image(os.path.join(out_dir, "photo.png"), formats.read_image(image_path))
    kp = formats.read_annotations(studio.dataset.csv)[name]
    with open(os.path.join(out_dir, "photo.json"), "wb") as f:
        f.write(bundle.openpose_json(kp))
    lab = formats.read_parsing(parsing_path)
    formats.write_parsing(
        os.path.join(out_dir, "photo_parsing.png"),
        cv2.resize(lab, (lab.shape[1] // 2, lab.shape[0] // 2), interpolation=cv2.INTER_NEAREST),
    )


def main(argv=None) -> None:
    from spt_tf.studio import __main__ as cli
    from spt_tf.studio import core

    p = argparse.ArgumentParser(prog="python -m spt_tf.studio.screenshots", description=__doc__.split("\n")[0])
    p.add_argument("--saved_model", required=True)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--parser_workdir")
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--pose_source", default="id00026_p02.png")
    p.add_argument("--pose_target", default="id00005_p00.png")
    p.add_argument("--edit", default="id00019_p01.png")
    p.add_argument("--texture_source", default="id00027_p01.png")
    p.add_argument("--texture_donor", default="id00003_p01.png")
    a = p.parse_args(argv)
    flags = ["--saved_model", a.saved_model, "--data_dir", a.data_dir]
    if a.parser_workdir:
        flags += ["--parser_workdir", a.parser_workdir]
    args = cli.build_parser().parse_args(flags)
    be, model_args, dataset, parser = cli.load(args)
    studio = core.Studio(be, model_args, dataset, parser)
    studio.warm_up()
    names = {k: getattr(a, k) for k in ("pose_source", "pose_target", "edit", "texture_source", "texture_donor")}
    for path in make(studio, a.out, names):
        print(path)


if __name__ == "__main__":
    main()
