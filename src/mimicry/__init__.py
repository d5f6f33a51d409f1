"""mimicry-evals: measure how small local models imitate raw dataset records."""

from __future__ import annotations

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # The version is read from the installed metadata when first asked for: importlib.metadata
    # costs tens of milliseconds, paid by every xdist worker if it were read at import.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("mimicry-evals")
        except PackageNotFoundError:  # running from a source tree that was not installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'mimicry' has no attribute {name!r}")
