"""The layering: `scaling` and `sweep` import nothing from `study` (it sits above both), and `scaling` no torch."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import llada_lightning.scaling
import llada_lightning.sweep


def modules(package) -> list[str]:
    return [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]


def imported_after(names: list[str]) -> set[str]:
    code = f"import importlib, sys\nfor n in {names!r}: importlib.import_module(n)\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_scaling_and_sweep_import_nothing_from_study():
    loaded = imported_after(modules(llada_lightning.scaling) + modules(llada_lightning.sweep))
    assert len(modules(llada_lightning.scaling)) > 10 and len(modules(llada_lightning.sweep)) > 5
    assert not {m for m in loaded if m.startswith("llada_lightning.study")}


def test_scaling_imports_no_torch():
    loaded = imported_after(modules(llada_lightning.scaling))
    assert not {m for m in loaded if m.split(".")[0] in ("torch", "lightning", "torchmetrics")}


def test_the_second_scaling_command_line_is_gone():
    assert "llada_lightning.scaling.__main__" not in modules(llada_lightning.scaling)
