"""The studio's latency: from releasing a dragged joint to the new image on screen.

Measured in headless Chromium (Debian's ``chromium``, driven by playwright)
by the page itself: ``performance.now()`` at the ``pointerup`` that ends a drag
to the ``load`` event of the result ``<img>`` (``window.studio.stats``). The
server's own times come back in each reply: ``server_ms`` (request parsed to
reply built, in the handler) and ``model_ms`` (the predictor's
``pose_transfer`` call alone), so the model's share is reported apart from the
rest (JSON, base64, letterbox, PNG encoding, HTTP on loopback, image decode).

Each model: a person is loaded, 3 drags warm up, then ``--drags`` drags
(default 50) cycle over wrists, elbows, knees and ankles, each moved by 4 % of
the photo's height and back on the next round, waiting for each image before
the next drag (no coalescing: one render per release).

Models:

* ``--saved_model DIR`` (repeatable; default ``runs/demo/export``, the demo's
  64x32 model, with a test person of ``--data_dir``);
* ``--random CONFIG_ARG`` (repeatable; default ``deepfashion``): H_S + H_A of
  ``configs/spt.py:CONFIG_ARG`` with random weights (``spt_tf.networks.Networks``),
  exported to a temporary directory (timing only: weights do not change the cost),
  run on a 256x256 photo made from a demo test person (padded square, upscaled x4).
  ``--width_multiplier`` narrows it.

Usage::

  .venv/bin/python bench/bench_studio.py
  .venv/bin/python bench/bench_studio.py --saved_model runs/demo/export --random deepfashion --drags 50

The machine may be shared: the load average is printed before and after.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from spt_tf.skeleton import KP  # noqa: E402

JOINTS = ("Lwri", "Rwri", "Lelb", "Relb", "Lkne", "Rkne", "Lank", "Rank")


def random_export(config_arg: str, base_dir: str, width_multiplier: float | None) -> tuple[str, dict]:
    from configs import spt
    from spt_tf import networks
    from spt_tf.export import module

    cfg = spt.get_config(config_arg)
    if width_multiplier:
        cfg.model.width_multiplier = width_multiplier
    nets = networks.Networks(cfg, ("hs", "ha"))
    params = sum(int(np.prod(v.shape)) for m in (nets.hs, nets.ha) for v in m.weights)
    path = module.save_atomically(module.SPTExportModule(nets.hs, nets.ha, cfg), base_dir, 1)
    return path, {"config": f"configs/spt.py:{config_arg}", "width_multiplier": float(cfg.model.width_multiplier),
                  "params_hs_ha": params}  # fmt: skip


def square_photo(data_dir: str, name: str, size: int, out_dir: str) -> dict:
    """A test person padded to a square (edge pixels, background labels) and resized to ``size``."""
    from spt_tf.data import formats
    from spt_tf.studio import bundle

    img = formats.read_image(os.path.join(data_dir, "test", name))
    lab = formats.read_parsing(formats.find_parsing(os.path.join(data_dir, "parsing"), name))
    kp = formats.read_annotations(os.path.join(data_dir, "annotation-test.csv"))[name]
    h, w = img.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    img = cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_REPLICATE)
    lab = cv2.copyMakeBorder(lab, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0)
    s = size / side
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    lab = cv2.resize(lab, (size, size), interpolation=cv2.INTER_NEAREST)
    kp = np.where(kp == -1, -1, (kp + [top, left]) * s).astype(np.float32)
    paths = {k: os.path.join(out_dir, f) for k, f in (("image", "photo.png"), ("keypoints", "photo.json"),
                                                      ("parsing", "photo_parsing.png"))}  # fmt: skip
    formats.write_image(paths["image"], img)
    formats.write_parsing(paths["parsing"], lab)
    with open(paths["keypoints"], "wb") as f:
        f.write(bundle.openpose_json(kp))
    return paths


def percentiles(values) -> dict:
    v = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


def run_model(label, be, model_args, dataset, photo, drags, playwright) -> dict:
    from spt_tf.studio import browser, core, server

    studio = core.Studio(be, model_args, dataset)
    studio.warm_up()
    srv, thread = server.serve_in_thread(studio)
    try:
        b = browser.launch(playwright)
        page = browser.open_page(b, srv.url)
        if photo:
            old = browser.result_id(page)
            for field, path in photo.items():
                page.set_input_files(f"#slot-source .up-{field}", path)
            page.click("#slot-source .load-upload")
            browser.wait_result(page, old)
        else:
            browser.load_dataset(page, "source", dataset.names[0])
        height, width = page.evaluate("() => [window.studio.people.source.height, window.studio.people.source.width]")
        step = 0.04 * height
        total = drags + 3
        for i in range(total):
            j = KP[JOINTS[i % len(JOINTS)]]
            y, x = browser.target(page, j)
            if y < 0:
                continue
            sign = 1 if (i // len(JOINTS)) % 2 == 0 else -1
            n = page.evaluate("() => window.studio.stats.length")
            browser.drag(page, "#pose-canvas", (y, x), (y - sign * step, x + sign * step / 2), steps=3)
            page.wait_for_function(f"() => window.studio.stats.length > {n}", timeout=120000)
        stats = page.evaluate("() => window.studio.stats")
        b.close()
    finally:
        server.stop(srv, thread)
    runs = [s for s in stats if s["kind"] == "pose"][-drags:]
    h, w = be.size
    return {
        "model": label, "size": f"{h}x{w}", "photo": f"{height}x{width}",
        "drags": len(runs),
        "release_to_image_ms": percentiles([s["release_to_image_ms"] for s in runs]),
        "server_ms": percentiles([s["server_ms"] for s in runs]),
        "model_ms": percentiles([s["model_ms"] for s in runs]),
        "outside_model_ms": percentiles([s["release_to_image_ms"] - s["model_ms"] for s in runs]),
    }  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--saved_model", action="append", default=[])
    p.add_argument("--random", action="append", default=[])
    p.add_argument("--width_multiplier", type=float, default=None)
    p.add_argument("--data_dir", default="runs/demo/data")
    p.add_argument("--drags", type=int, default=50)
    p.add_argument("--photo_size", type=int, default=256, help="side of the square photo for --random models")
    a = p.parse_args()
    if not a.saved_model and not a.random:
        a.saved_model, a.random = ["runs/demo/export"], ["deepfashion"]
    from playwright.sync_api import sync_playwright

    from spt_tf import predictor
    from spt_tf.studio import core

    dataset = core.Dataset(a.data_dir)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                      "python": platform.python_version(), "loadavg_before": os.getloadavg()}), flush=True)  # fmt: skip
    results = []
    with sync_playwright() as pw, tempfile.TemporaryDirectory() as tmp:
        for d in a.saved_model:
            be = predictor.load(model=d)
            results.append(run_model(d, be, ["--model", be.source], dataset, None, a.drags, pw))
            print(json.dumps(results[-1]), flush=True)
        for arg in a.random:
            t = time.perf_counter()
            path, what = random_export(arg, os.path.join(tmp, arg.replace(",", "_")), a.width_multiplier)
            print(json.dumps({"random_export": what, "export_s": round(time.perf_counter() - t, 1)}), flush=True)
            be = predictor.load(model=path)
            photo_dir = os.path.join(tmp, f"photo_{arg}")
            os.makedirs(photo_dir)
            photo = square_photo(a.data_dir, dataset.names[0], a.photo_size, photo_dir)
            label = f"random {what['config']} (width x{what['width_multiplier']:g}, {what['params_hs_ha'] / 1e6:.1f} M)"
            results.append(run_model(label, be, ["--model", path], dataset, photo, a.drags, pw))
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"loadavg_after": os.getloadavg()}))
    print(
        "\n| model | model size | photo | drags | release → image p50 / p95 ms | server p50 / p95 ms | "
        "model call p50 / p95 ms | outside the model p50 / p95 ms |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        f = lambda k: f"{r[k]['p50']:.0f} / {r[k]['p95']:.0f}"  # noqa: E731
        print(
            f"| {r['model']} | {r['size']} | {r['photo']} | {r['drags']} | {f('release_to_image_ms')} | "
            f"{f('server_ms')} | {f('model_ms')} | {f('outside_model_ms')} |"
        )


if __name__ == "__main__":
    main()
