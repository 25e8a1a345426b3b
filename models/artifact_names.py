"""Module names inside model artifacts registered before pql was one package.

Until version 0.2, `features`, `models` and `scoring` were installed as top-level packages, so an artifact
pickled then names its classes `models.encoded.EncodedModel`, `models.calibration.CalibratedFit`, …
While such an artifact is unpickled, those names point at the same modules under `pql.`, so a registry
written by an earlier version keeps scoring after an upgrade, and a user's own top-level `models` package
is never imported in their place.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EARLIER_PACKAGES = ("features", "models", "scoring")
_LOCK = threading.Lock()  # sys.modules is process-wide: one swap at a time


def _modules_of(package: str) -> dict[str, object]:
    """Every module of `pql.<package>`, imported, under its earlier top-level name."""
    root = importlib.import_module(f"pql.{package}")
    found: dict[str, object] = {package: root}
    for info in pkgutil.walk_packages(root.__path__, prefix=f"pql.{package}."):
        found[info.name.removeprefix("pql.")] = importlib.import_module(info.name)
    return found


def earlier_names() -> dict[str, object]:
    """Earlier module name -> the module it now is, for every module of the three packages."""
    return {name: module for package in EARLIER_PACKAGES for name, module in _modules_of(package).items()}


@contextmanager
def earlier_module_names() -> Iterator[None]:
    """Within the block, `models.encoded` (and every earlier name) is `pql.models.encoded`; whatever those
    names meant before the block (nothing, or another project's package) is restored after it."""
    aliases = earlier_names()
    with _LOCK:
        saved = {name: sys.modules[name] for name in aliases if name in sys.modules}
        sys.modules.update(aliases)
        try:
            yield
        finally:
            for name in aliases:
                sys.modules.pop(name, None)
            sys.modules.update(saved)
