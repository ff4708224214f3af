"""Curve 3 of issue 28: ranks writing logs. 1, 2, 4, 8 processes on one host, 1M lines each.

* ``direct``: the same processes started by the harness, each writing straight to a file of its own
  (``stdout`` redirected; no prefix, no copy): what the machine does without a launcher.
* ``smc``: ``train`` with smc-pytorch (``sagemaker_torch_distributed_enabled``, N processes a host):
  torchrun's ``--tee`` (smc's whole-line tail) prefixes every line with ``[algo-1 rank N]:`` and
  ``train`` passes it on to its own stdout, a file.

Lines per second = all ranks' lines / the time from the first rank's first line (the script takes
``time.time()`` first) until the last line is in the output file (``train``'s exit; the last rank's
exit for ``direct``). Start-up before the first line (torch's import in torchrun's agent) is not
counted: what grows with the ranks is the copying, which this measures. Every output is then read
back: every line of every rank whole, in order, and (through smc) carrying its own rank's prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent

LOG_SCRIPT = """\
import time; first = time.time()
import json, os, sys
rank = os.environ.get("RANK", "0")
mark = os.environ.get("BENCH_RANK", rank)
lines = int(os.environ["BENCH_LINES"])
write = sys.stdout.write
for i in range(lines):
    write(f"r{rank} line {i} of the training log: loss=0.{i % 9973:04d} step={i} lr=0.001\\n")
sys.stdout.flush()
with open(os.path.join(os.environ["BENCH_OUT"], f"rank-{mark}.json"), "w") as f:
    json.dump({"first": first, "last": time.time()}, f)
"""


@dataclass
class LogsRun:
    """One run: ``ranks`` processes of ``lines`` lines each, ``how`` (direct or smc)."""

    how: str
    ranks: int
    lines: int
    seconds: float | None = None
    """From the first rank's first line to the last line written."""
    wall_s: float | None = None
    """From spawning to the end (start-up included)."""
    lines_per_s: float | None = None
    problem: str | None = None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def logs_once(work: Path, how: str, ranks: int, lines: int, out_dir: Path) -> LogsRun:
    """One run (see the module docstring); output files in ``out_dir`` (tmpfs where there is one)."""
    from scale import check_log

    from smc_core.testing import make_job_dir

    run = LogsRun(how, ranks, lines)
    base = work / f"logs-{how}-{ranks}"
    shutil.rmtree(base, ignore_errors=True)
    marks = base / "marks"
    marks.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SMC_", "SAGEMAKER_", "BENCH_"))}
    env.update(BENCH_LINES=str(lines), BENCH_OUT=str(marks))
    outputs: list[Path] = []
    started = time.time()
    if how == "direct":
        script = base / "spam.py"
        script.write_text(LOG_SCRIPT)
        procs = []
        for rank in range(ranks):
            out = out_dir / f"bench-log-{os.getpid()}-direct-{rank}.txt"
            outputs.append(out)
            with out.open("wb") as sink:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(script)],
                        stdout=sink,
                        env={**env, "BENCH_RANK": str(rank)},
                        # A session each, as torchrun starts its workers: with the kernel's autogroup
                        # scheduling each session is one share of the CPU against the machine's other
                        # users, so 8 processes in one session got an eighth of what torchrun's got.
                        start_new_session=True,
                    )
                )
        codes = [p.wait() for p in procs]
        ended = time.time()
    else:
        job = base / "job"
        make_job_dir(
            job,
            hyperparameters={"sagemaker_torch_distributed_enabled": True},
            code={"spam.py": LOG_SCRIPT},
            entry_point="spam.py",
        )
        env.update(
            SAGEMAKER_BASE_DIR=str(job),
            SMC_ADAPTER="pytorch",
            SMC_PYTORCH_PROCESSES_PER_HOST=str(ranks),
            SMC_PYTORCH_MASTER_PORT=str(_free_port()),
        )
        out = out_dir / f"bench-log-{os.getpid()}-smc.txt"
        outputs.append(out)
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [str(BIN / "train")], stdout=sink, stderr=subprocess.DEVNULL, env=env, cwd=job
            )
            codes = [proc.wait()]
        ended = time.time()
    run.wall_s = ended - started
    try:
        firsts = [json.loads((marks / f"rank-{r}.json").read_text())["first"] for r in range(ranks)]
    except (OSError, ValueError, KeyError):
        firsts = []
    if any(codes) or len(firsts) < ranks:
        run.problem = f"exit codes {codes}, {len(firsts)} of {ranks} ranks finished; see {base}"
    else:
        run.seconds = ended - min(firsts)
        run.lines_per_s = ranks * lines / run.seconds
        if how == "direct":
            for out in outputs:  # each process its own file, its lines all "r0 line ..."
                run.problem = run.problem or check_log(out, lines, 1, prefixed=False)
        else:
            run.problem = check_log(outputs[0], lines * ranks, ranks, prefixed=True)
    for out in outputs:
        out.unlink(missing_ok=True)
    if not run.problem:
        shutil.rmtree(base, ignore_errors=True)
    return run
