"""Every swatlib package imports on its own, first: no import cycle hides behind the order the tests use
(a cycle between packages breaks ``import swatlib.swat`` in a fresh interpreter while every test that
imports ``swatlib.models`` first still passes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys
    import torch  # loaded once: only swatlib's own modules are imported afresh
    import swatlib
    names = sorted(m.name for m in pkgutil.walk_packages(swatlib.__path__, "swatlib.") if m.ispkg)
    failed = []
    for name in names:
        for loaded in [m for m in sys.modules if m == "swatlib" or m.startswith("swatlib.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as error:
            failed.append(f"{name}: {type(error).__name__}: {error}")
    print(len(names))
    print("\\n".join(failed))
""")


def test_every_package_imports_first():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    count, *failed = done.stdout.strip().split("\n")
    assert int(count) >= 8
    assert [line for line in failed if line] == []
