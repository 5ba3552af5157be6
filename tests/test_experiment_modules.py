"""Each experiment module's ``__all__`` is its public API: what it defines, nothing borrowed."""

import ast
import importlib
import inspect

import pytest

MODULES = ["cost_model", "runs", "swat", "swat_methods", "swat_settings", "swat_tables", "tour",
           "truly_sparse", "truly_sparse_profiles", "truly_sparse_reported", "truly_sparse_tables"]


def _defined_at_top_level(module) -> set[str]:
    names = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_every_public_name_the_module_defines(name):
    module = importlib.import_module(f"swatlib.experiments.{name}")
    public = {n for n in _defined_at_top_level(module) if not n.startswith("_")}
    assert public <= set(module.__all__), f"missing from __all__: {sorted(public - set(module.__all__))}"
    assert all(hasattr(module, n) for n in module.__all__)
    assert "use_threads" not in module.__all__  # swatlib.train's, not re-exported
