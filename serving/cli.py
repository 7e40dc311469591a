"""The client CLI: ``python -m serving.client [--address HOST:PORT | --rest URL] COMMAND ...``.

Commands: ``metadata`` (print the signatures), ``pose_transfer``,
``transform_parsing`` and ``render`` (write ``generated.png``, ``parsing.png``,
``parsing_color.png`` and ``figure.png`` to ``--out_dir``); the module
docstring of :mod:`serving.client` has an example. Exit status 0 on success,
1 with a one-line ``error: ...`` when the server or the inputs refuse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import grpc
from absl import app
from absl.flags import argparse_flags

from serving import files
from serving.transport import RestError
from spt_tf.apps import figures
from spt_tf.data import formats

DESCRIPTION = "Client of the exported SPT model: gRPC (TF Serving protocol) or REST, Python API and CLI."


def run_command(args, client) -> dict[str, str]:
    """Runs one CLI command with a :class:`serving.client.SptMethods`; returns the written
    files (name -> path)."""
    if args.command == "metadata":
        print(json.dumps(client.metadata(), indent=2))
        return {}
    if args.bytes and args.command == "transform_parsing":
        raise ValueError("transform_parsing has no byte variant; drop --bytes")
    size = client.image_size()
    src_kp = files.load_keypoints(args.source_keypoints, args.annotations, args.source_name, "source keypoints")
    tgt_kp = files.load_keypoints(args.target_keypoints, args.annotations, args.target_name, "target keypoints")
    image = formats.read_image(args.image) if args.image else None
    if args.command != "transform_parsing" and image is None:
        raise ValueError(f"{args.command} needs --image")
    parsing = formats.read_parsing(args.parsing)
    # Both poses are taken in the source image's pixel frame and scaled with it.
    image, parsing, (src_kp, tgt_kp) = files.fit_to_model(
        image, parsing, [src_kp, tgt_kp], size, args.resize, "the source"
    )
    target_parsing = None
    if args.command == "render":
        if not args.target_parsing:
            raise ValueError("render needs --target_parsing")
        target_parsing = formats.read_parsing(args.target_parsing)
        _, target_parsing, _ = files.fit_to_model(None, target_parsing, [], size, args.resize, "--target_parsing")

    os.makedirs(args.out_dir, exist_ok=True)
    written = {}
    generated = predicted = None
    if args.command == "pose_transfer" and args.bytes:
        image_png, parsing_png = client.pose_transfer_bytes(
            files.encode_png(image), files.encode_png(parsing), src_kp, tgt_kp
        )
        generated = files.decode_png_rgb(image_png)
        if parsing_png is not None:
            predicted = files.decode_png_labels(parsing_png)
    elif args.command == "pose_transfer":
        generated, predicted = client.pose_transfer(image, parsing, src_kp, tgt_kp)
    elif args.command == "transform_parsing":
        predicted = client.transform_parsing(parsing, src_kp, tgt_kp)
    elif args.command == "render" and args.bytes:
        generated = files.decode_png_rgb(client.render_bytes(
            files.encode_png(image), files.encode_png(parsing), src_kp, tgt_kp,
            files.encode_png(target_parsing),
        ))  # fmt: skip
    else:
        generated = client.render(image, parsing, src_kp, tgt_kp, target_parsing)

    source_panel = image if image is not None else figures.parsing_panel(parsing)
    panels, titles = [source_panel, files.draw_pose(tgt_kp, size)], ["source", "target pose"]
    shown_parsing = predicted if predicted is not None else target_parsing
    if shown_parsing is not None:
        panels.append(figures.parsing_panel(shown_parsing))
        titles.append("parsing" if predicted is not None else "target parsing")
    if predicted is not None:
        written["parsing"] = os.path.join(args.out_dir, "parsing.png")
        formats.write_parsing(written["parsing"], predicted)
        written["parsing_color"] = os.path.join(args.out_dir, "parsing_color.png")
        formats.write_image(written["parsing_color"], figures.parsing_panel(predicted))
    if generated is not None:
        panels.append(generated)
        titles.append("generated")
        written["generated"] = os.path.join(args.out_dir, "generated.png")
        formats.write_image(written["generated"], generated)
    written["figure"] = os.path.join(args.out_dir, "figure.png")
    formats.write_image(written["figure"], files.side_by_side(panels, titles))
    for name, path in written.items():
        print(f"{name}: {path}")
    return written


def build_parser(parser_class=argparse_flags.ArgumentParser) -> argparse.ArgumentParser:
    """The CLI parser (absl's argparse parser by default, so absl's flags parse too)."""
    parser = parser_class(
        prog="python -m serving.client", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--address", default="localhost:8500", help="gRPC host:port (TF Serving 8500).")
    transport.add_argument("--rest", default=None, help="REST base URL, e.g. http://localhost:8501.")
    parser.add_argument("--model_name", default="spt")
    parser.add_argument("--version", type=int, default=None, help="Model version (default: newest).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per call.")
    parser.add_argument("--max_message_mb", type=int, default=64)
    # Subcommand parsers take only their own arguments; absl's flags go before the command.
    sub = parser.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)
    sub.add_parser("metadata", help="Print the signatures (GetModelMetadata).")
    for name, help_text in (
        ("pose_transfer", "Generate the source person in the target pose (serving_default)."),
        ("transform_parsing", "Predict the target parsing only (H_S)."),
        ("render", "Render with a given target parsing (H_A)."),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--image", required=name != "transform_parsing", help="Source image (any format OpenCV reads).")
        p.add_argument("--parsing", required=True, help="Source parsing (.png/.npy, labels 0..9).")
        p.add_argument("--annotations", help="Annotation CSV (name:keypoints_y:keypoints_x).")
        p.add_argument("--source_name", help="Row of --annotations with the source keypoints.")
        p.add_argument("--target_name", help="Row of --annotations with the target keypoints.")
        p.add_argument("--source_keypoints", help='JSON file {"keypoints": [[y, x], ...]}.')
        p.add_argument("--target_keypoints", help='JSON file {"keypoints": [[y, x], ...]}.')
        if name == "render":
            p.add_argument("--target_parsing", required=True, help="Target parsing (.png/.npy).")
        p.add_argument(
            "--resize",
            action="store_true",
            help="Resize inputs to the model's size; both poses are scaled with the "
            "source image (they must be in its pixel frame).",
        )
        p.add_argument(
            "--bytes", action="store_true", help="Use the encoded-image signature (serving_bytes / render_bytes)."
        )
        p.add_argument("--out_dir", required=True, help="Where to write the results.")
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """``app.run``'s flags parser: ``argv[0]`` is the program."""
    return build_parser().parse_args(argv[1:])


def _connect(args):
    # serving.client re-exports this module's names, so it is imported here, not at the top.
    from serving import client as client_lib

    if args.rest:
        return client_lib.SptRestClient(args.rest, args.model_name, args.version, args.timeout)
    return client_lib.SptClient(args.address, args.model_name, args.version, args.timeout, args.max_message_mb)


def main(argv=None) -> int:
    """Runs the CLI; returns the exit status.

    Args:
      argv: the parsed arguments (from :func:`parse`, under ``app.run``), or the
        command-line arguments without the program name (None: ``sys.argv[1:]``).
    """
    args = argv if isinstance(argv, argparse.Namespace) else build_parser().parse_args(argv)
    client = _connect(args)
    try:
        with client:
            run_command(args, client)
    except grpc.RpcError as e:
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except (RestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse)
