"""Run a command and write its peak RSS (largest process) where ``benchmarks/run.py`` reads it.

``python benchmarks/launch.py RESULT.json COMMAND...``. The point is to be small: on Linux a
child's ``ru_maxrss`` also counts the memory of the process that spawned it (the address space
it had at ``exec``), so the benchmark script spawns this launcher, about 10 MB, which spawns the
command and reads the command's own ``wait4`` rusage: its largest process, whether the command
itself or a descendant it waited for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    result_path, command = argv[0], argv[1:]
    process = subprocess.Popen(command)
    # a Ctrl-C reaches the whole foreground group; the command decides what to do with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the benchmark ending early (it sends SIGTERM): pass it on, then report as usual
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump({"maxrss_kb": usage.ru_maxrss, "exit_code": code}, fh)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
