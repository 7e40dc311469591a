"""Applications CLI: ``python -m spt_tf.apps {pose-transfer,texture-transfer,edit} ...``.

Examples (docs/applications.md has worked ones with figures)::

  python -m spt_tf.apps pose-transfer --model runs/demo/export \\
      --image a.png --parsing a_parsing.png --keypoints_csv annotation-test.csv \\
      --target_image b.png --out out/pose
  python -m spt_tf.apps texture-transfer --workdir runs/demo/train \\
      --image a.png --parsing pa.png --target_image b.png --target_parsing pb.png \\
      --keypoints_csv annotation-test.csv --out out/texture
  python -m spt_tf.apps edit --model runs/demo/export --image a.png --parsing pa.png \\
      --openpose_json a_keypoints.json --sleeves none --out out/edit
  python -m spt_tf.apps pose-transfer --workdir runs/demo/train --parse --image photo.jpg \\
      --openpose_json photo.json --target_image b.png --detect --out out/parsed

Exit status 0 on success; 2 with a one-line ``error: ...`` on bad input
(unreadable files, no person / missing torso joints, size mismatches).
From code, :func:`main` takes the arguments without the program name.
"""

from __future__ import annotations

import argparse
import os
import sys

from absl import app, logging
from absl.flags import argparse_flags

COMMANDS = ("pose-transfer", "texture-transfer", "edit")
DESCRIPTION = ("SPT applications on custom photos: pose transfer, texture transfer, parsing edits. "
               "Photos of any size; results and a side-by-side figure go to --out.")  # fmt: skip


def _add_model(p):
    g = p.add_argument_group("model (one of)")
    g.add_argument("--model", help="SavedModel version directory, or a base directory of versions (newest used)")
    g.add_argument("--workdir", help="training workdir (latest joint / appearance checkpoint; P for --detect)")
    g.add_argument("--config", help="config of the workdir's run: file.py[:ARG] or .json (default WORKDIR/config.json)")


def _add_person(p, prefix: str, who: str, parsing: bool):
    dash = f"--{prefix}"
    p.add_argument(f"{dash}image", required=(prefix == ""), help=f"{who}: photo (any size)")
    if parsing:
        p.add_argument(f"{dash}parsing", help=f"{who}: SPT-10 label map (.png / .npy, the photo's size); "
                       "or --parse")  # fmt: skip
        p.add_argument(f"{dash}lip_parsing", help=f"{who}: LIP-20 label PNG from a human parser (converted)")
    p.add_argument(f"{dash}name", help=f"{who}: row name in the annotation CSV (default: the photo's file name)")
    p.add_argument(f"{dash}openpose_json", help=f"{who}: OpenPose JSON (COCO-18 or BODY_25)")
    p.add_argument(f"{dash}person", type=int, help=f"{who}: which person of a multi-person OpenPose JSON")


