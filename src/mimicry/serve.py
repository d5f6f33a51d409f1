"""`python -m mimicry.serve`: run the embedded Ollama-compatible server (see `mimicry-serve -h`)."""

from __future__ import annotations

from mimicry.embedded.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
