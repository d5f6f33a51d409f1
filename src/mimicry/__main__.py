"""``python -m mimicry compare|report``: see :mod:`mimicry.cli`."""

from __future__ import annotations

from mimicry.cli import run

if __name__ == "__main__":
    run()
