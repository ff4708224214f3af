"""``first_failure``: among processes launched together, the first to fail is the cause (real processes)."""

from __future__ import annotations

import sys
import time

from smc_core import first_failure, start_process

ENV = {"PATH": "/usr/bin:/bin"}


def _python(code: str):
    return start_process([sys.executable, "-c", code], env=ENV)


def test_the_first_to_fail_is_named_not_the_one_stopped_for_it():
    waiting = _python("import time; time.sleep(60)")  # rank 0, waiting for a peer that never comes
    failing = _python("import time, sys; time.sleep(0.3); sys.exit(3)")
    start = time.monotonic()
    try:
        assert first_failure([waiting, failing]) == 1
        assert time.monotonic() - start < 30
    finally:
        stopped = waiting.stop(grace_period=5)
    assert failing.wait().exit_code == 3 and stopped.exit_code == 143


def test_of_two_that_fail_the_earlier_is_named_whatever_its_index():
    later = _python("import time, sys; time.sleep(1.5); sys.exit(5)")
    earlier = _python("import time, sys; time.sleep(0.3); sys.exit(4)")
    assert first_failure([later, earlier]) == 1
    later.stop(grace_period=5)
    assert earlier.wait().exit_code == 4


def test_when_all_succeed_there_is_none():
    processes = [_python(f"import time; time.sleep({d})") for d in (0.1, 0.4)]
    assert first_failure(processes) is None
    assert [p.wait().exit_code for p in processes] == [0, 0]