def build_parser(parser_class=argparse_flags.ArgumentParser, **kwargs) -> argparse.ArgumentParser:
    """The CLI parser (``parser_class=argparse.ArgumentParser`` in tests: no absl flags)."""
    parser = parser_class(prog="python -m spt_tf.apps", description=DESCRIPTION, **kwargs)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    common = argparse.ArgumentParser(add_help=False)
    _add_model(common)
    kp = common.add_argument_group("keypoints")
    kp.add_argument("--keypoints_csv", help="annotation CSV name:keypoints_y:keypoints_x (rows by --name)")
    kp.add_argument("--detect", action="store_true", help="detect keypoints with P where no JSON/CSV row is given")
    kp.add_argument("--detect_threshold", type=float, default=0.1, help="P heatmap peaks below this are missing")
    kp.add_argument("--openpose_threshold", type=float, default=0.05,
                    help="OpenPose joints with confidence <= this are missing")  # fmt: skip
    kp.add_argument("--keypoint_tolerance", type=float, default=2.0,
                    help="pixels a keypoint may lie outside its photo (40 for the field's 256x176 "
                         "DeepFashion annotations, docs/data.md)")  # fmt: skip
    par = common.add_argument_group("parsing")
    par.add_argument("--parse", action="store_true",
                     help="predict the parsing with the trained human parser where no --parsing / --lip_parsing "
                          "is given (the --workdir's, or --parser_workdir's; train.py --stage=parser)")  # fmt: skip
    par.add_argument("--parser_workdir",
                     help="training workdir whose parser stage ran (default --workdir; its config.json)")  # fmt: skip
    common.add_argument("--out", required=True, help="output folder")

    pt = sub.add_parser("pose-transfer", parents=[common], help="re-pose a person into a target pose")
    _add_person(pt, "", "source", parsing=True)
    _add_person(pt, "target_", "target pose", parsing=False)
    pt.add_argument("--target_keypoints_csv", help="annotation CSV of the target (default --keypoints_csv)")

    tt = sub.add_parser("texture-transfer", parents=[common],
                        help="A's appearance on B's layout, and the reverse (paper Fig. 8)")  # fmt: skip
    _add_person(tt, "", "person A (appearance)", parsing=True)
    _add_person(tt, "target_", "person B (layout)", parsing=True)
    tt.add_argument("--target_keypoints_csv", help="annotation CSV of B (default --keypoints_csv)")

    ed = sub.add_parser("edit", parents=[common], help="render a person with an edited parsing map (paper Fig. 9)")
    _add_person(ed, "", "person", parsing=True)
    ed.add_argument("--sleeves", choices=("none", "short", "long"), help="set the sleeve length")
    ed.add_argument("--lower", choices=("pants", "skirt"), help="turn pants into a skirt or a skirt into pants")
    ed.add_argument("--labels", help="a user-painted label PNG (grey labels 0..9 or palette colours)")
    return parser


def _source(args, prefix: str):
    from spt_tf.apps import commands

    get = lambda k: getattr(args, prefix + k, None)  # noqa: E731
    image = get("image")
    csv = (getattr(args, "target_keypoints_csv", None) if prefix else None) or args.keypoints_csv
    return commands.KeypointSource(
        openpose_json=get("openpose_json"), person=get("person"), csv=csv,
        name=get("name") or (os.path.basename(image) if image else None), detect=args.detect,
        openpose_threshold=args.openpose_threshold, detect_threshold=args.detect_threshold,
        tolerance=getattr(args, "keypoint_tolerance", commands.KEYPOINT_TOLERANCE),
    )  # fmt: skip


def _parser(args, be):
    """The human parser for --parse: --parser_workdir's, else the --workdir backend's."""
    from spt_tf import predictor as predictor_lib

    if args.parser_workdir and not args.parse:
        raise predictor_lib.ModelError("--parser_workdir goes with --parse (predict the parsing with its parser)")
    if not args.parse:
        return None
    if args.parser_workdir:
        # The --workdir's own config when both name the same run; else the parser's config.json.
        same = args.workdir and os.path.abspath(args.workdir) == os.path.abspath(args.parser_workdir)
        return predictor_lib.load_parser(args.parser_workdir, args.config if same else None)
    return be.parser  # a SavedModel (or a workdir without parser) says how to get one


def _write_predicted(out_dir: str, people: dict) -> dict[str, str]:
    """What the networks predicted of the inputs, beside the results: ``<name>_parsing.png``
    (+ ``_color``) with --parse, ``<name>_keypoints.json`` with --detect, for each person
    ``name`` (``predicted``, ``target_predicted``) whose map or keypoints were predicted."""
    from spt_tf.apps import commands

    paths = commands.write_predicted_parsing(out_dir, {f"{k}_parsing": p for k, p in people.items()})
    paths.update(commands.write_predicted_keypoints(out_dir, {f"{k}_keypoints": p for k, p in people.items()}))
    return paths


