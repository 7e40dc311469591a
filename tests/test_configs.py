"""Tests of configs/: every DATASET x ABLATION loads; the paper's values (Sec. 4.1)."""

import os

import pytest
from absl import flags
from ml_collections import config_flags

from configs import spt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPT_FILE = os.path.join(ROOT, "configs", "spt.py")


@pytest.mark.parametrize("dataset", spt.DATASETS)
@pytest.mark.parametrize("ablation", spt.ABLATIONS)
def test_every_config_loads(dataset, ablation):
    c = spt.get_config(f"{dataset},{ablation}")
    assert c.train.ablation == ablation
    # Baseline has no parsing: the style loss runs on body-part masks.
    assert c.loss.style == ("mask" if ablation == "baseline" else "semantic")
    assert c.model.num_labels == 10
    assert c.data.height > 0 and c.data.width > 0 and c.train.batch_size > 0
    # Every value is a plain Python type a resolved-config file can hold.
    for section in ("data", "model", "loss", "train", "eval"):
        for key, value in c[section].items():
            assert isinstance(value, (str, int, float, bool, tuple)), (section, key)


def test_default_ablation_is_e2e_and_default_dataset_synthetic():
    assert spt.get_config("market").train.ablation == "e2e"
    assert spt.get_config().data.name == "synthetic"
    assert spt.get_config(" market , ts_gt ").train.ablation == "ts_gt"


def test_market_values_of_the_paper():
    c = spt.get_config("market")
    assert (c.data.height, c.data.width) == (128, 64)
    assert c.train.batch_size == 16
    assert c.loss.lambda_pose == 1.0 and c.loss.lambda_cont == 0.003
    assert c.model.face_crop_size == 0  # no face loss on Market-1501
    assert c.data.annotations_train == "market-annotation-train.csv"
    assert c.data.annotations_test == "market-annotation-test.csv"


def test_deepfashion_values_of_the_paper():
    c = spt.get_config("deepfashion")
    assert (c.data.height, c.data.width) == (256, 256)
    assert c.train.batch_size == 4
    assert c.loss.lambda_pose == 700.0 and c.loss.lambda_cont == 0.03
    assert c.model.progressive
    assert c.model.face_crop_size > 0
    assert c.data.annotations_train == "fasion-resize-annotation-train.csv"  # sic, the field's name


def test_deepfashion176_is_the_fields_protocol():
    c, paper = spt.get_config("deepfashion176"), spt.get_config("deepfashion")
    assert (c.data.height, c.data.width) == (256, 176)
    assert c.data.annotations_test == "fasion-resize-annotation-test.csv"
    assert c.data.pairs_test == "fasion-resize-pairs-test.csv"
    from spt_tf.data import formats

    assert c.data.keypoint_tolerance == formats.DEEPFASHION_176_TOLERANCE
    # Everything but the frame, the name and the root is the paper's DeepFashion config.
    for section in ("model", "loss", "train", "eval"):
        assert c[section].to_dict() == paper[section].to_dict(), section
    assert c.data.sigma == paper.data.sigma and c.data.mask_radius == paper.data.mask_radius


@pytest.mark.parametrize("dataset", ("market", "deepfashion", "deepfashion176"))
def test_shared_paper_values(dataset):
    c = spt.get_config(dataset)
    assert c.data.sigma == 6.0 and c.data.mask_radius == 4.0
    assert c.loss.lambda_sty == 1.0 and c.loss.gan == "lsgan"
    assert (c.train.learning_rate, c.train.beta_1, c.train.beta_2) == (2e-4, 0.5, 0.999)
    # Release: 8 style parts, background (0) and face (1) excluded.
    assert tuple(c.loss.style_labels) == (2, 3, 4, 5, 6, 7, 8, 9)
    assert c.model.d_layers == 3 and c.model.d_filters == 64


@pytest.mark.parametrize("arg", ["celeba", "market,e3e", "testing,BASELINE"])
def test_unknown_names_raise(arg):
    with pytest.raises(ValueError, match="unknown (dataset|ablation)"):
        spt.get_config(arg)


def test_command_line_loading_and_overrides():
    """The train.py convention: --config=configs/spt.py:ARG plus --config.x.y=v, locked."""
    argv = [
        "prog", f"--config={SPT_FILE}:deepfashion,ts_pred", "--config.train.batch_size=8",
        "--config.loss.lambda_pose=10",
    ]  # fmt: skip
    fv = flags.FlagValues()
    # Override flags are found in sys_argv when the flag is defined (sys.argv in train.py).
    holder = config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
    fv(argv)
    c = holder.value
    assert c.data.name == "deepfashion" and c.train.ablation == "ts_pred"
    assert c.train.batch_size == 8 and c.loss.lambda_pose == 10.0
    with pytest.raises(AttributeError):
        c.train.new_field = 1  # locked: a typo cannot add a field
    bad = ["prog", f"--config={SPT_FILE}:market", "--config.train.batch_sise=8"]
    fv2 = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=fv2, sys_argv=bad)
    with pytest.raises((flags.Error, AttributeError, KeyError), match="batch_size"):
        fv2(bad)  # a misspelt field is an error that suggests the right name
