"""The studio's garment swap as a command: one label of a render over the person's photo.

The studio's texture transfer with one garment chosen (say ``upper_clothes``)
shows the second person's appearance rendered on the source's layout (the
``b_on_a.png`` of ``python -m spt_tf.apps texture-transfer``) inside that
label of the source's parsing, and the source's own photo everywhere else.
This module is that last step, so a downloaded bundle reproduces it::

  python -m spt_tf.studio.garment --image source.png --parsing source_parsing.png \\
      --render out/b_on_a.png --label upper_clothes --out out/output.png

Exit status 2 with one line ``error: ...`` on bad input, as the apps' CLI.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from spt_tf import labels


def compose(image: np.ndarray, parsing: np.ndarray, render: np.ndarray, label: int) -> np.ndarray:
    """``render`` where ``parsing == label``, ``image`` elsewhere (all at the photo's size)."""
    image, render = np.asarray(image, np.uint8), np.asarray(render, np.uint8)
    parsing = np.asarray(parsing)
    if image.shape != render.shape or parsing.shape != image.shape[:2]:
        raise ValueError(f"sizes differ: image {image.shape}, render {render.shape}, parsing {parsing.shape}")
    return np.where((parsing == int(label))[..., None], render, image).astype(np.uint8)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m spt_tf.studio.garment", description=__doc__.split("\n")[0])
    p.add_argument("--image", required=True, help="the person's photo")
    p.add_argument("--parsing", required=True, help="its SPT-10 label map (.png / .npy, the photo's size)")
    p.add_argument("--render", required=True, help="a render at the photo's size (texture-transfer's b_on_a.png)")
    p.add_argument("--label", required=True, choices=labels.SPT_LABELS, help="the garment's SPT label")
    p.add_argument("--out", required=True, help="output PNG")
    return p


def main(argv=None) -> None:
    from spt_tf.apps import parsing as parsing_lib
    from spt_tf.data import formats

    args = build_parser().parse_args(argv)
    try:
        image = formats.read_image(args.image)
        parsing = parsing_lib.read_spt(args.parsing, image.shape[:2], args.image)
        render = formats.read_image(args.render)
        if render.shape != image.shape:
            raise formats.FormatError(args.render, f"render size {render.shape[:2]} differs from the image "
                                                   f"{args.image} {image.shape[:2]} (H, W)")  # fmt: skip
        formats.write_image(args.out, compose(image, parsing, render, labels.SPT_LABELS.index(args.label)))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"output: {args.out}")


if __name__ == "__main__":
    main()