def run(args) -> dict:
    """Runs a parsed command; returns the command's result dict (``paths`` also holds
    the predicted parsing maps with --parse and the predicted keypoints with --detect)."""
    from spt_tf import predictor as predictor_lib
    from spt_tf.apps import commands

    if bool(args.model) == bool(args.workdir):
        raise predictor_lib.ModelError("give exactly one of --model (SavedModel) and --workdir (checkpoints)")
    # Inputs are read before the (slow) model load so that bad files fail at once; only the
    # pose detector and the human parser need the model first.
    need_model = args.detect or (args.parse and not args.parser_workdir)
    be = predictor_lib.load(args.model, args.workdir, args.config) if need_model else None
    parser = _parser(args, be)
    source = commands.load_person(args.image, _source(args, ""), args.parsing, args.lip_parsing, backend=be,
                                  parser=parser)  # fmt: skip
    if args.command == "edit":
        edited = commands.edit_parsing(source, args.sleeves, args.lower, args.labels, args.image)
        be = be or predictor_lib.load(args.model, args.workdir, args.config)
        result = commands.edit(be, source, args.out, args.sleeves, args.lower, args.labels, edited_parsing=edited)
        result["paths"].update(_write_predicted(args.out, {"predicted": source}))
        return result
    if args.command == "texture-transfer":
        if not args.target_image:
            raise predictor_lib.ModelError("texture-transfer: --target_image (person B) is required")
        b = commands.load_person(args.target_image, _source(args, "target_"), args.target_parsing,
                                 args.target_lip_parsing, backend=be, role="person B", parser=parser)  # fmt: skip
        be = be or predictor_lib.load(args.model, args.workdir, args.config)
        result = commands.texture_transfer(be, source, b, args.out)
        result["paths"].update(_write_predicted(args.out, {"predicted": source, "target_predicted": b}))
        return result
    # pose-transfer: the target pose from a JSON, a CSV row, or P on the target image.
    tsrc = _source(args, "target_")
    if not (tsrc.openpose_json or (tsrc.csv and tsrc.name) or (tsrc.detect and args.target_image)):
        raise commands.kp_lib.KeypointError(
            "pose-transfer: no target pose: give --target_openpose_json, or --target_name / --target_image with "
            "--keypoints_csv, or --target_image with --detect"
        )
    target_image = None
    if args.target_image:
        target_image = commands.formats.read_image(args.target_image)
    # Without a target photo, the target keypoints are in the source photo's pixels.
    frame = target_image if target_image is not None else source.image
    label = args.target_image or tsrc.describe()
    tgt = commands.read_keypoints(tsrc, frame, f"target pose {os.path.basename(label)}", be)
    be = be or predictor_lib.load(args.model, args.workdir, args.config)
    result = commands.pose_transfer(be, source, tgt, args.out, target_image=target_image,
                                    target_shape=frame.shape[:2], target_label=os.path.basename(label),
                                    keypoint_tolerance=getattr(args, "keypoint_tolerance",
                                                               commands.KEYPOINT_TOLERANCE))  # fmt: skip
    target = None
    if tsrc.predicted:  # P ran on the target photo (the only way it predicts a target pose)
        target = commands.Person(target_image, tgt, label=os.path.basename(label), keypoints_predicted=True)
    result["paths"].update(_write_predicted(args.out, {"predicted": source, "target_predicted": target}))
    return result


def _errors():
    from spt_tf import predictor
    from spt_tf.apps import keypoints, parsing
    from spt_tf.data import formats

    return (formats.FormatError, keypoints.KeypointError, parsing.EditError, predictor.ModelError)


def parse(argv: list[str]) -> argparse.Namespace:
    """``app.run``'s flags parser: ``argv[0]`` is the program."""
    return build_parser().parse_args(argv[1:])


def main(argv=None) -> None:
    """Runs the CLI and prints the written files; on bad input, exits with status 2 and
    a one-line ``error: ...`` on stderr.

    Args:
      argv: the parsed arguments (from :func:`parse`, under ``app.run``), or the
        command-line arguments without the program name (None: ``sys.argv[1:]``).
    """
    args = argv if isinstance(argv, argparse.Namespace) else build_parser().parse_args(argv)
    try:
        result = run(args)
    except _errors() as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for name, path in result["paths"].items():
        print(f"{name}: {path}")
    logging.info("done")


if __name__ == "__main__":
    app.run(main, flags_parser=parse)
