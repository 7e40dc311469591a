"""Loading a config outside absl's ``--config`` flag (tools, apps, the studio).

The training, export and evaluation entry points take ``--config`` through
``ml_collections.config_flags``; every other tool that needs a config loads it
here, with the same ``path.py[:ARG]`` spelling, or from a workdir's resolved
``config.json``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

import ml_collections


class ConfigFileError(ValueError):
    """A config spec that cannot be loaded; the message names the file."""


def load_config(spec: str) -> ml_collections.ConfigDict:
    """``file.py[:ARG]`` (its ``get_config(ARG)``) or a workdir's resolved ``config.json``.

    Raises:
      ConfigFileError: the file is missing, is neither ``.py`` nor ``.json``,
        does not parse, or has no ``get_config``.
    """
    spec = os.fspath(spec)
    path, _, arg = spec.partition(":") if not os.path.isfile(spec) else (spec, "", "")
    if not os.path.isfile(path):
        raise ConfigFileError(f"{path}: config file not found")
    if path.endswith(".json"):
        try:
            with open(path) as f:
                return ml_collections.ConfigDict(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigFileError(f"{path}: cannot read the config JSON ({e})") from None
    if not path.endswith(".py"):
        raise ConfigFileError(f"{path}: a config is a .py file (with get_config) or a workdir's config.json")
    # The project's config files import `configs.base`: their repository root must be importable.
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:
        sys.path.insert(0, root)
    name = "_spt_config_" + re.sub(r"\W", "_", os.path.abspath(path))
    module_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    if not hasattr(mod, "get_config"):
        raise ConfigFileError(f"{path}: no get_config() in the config file")
    return mod.get_config(arg) if arg else mod.get_config()
