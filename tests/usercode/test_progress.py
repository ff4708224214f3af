"""Progress of large transfers: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import io
import logging

from smc_core.usercode.progress import Progress, ProgressReader


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal() -> None:
    screen = Terminal()
    progress = Progress("Downloading s3://b/k", 1000, stream=screen, min_bytes=0, redraw_every=0)
    reader = ProgressReader(io.BytesIO(b"x" * 1000), progress)
    while reader.read(250):
        pass
    progress.finish()
    frames = screen.getvalue().split("\r")
    assert frames[1].startswith("Downloading s3://b/k: [#######") and "25.0%" in frames[1]
    assert "100.0%" in frames[-1] and frames[-1].endswith("\n")


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_log_lines_otherwise() -> None:
    logger, recorder = logging.getLogger("smc"), Recorder()
    logger.addHandler(recorder)
    level, logger.level = logger.level, logging.INFO
    try:
        progress = Progress("Downloading big", 100, stream=io.StringIO(), min_bytes=0, log_every=0)
        for _ in range(10):
            progress.update(10)
        progress.finish()
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
    lines = recorder.lines
    assert lines[0] == "Downloading big: 0.0 MB of 0.0 MB (10%)"
    assert len(lines) == 11 and lines[-1].startswith("Downloading big: 0.0 MB in ")


def test_small_transfers_stay_quiet() -> None:
    screen = Terminal()
    progress = Progress("small", 100, stream=screen)
    progress.update(100)
    progress.finish()
    assert screen.getvalue() == ""
