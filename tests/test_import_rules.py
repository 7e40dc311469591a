"""The arrows between layers point one way, and the TF-free modules stay TF-free.

Read statically from every ``import`` statement (function-level ones too), so a
lazy import cannot hide an arrow.
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# package -> packages it must not import
RULES = {
    "spt_tf/export": ("spt_tf.training", "spt_tf.evaluation", "spt_tf.apps"),
    "spt_tf/evaluation": ("spt_tf.training", "spt_tf.apps"),
    "spt_tf/apps": ("spt_tf.training", "spt_tf.evaluation"),
    "spt_tf/training": ("spt_tf.evaluation", "spt_tf.export", "spt_tf.apps"),
    "spt_tf/models": ("spt_tf.training", "spt_tf.evaluation", "spt_tf.export", "spt_tf.apps"),
    "spt_tf/data": ("spt_tf.training", "spt_tf.evaluation", "spt_tf.export", "spt_tf.apps"),
    "spt_tf/networks.py": ("spt_tf.training", "spt_tf.evaluation", "spt_tf.export", "spt_tf.apps"),
    "spt_tf/composite.py": ("spt_tf.training", "spt_tf.evaluation", "spt_tf.export", "spt_tf.apps"),
    "spt_tf/predictor.py": ("spt_tf.training", "spt_tf.evaluation", "spt_tf.apps"),
    "serving": ("spt_tf.training", "spt_tf.evaluation"),
}


def imported_modules(path: str) -> set[str]:
    """Every module an ``import`` / ``from ... import`` in ``path`` names (absolute, with submodules)."""
    tree = ast.parse(open(path).read(), path)
    package = os.path.relpath(os.path.dirname(path), ROOT).replace(os.sep, ".")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _files(target: str):
    path = os.path.join(ROOT, target)
    if path.endswith(".py"):
        yield path
        return
    for d, _, names in os.walk(path):
        yield from (os.path.join(d, n) for n in names if n.endswith(".py"))


@pytest.mark.parametrize("target", sorted(RULES))
def test_layer_does_not_import_forbidden_layers(target):
    bad = []
    for path in _files(target):
        for mod in imported_modules(path):
            for forbidden in RULES[target]:
                if mod == forbidden or mod.startswith(forbidden + "."):
                    bad.append(f"{os.path.relpath(path, ROOT)} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_rule_reader_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a lazy import inside a function and a relative import both count."""
    pkg = tmp_path / "spt_tf" / "apps"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text("def f():\n    from spt_tf.training import loop\n\nfrom ..evaluation import metrics\n")
    global ROOT
    old, ROOT = ROOT, str(tmp_path)
    try:
        mods = imported_modules(str(f))
    finally:
        ROOT = old
    assert "spt_tf.training.loop" in mods and "spt_tf.evaluation.metrics" in mods


def test_geometry_imports_only_the_keypoint_constants():
    mods = {m for m in imported_modules(os.path.join(ROOT, "spt_tf", "geometry.py")) if m.startswith("spt_tf")}
    assert mods <= {"spt_tf", "spt_tf.skeleton"} | {
        f"spt_tf.skeleton.{n}" for n in dir(__import__("spt_tf.skeleton").skeleton)
    }, mods


@pytest.mark.parametrize(
    "module",
    [
        "spt_tf.skeleton",
        "spt_tf.versions",
        "spt_tf.config_files",
        "spt_tf.apps",
        "spt_tf.data.pseudo_pairs",
        "spt_tf.data.synthetic",
        "serving.files",
    ],
)
def test_tf_free_modules_do_not_load_tensorflow(module):
    code = f"import sys, {module}; sys.exit(1 if 'tensorflow' in sys.modules else 0)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"{module} loads TensorFlow at import\n{r.stderr[-2000:]}"
