"""The exit statuses of an eval run and of ``python -m mimicry``: one table, used everywhere.

0 to 5 keep pytest's meanings. The conditions that are ours alone get numbers pytest never uses,
taken from BSD's ``sysexits.h`` so that scripts can tell "the model server is down" from "the
plugin crashed" (pytest's 3) and from "a gate failed" (1).
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """How a run ended."""

    OK = 0  #: the run completed; samples that did not show a behavior are measurements
    GATE_FAILED = 1  #: a gate failed, a behavior test raised, or another test failed (pytest's 1)
    INTERRUPTED = 2  #: Ctrl-C (pytest's 2)
    INTERNAL_ERROR = 3  #: a crash of pytest or of a plugin (pytest's 3)
    USAGE_ERROR = 4  #: a bad option, dataset, gate or report file (pytest's 4)
    NO_TESTS = 5  #: nothing was collected (pytest's 5)
    SERVER_UNUSABLE = 69  #: EX_UNAVAILABLE: no server, model missing, embedded server failed
    REPORT_NOT_WRITTEN = 73  #: EX_CANTCREAT: a report file could not be written
    ERROR_BUDGET_EXCEEDED = 75  #: EX_TEMPFAIL: more samples had no reply than --max-errors allows


#: What each status means, for the README table and --help texts.
MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "the run completed; samples that did not show a behavior are measurements, "
    "not failures (also with errors within --max-errors)",
    ExitStatus.GATE_FAILED: "a gate failed, a behavior test raised an error (a broken test, not "
    "a measurement), or a test outside the eval suite failed",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C); a partial report is written",
    ExitStatus.INTERNAL_ERROR: "pytest or a plugin crashed (pytest's own status)",
    ExitStatus.USAGE_ERROR: "usage error: a bad option, dataset, gate or report file "
    "(the message names the value and the fix)",
    ExitStatus.NO_TESTS: "no test was collected (pytest's own status)",
    ExitStatus.SERVER_UNUSABLE: "the model server could not be used: not running, model missing, "
    "embedded server did not start, or it stopped answering mid-run",
    ExitStatus.REPORT_NOT_WRITTEN: "a report file (--report-json/-md/-html, --save-baseline) "
    "could not be written",
    ExitStatus.ERROR_BUDGET_EXCEEDED: "more samples had no reply than --max-errors allows",
}
