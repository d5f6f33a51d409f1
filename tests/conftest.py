"""Settings for the project's own tests (not the eval suite)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# httpx imports httpcore lazily, on the first client, and keeps a map of httpcore's exception
# classes from then on. Loaded here, httpcore is in the sys.modules snapshot pytester restores
# after each in-process run; otherwise the first in-process run imports it, the restore drops it,
# and a later test's httpx gets a fresh httpcore whose errors its map does not translate (an
# httpcore.ConnectError where httpx.ConnectError is expected).
import httpcore  # noqa: F401
import pytest
from hypothesis import HealthCheck, settings

# pytester runs the eval suite as users do; it is loaded for the project's own tests only.
pytest_plugins = ["pytester"]

# Profiles: "dev" (the default) explores new examples each run; "ci" is the fixed budget CI runs
# (derandomized, so a CI failure reproduces). Choose with HYPOTHESIS_PROFILE=ci.
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Row stores and other caches of the project's tests go to a folder of this test session, never
# to the user's ~/.cache (xdist workers each get their own).
if "MIMICRY_TESTS_KEEP_XDG_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="mimicry-tests-xdg-")
    os.environ["XDG_CACHE_HOME"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_SAMPLE_DIR = REPO_ROOT.parent / "shared" / "data" / "lmsys-arena-sample"
BUNDLED_ROWS_JSONL = (
    REPO_ROOT / "src" / "mimicry" / "data" / "lmsys-arena-sample" / "train-first32.jsonl"
)
#: The 32 real rows: the project's shared copy beside the checkout when there is one, else the
#: package's copy of the same file (a clone on its own; a test checks they are byte for byte one).
REAL_ROWS_JSONL = (
    SHARED_SAMPLE_DIR / "train-first32.jsonl"
    if (SHARED_SAMPLE_DIR / "train-first32.jsonl").is_file()
    else BUNDLED_ROWS_JSONL
)


#: The marked groups a plain `pytest tests` leaves out (README, "Running the project's tests").
GROUPS = ("slow", "subprocess", "embedded", "browser")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-groups",
        action="store_true",
        default=False,
        help="run every group of the project's tests (slow, subprocess, embedded, browser), as CI "
        "does; without it and without -m, only the quick, unmarked tests run",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Warnings are errors in the project's own tests, but not in users' eval runs, where a
    # deprecation warning from a dependency must not turn a measurement into a failure.
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("error"))
    if config.getoption("--all-groups") or config.option.markexpr:
        return
    quick = [i for i in items if not any(i.get_closest_marker(g) for g in GROUPS)]
    if len(quick) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in quick])
        items[:] = quick


#: CI sets this: there every tool a test needs is installed, so a skip is a missing install step,
#: not an optional check, and fails the run (it would otherwise hide as a green run).
NO_SKIPS = os.environ.get("MIMICRY_TESTS_NO_SKIPS") == "1"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, and MIMICRY_TESTS_NO_SKIPS=1 forbids skips: {reason}"
    return report


@pytest.fixture(scope="session")
def real_rows_csv() -> Path:
    """The same 32 rows as the dataset's CSV (only ../shared has it: the package ships JSONL)."""
    path = SHARED_SAMPLE_DIR / "train-first32.csv"
    if not path.is_file():  # a clone on its own; in CI ../shared is there (and skips fail)
        pytest.skip(f"no CSV copy of the rows at {path}")
    return path


@pytest.fixture(scope="session")
def real_rows_path() -> Path:
    """The 32 real dataset rows (../shared's, else the package's copy)."""
    if not REAL_ROWS_JSONL.is_file():
        pytest.fail(f"the sample rows are missing: {REAL_ROWS_JSONL}")
    return REAL_ROWS_JSONL
