"""The core imports neither pytest nor ollama (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_neither_pytest_nor_ollama() -> None:
    code = (
        "import sys\n"
        "import mimicry.core.behaviors, mimicry.core.parsing, mimicry.core.report, "
        "mimicry.core.samples, mimicry.core.stats, mimicry.core.prompt, mimicry.settings, "
        "mimicry.cache\n"
        "bad = sorted(m for m in ('pytest', '_pytest', 'ollama') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == ""
