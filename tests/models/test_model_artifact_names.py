"""Artifacts pickled when `models` was a top-level package still load, as the same classes under `pql.`."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from pql.models.artifact_names import earlier_module_names
from pql.models.champion import HoldoutScore


def _pickled_under(name: str, value: object) -> bytes:
    """`value` pickled as an earlier version wrote it: its class's module named `name`."""
    data = pickle.dumps(value, protocol=2)
    # Protocol 2 names a class with the GLOBAL opcode: "c", the module, a newline, the class, a newline.
    old, new = f"c{type(value).__module__}\n".encode(), f"c{name}\n".encode()
    assert data.count(old) == 1
    return data.replace(old, new)


def test_an_artifact_naming_the_earlier_module_loads_as_the_current_class() -> None:
    data = _pickled_under("models.champion", HoldoutScore(pr_auc=0.3, brier=0.1))
    with earlier_module_names():
        loaded = pickle.loads(data)
    assert type(loaded) is HoldoutScore
    assert loaded == HoldoutScore(pr_auc=0.3, brier=0.1)


def test_the_earlier_names_are_gone_after_the_block() -> None:
    with earlier_module_names():
        assert sys.modules["models.champion"] is sys.modules["pql.models.champion"]
    assert "models.champion" not in sys.modules


def test_another_projects_models_package_is_neither_used_nor_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("OWNER = 'another project'\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "models", raising=False)
    import models  # the other project's package

    data = _pickled_under("models.champion", HoldoutScore(pr_auc=0.3, brier=0.1))
    with earlier_module_names():
        assert type(pickle.loads(data)) is HoldoutScore
    assert sys.modules["models"] is models
    assert models.OWNER == "another project"
    monkeypatch.delitem(sys.modules, "models")
