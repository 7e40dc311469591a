"""Model summary: ``python -m spt_tf.models --config configs/testing.py``.

Prints, for each network of the config (and VGG), its parameter count and
input / output shapes. Nothing is computed: networks are built from shapes and
report their output shapes (``compute_output_shape``). VGG is listed with
random weights (no download here).
"""

from __future__ import annotations

import math

from absl import app
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (ml_collections).", lock_config=True)


def _fmt(shapes) -> str:
    if isinstance(shapes, dict):
        return ", ".join(f"{k} {list(v)}" for k, v in shapes.items())
    return str(list(shapes))


def main(argv):
    del argv
    from spt_tf import models
    from spt_tf.models.vgg import build_vgg_features

    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/testing.py")
    shapes = models.input_shapes(config)
    networks = models.build_models(config)
    networks["vgg"] = build_vgg_features(None)  # parameter count only; weights do not matter here
    print(
        f"config: {config.data.name}  image {config.data.height}x{config.data.width}  "
        f"width_multiplier {config.model.width_multiplier}  norm {config.model.norm}  "
        f"progressive {config.model.progressive}"
    )
    total = 0
    for key, model in networks.items():
        out = models.output_shapes(model, shapes[key], batch_size=1)
        n = model.count_params()
        trainable = sum(math.prod(v.shape) for v in model.trainable_variables)
        total += n
        print(f"\n{key} ({type(model).__name__}): {n:,} parameters ({trainable:,} trainable)")
        print(f"  inputs:  {_fmt(models._batched(shapes[key], 1))}")
        print(f"  output:  {_fmt(out)}")
    print(f"\ntotal: {total:,} parameters")


if __name__ == "__main__":
    app.run(main)
