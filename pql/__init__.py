"""pql: product-qualified lead scoring from product usage, written back to the CRM.

`pql.connect()` opens the Python API (`pql.api`). It is imported on first use, so `import pql.config`
(and the command line's start) never pays for pandas, scikit-learn or Prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pql.api import Explanation, Project, Reason, UnknownAccountError, connect

__version__ = "0.2.0"
__all__ = ["Explanation", "Project", "Reason", "UnknownAccountError", "__version__", "connect"]
_API_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from pql import api

        return getattr(api, name)
    raise AttributeError(f"module 'pql' has no attribute {name!r}")
