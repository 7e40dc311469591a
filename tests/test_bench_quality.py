"""bench/bench_quality.py's ``--set`` overrides, read as train.py reads ``--config.SECTION.FIELD``."""

import pytest

from bench import bench_quality
from configs import spt


def test_set_overrides_take_python_and_json_values():
    c = spt.get_config("testing")
    bench_quality.apply_override(c, "model.residual_person_only=True")
    assert c.model.residual_person_only is True
    bench_quality.apply_override(c, "model.residual_person_only=false")
    assert c.model.residual_person_only is False
    bench_quality.apply_override(c, "train.learning_rate=1e-3")
    assert c.train.learning_rate == 1e-3
    bench_quality.apply_override(c, "loss.statistics_dilations=(1, 2)")
    assert tuple(c.loss.statistics_dilations) == (1, 2)
    bench_quality.apply_override(c, "loss.features=vgg")
    assert c.loss.features == "vgg"


@pytest.mark.parametrize("bad", ["model.no_such_field=1", "residual_person_only=True", "model.residual_person_only"])
def test_set_overrides_name_a_field(bad):
    with pytest.raises(ValueError, match="SECTION.FIELD=VALUE"):
        bench_quality.apply_override(spt.get_config("testing"), bad)


def test_set_override_values_must_parse():
    with pytest.raises(ValueError, match="not a Python or JSON value"):
        bench_quality.apply_override(spt.get_config("testing"), "train.learning_rate=fast")
