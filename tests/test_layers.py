"""The architecture, read from the imports: common's layers import only downwards, common imports no framework
and no backend package (the registry loads them by name), and each backend imports only its own framework."""
import ast
import os

import pytest

from nin_common.engine import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ("util", "arch", "engine", "tools", "cli")  # bottom to top
BACKEND_MAY_USE = ("util", "arch", "engine")


def python_files(folder):
    for base, _, names in os.walk(os.path.join(ROOT, folder)):
        for name in names:
            if name.endswith(".py"):
                yield os.path.join(base, name)


def imports(path):
    """Every module a file imports (top level or inside functions), relative imports resolved."""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    found = []
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.append(base)
            found += [f"{base}.{a.name}" for a in node.names]  # "from nin_common.engine import registry"
    return found


def layer_of(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "nin_common" and parts[1] in LAYERS else None


def test_every_module_of_common_sits_in_a_layer():
    for path in python_files("common"):
        rel = os.path.relpath(path, os.path.join(ROOT, "common"))
        assert rel == "__init__.py" or rel.split(os.sep)[0] in LAYERS, f"common/{rel} is in no layer"


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downwards(layer):
    allowed = LAYERS[:LAYERS.index(layer) + 1]
    frameworks = {b.module for b in registry.REGISTERED}
    packages = {b.package for b in registry.REGISTERED}
    for path in python_files(os.path.join("common", layer)):
        for module in imports(path):
            top = module.split(".")[0]
            where = f"{os.path.relpath(path, ROOT)} imports {module}"
            assert top not in frameworks, where + ": common imports no framework"
            assert top not in packages, where + ": only the registry loads backend packages (by name)"
            used = layer_of(module)
            assert used is None or used in allowed, where + f": {layer} may use only {', '.join(allowed)}"


@pytest.mark.parametrize("name", registry.BACKENDS)
def test_backend_imports_its_framework_and_lower_layers_only(name):
    entry = registry.info(name)
    others = {b.module for b in registry.REGISTERED if b.name != name} | \
             {b.package for b in registry.REGISTERED if b.name != name}
    for path in python_files(entry.package):
        for module in imports(path):
            where = f"{os.path.relpath(path, ROOT)} imports {module}"
            assert module.split(".")[0] not in others, where + ": a backend imports only its own framework"
            used = layer_of(module)
            assert used is None or used in BACKEND_MAY_USE, where + f": backends use only {', '.join(BACKEND_MAY_USE)}"


def test_the_checker_sees_a_violation(tmp_path):
    """The walk above can fail: an upward import inside a function is found."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from nin_common.cli import main\n    import torch\n")
    assert {"nin_common.cli.main", "torch"} <= set(imports(str(bad)))
