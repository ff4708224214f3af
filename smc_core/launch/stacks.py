"""The Python stacks of the job's processes on this host, without the user's code doing anything.

:func:`dump_stacks` finds every process the job runs on this host (every descendant of this smc: smc
is their subreaper, so Open MPI's daemons and the ranks under them are found too), and reads the
stack of every thread of every Python process among them:

* with **py-spy** (``py-spy dump --json``), which reads a process's memory from outside and needs
  nothing from the user's code. It needs ``ptrace`` rights over the process: a container without
  ``CAP_SYS_PTRACE`` on an old kernel, a seccomp profile that forbids ``ptrace`` and
  ``process_vm_readv``, or Yama's ``ptrace_scope`` 2-3 refuse it;
* where py-spy cannot (:func:`pyspy_unusable` says why, once at the start of the user's code), with
  **faulthandler**, armed in every Python process of the job by a ``sitecustomize`` that smc puts on
  the job's ``PYTHONPATH`` (:func:`faulthandler_environment`): each process registers
  ``faulthandler`` on :data:`STACKS_SIGNAL` (a real-time signal nothing else uses), writing to a file
  of its own in ``$SMC_STACKS_DIR``; smc sends the signal and reads the file. faulthandler's handler
  runs in C, without the GIL, so it answers even when the code is stuck in a native call. The
  ``sitecustomize`` imports the one it hides (the image's own), so nothing of the job's is lost.

``SMC_STACKS`` chooses: ``auto`` (py-spy, else faulthandler), ``py-spy`` or ``faulthandler``.
Reading a stack pauses the process for a few milliseconds at most: the job goes on.

Each process's stacks are a :class:`ProcessStacks` (host, pid, rank, command, threads innermost
frame first, or why none could be read), JSON-able for the job's channel;
:func:`where_it_is` says in one line where a process is in the user's code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "STACKS_DIR_VAR",
    "STACKS_SIGNAL",
    "STACKS_SIGNAL_VAR",
    "Frame",
    "ProcessStacks",
    "ThreadStack",
    "adopted_processes",
    "dump_stacks",
    "faulthandler_environment",
    "find_pyspy",
    "job_processes",
    "pyspy_unusable",
    "render_stacks",
    "user_frames",
    "where_it_is",
]

STACKS_DIR_VAR = "SMC_STACKS_DIR"
"""Set for the job's processes when faulthandler is armed (not a setting): where each Python process
writes its stacks, one file per pid."""
STACKS_SIGNAL_VAR = "SMC_STACKS_SIGNAL"
"""Set beside :data:`STACKS_DIR_VAR`: the signal number faulthandler is registered on."""
STACKS_SIGNAL: int = getattr(signal, "SIGRTMIN", 34) + 6
"""The signal that makes an armed process write its stacks: a real-time signal (``SIGRTMIN+6``),
which neither Python, the frameworks nor smc use, so that no handler of the job's is displaced."""
SITE_DIR = Path(__file__).with_name("faulthandler_site")
"""The directory holding smc's ``sitecustomize.py``, put first on ``PYTHONPATH`` to arm faulthandler."""
MAX_FRAMES = 80
"""Frames kept per thread (innermost first): a deeper stack is cut at its outer end."""
MAX_THREADS = 40
"""Threads kept per process."""
_LIBRARY_PARTS = ("site-packages", "dist-packages", f"{os.sep}lib{os.sep}python")
_OWN_MODULES = ("smc_pytorch.launcher", "smc_core.mpi.rank", "smc_core.cli", "py-spy")


@dataclass(frozen=True)
class Frame:
    """One frame of a thread's stack."""

    function: str
    file: str
    line: int

    def describe(self) -> str:
        """``train.py:9 in main``."""
        return f"{self.file}:{self.line} in {self.function}"


@dataclass(frozen=True)
class ThreadStack:
    """The stack of one thread, innermost frame first."""

    name: str
    frames: tuple[Frame, ...]
    idle: bool | None = None
    """py-spy's view: the thread waits (sleeps, blocks in I/O or a lock); None when not known."""


@dataclass(frozen=True)
class ProcessStacks:
    """The stacks of one process of the job, as read on its host.

    Attributes:
        host: the host it runs on.
        pid: its process id.
        command: its command line (shortened).
        rank: its ``RANK`` (torchrun, MPI), None for a process with none (a plain script).
        local_rank: its ``LOCAL_RANK``, when it has one.
        parent: the pid of its parent.
        method: how the stacks were read: ``py-spy`` or ``faulthandler``; empty when they were not.
        threads: every thread's stack (the main thread first).
        error: why no stacks could be read, when none were.
        role: ``user`` (the user's code), ``smc`` (smc's launcher or a rank's wrapper) or ``other``.
    """

    host: str
    pid: int
    command: str
    rank: int | None = None
    local_rank: int | None = None
    parent: int | None = None
    method: str = ""
    threads: tuple[ThreadStack, ...] = ()
    error: str = ""
    role: str = "user"

    def to_message(self) -> dict[str, Any]:
        """A JSON object for the job's channel."""
        return {
            "host": self.host,
            "pid": self.pid,
            "command": self.command,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "parent": self.parent,
            "method": self.method,
            "error": self.error,
            "role": self.role,
            "threads": [
                {"name": t.name, "idle": t.idle, "frames": [[f.function, f.file, f.line] for f in t.frames]}
                for t in self.threads
            ],
        }

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ProcessStacks:
        """The record :meth:`to_message` wrote (fields of the wrong type are dropped)."""

        def number(value: Any) -> int | None:
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        threads = []
        for raw in data.get("threads") or ():
            if not isinstance(raw, Mapping):
                continue
            frames = tuple(
                Frame(str(f[0]), str(f[1]), int(f[2]))
                for f in raw.get("frames") or ()
                if isinstance(f, (list, tuple)) and len(f) == 3 and isinstance(f[2], int)
            )
            idle = raw.get("idle")
            threads.append(
                ThreadStack(str(raw.get("name", "")), frames, idle if isinstance(idle, bool) else None)
            )
        return cls(
            host=str(data.get("host", "")),
            pid=number(data.get("pid")) or 0,
            command=str(data.get("command", "")),
            rank=number(data.get("rank")),
            local_rank=number(data.get("local_rank")),
            parent=number(data.get("parent")),
            method=str(data.get("method", "")),
            threads=tuple(threads),
            error=str(data.get("error", "")),
            role=str(data.get("role", "user")),
        )

    @property
    def label(self) -> str:
        """``rank 3 on algo-2 (pid 4711)``, or ``pid 4711 on algo-1`` for a process without a rank."""
        if self.rank is not None:
            return f"rank {self.rank} on {self.host} (pid {self.pid})"
        return f"pid {self.pid} on {self.host}"

    def render(self) -> str:
        """The process's stacks in full, as the log shows them."""
        how = f"by {self.method}" if self.method else "not read"
        lines = [f"--- {self.label}: {self.command} ({how}) ---"]
        if self.error:
            lines.append(f"    no stacks: {self.error}")
        for thread in self.threads:
            state = "" if thread.idle is None else (" (idle)" if thread.idle else " (active)")
            lines.append(f"  thread {thread.name or '?'}{state}, innermost frame first:")
            lines += [f"    {frame.describe()}" for frame in thread.frames] or ["    (no Python frames)"]
        return "\n".join(lines)


def render_stacks(stacks: Iterable[ProcessStacks]) -> str:
    """Every process's stacks in full, one block each."""
    return "\n".join(process.render() for process in stacks)


# --- where a process is ------------------------------------------------------------------------------


def is_library(path: str) -> bool:
    """Whether ``path`` is a library's file (the standard library, site-packages) rather than the user's."""
    return path.startswith("<") or any(part in path for part in _LIBRARY_PARTS)


def user_frames(thread: ThreadStack, code_dir: str | None = None) -> list[int]:
    """The indexes (innermost first) of the frames of ``thread`` in the user's code: files under
    ``code_dir`` or given relative to it (``train.py``), else files outside every library."""
    found = []
    for index, frame in enumerate(thread.frames):
        inside = bool(code_dir) and (
            not os.path.isabs(frame.file) or frame.file.startswith(str(code_dir).rstrip(os.sep) + os.sep)
        )
        if inside or (not code_dir and not is_library(frame.file)):
            found.append(index)
    if not found and code_dir:
        found = [i for i, frame in enumerate(thread.frames) if not is_library(frame.file)]
    return found


def _short(path: str, code_dir: str | None) -> str:
    if code_dir and path.startswith(str(code_dir).rstrip(os.sep) + os.sep):
        return path[len(str(code_dir).rstrip(os.sep)) + 1 :]
    for part in ("site-packages" + os.sep, "dist-packages" + os.sep):
        if part in path:
            return path.split(part, 1)[1]
    return path


def where_it_is(process: ProcessStacks, code_dir: str | None = None, *, calls: int = 3) -> str:
    """One line saying where ``process`` is: its innermost frame in the user's code, then the
    ``calls`` innermost library frames below it (``train.py:10 in main > all_reduce
    (torch/distributed/distributed_c10d.py:2950)``); or why its stacks are unknown."""
    if not process.threads:
        return f"unknown: {process.error or 'no Python stacks'}"
    best: tuple[ThreadStack, list[int]] | None = None
    for thread in process.threads:  # the main thread first; else the first thread in the user's code
        indexes = user_frames(thread, code_dir)
        if indexes and (best is None or thread.name == "MainThread"):
            best = (thread, indexes)
            if thread.name == "MainThread":
                break
    if best is None:
        thread = process.threads[0]
        frames = [f"{f.function} ({_short(f.file, code_dir)}:{f.line})" for f in thread.frames[:calls]]
        return " < ".join(frames) or "no Python frames"
    thread, indexes = best
    innermost = thread.frames[indexes[0]]
    text = f"{_short(innermost.file, code_dir)}:{innermost.line} in {innermost.function}"
    below = thread.frames[: indexes[0]][-calls:] if indexes[0] else ()
    if below:
        text += " > " + " > ".join(
            f"{f.function} ({_short(f.file, code_dir)}:{f.line})" for f in reversed(below)
        )
    return text


# --- finding the job's processes -----------------------------------------------------------------------


def _environ(proc: psutil.Process) -> Mapping[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def _integer(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


_ADOPTED: list[Callable[[], Iterable[psutil.Process]]] = []


@contextlib.contextmanager
def adopted_processes(find: Callable[[], Iterable[psutil.Process]]) -> Iterator[None]:
    """While inside, :func:`job_processes` also counts the processes ``find()`` returns and their
    descendants: the job's processes that smc did not start itself (on an MPI worker host, the ranks
    under Open MPI's daemon, which mpirun started over ssh)."""
    _ADOPTED.append(find)
    try:
        yield
    finally:
        _ADOPTED.remove(find)


def job_processes(root: int | None = None) -> list[psutil.Process]:
    """Every process the job runs on this host: the descendants of ``root`` (default: this smc) and
    the :func:`adopted_processes` with theirs, less py-spy's own."""
    try:
        children = psutil.Process(root or os.getpid()).children(recursive=True)
    except psutil.Error:
        return []
    for find in list(_ADOPTED) if root is None else []:
        for adopted in find():
            with contextlib.suppress(psutil.Error):
                children += [adopted, *adopted.children(recursive=True)]
    found = []
    for proc in {p.pid: p for p in children}.values():
        with contextlib.suppress(psutil.Error):
            if proc.name() != "py-spy" and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def _is_python(proc: psutil.Process, environ: Mapping[str, str]) -> bool:
    with contextlib.suppress(psutil.Error, OSError, IndexError):
        names = [os.path.basename(proc.exe()), os.path.basename(proc.cmdline()[0])]
        if any(name.startswith("python") for name in names):
            return True
    directory = environ.get(STACKS_DIR_VAR)
    return directory is not None and os.path.exists(os.path.join(directory, f"{proc.pid}.stacks"))


def _role(command: str) -> str:
    return "smc" if any(name in command for name in _OWN_MODULES) else "user"


# --- reading stacks ------------------------------------------------------------------------------------


def find_pyspy(environ: Mapping[str, str] | None = None) -> str | None:
    """py-spy's executable: beside this Python (a virtual environment's ``bin``), else on ``PATH``."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy", path=(environ or os.environ).get("PATH"))


def _pyspy_error(text: str) -> str:
    """py-spy's error output in one line, with what it means (its backtrace left out)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cut = next((i for i, line in enumerate(lines) if line.startswith("Stack backtrace")), len(lines))
    message = "; ".join(lines[:cut])[:400] or "no output"
    if "EPERM" in message or "Operation not permitted" in message or "Permission denied" in message:
        message += (
            " (ptrace is not allowed here: the container lacks CAP_SYS_PTRACE, or a seccomp profile or "
            "Yama's ptrace_scope forbids it; e.g. docker run --cap-add SYS_PTRACE)"
        )
    return message


def pyspy_unusable(pyspy: str | None = None, *, timeout: float = 10.0) -> str | None:
    """Why py-spy cannot read the job's processes here, or None when it can: it reads this process's
    own stacks once (what stops it, ``ptrace`` rights, stops it for the user's processes too)."""
    pyspy = pyspy or find_pyspy()
    if pyspy is None:
        return (
            "py-spy is not installed (pip install py-spy; smc-core depends on it where it has a wheel: "
            "Linux x86_64 and aarch64)"
        )
    try:
        done = subprocess.run(
            [pyspy, "dump", "--pid", str(os.getpid())],  # as the job's are read: pausing it
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"py-spy could not run: {error}"
    if done.returncode != 0:
        return f"py-spy cannot read a process here: {_pyspy_error(done.stderr or done.stdout)}"
    return None


def _pyspy_threads(pyspy: str, pid: int, timeout: float) -> tuple[tuple[ThreadStack, ...], str]:
    try:
        done = subprocess.run(
            [pyspy, "dump", "--json", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return (), f"py-spy did not answer within {timeout:g} s"
    except OSError as error:
        return (), f"py-spy could not run: {error}"
    if done.returncode != 0:
        return (), f"py-spy: {_pyspy_error(done.stderr or done.stdout)}"
    try:
        raw = json.loads(done.stdout)
    except ValueError:
        return (), "py-spy's output was not JSON"
    threads = []
    for entry in raw if isinstance(raw, list) else ():
        frames = tuple(
            Frame(str(f.get("name", "?")), str(f.get("filename", "?")), int(f.get("line") or 0))
            for f in entry.get("frames") or ()
        )[:MAX_FRAMES]
        active = entry.get("active")
        main = entry.get("os_thread_id") == pid  # unnamed where the code never imported threading
        threads.append(
            ThreadStack(
                "MainThread" if main else str(entry.get("thread_name") or entry.get("thread_id") or "?"),
                frames,
                (not active) if isinstance(active, bool) else None,
            )
        )
    threads.sort(key=lambda t: t.name != "MainThread")
    return tuple(threads[:MAX_THREADS]), ""


_FH_THREAD = re.compile(
    r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)(?: \[([^\]]*)\])? \(most recent call first\):"
)
_FH_FRAME = re.compile(r'^\s+File "(.*)", line (\d+) in (.*)$')


def parse_faulthandler(text: str) -> tuple[ThreadStack, ...]:
    """faulthandler's ``dump_traceback(all_threads=True)`` text as thread stacks, innermost frame first.

    CPython lists the newest thread first, so the last one is the main thread: it is named
    ``MainThread`` and put first; the others keep their ids."""
    threads: list[ThreadStack] = []
    name = ""
    frames: list[Frame] = []
    for line in [*text.splitlines(), "Thread 0x0 (most recent call first):"]:
        head = _FH_THREAD.match(line)
        if head:
            if name:
                threads.append(ThreadStack(name, tuple(frames[:MAX_FRAMES])))
            name, frames = head.group(2) or head.group(1), []
            continue
        frame = _FH_FRAME.match(line)
        if frame and name:
            frames.append(Frame(frame.group(3).strip(), frame.group(1), int(frame.group(2))))
    if threads:
        main = threads.pop()
        threads.insert(0, ThreadStack("MainThread", main.frames))
    return tuple(threads[:MAX_THREADS])


def _faulthandler_threads(
    pid: int, environ: Mapping[str, str], timeout: float
) -> tuple[tuple[ThreadStack, ...], str]:
    directory = environ.get(STACKS_DIR_VAR)
    signum = _integer(environ.get(STACKS_SIGNAL_VAR))
    path = Path(directory or "", f"{pid}.stacks")
    if not directory or signum is None or not path.exists():
        return (), "faulthandler is not armed in it (it did not start with smc's sitecustomize on PYTHONPATH)"
    try:
        offset = path.stat().st_size
        os.kill(pid, signum)
    except OSError as error:
        return (), f"could not signal it: {error}"
    deadline = time.monotonic() + timeout
    size, steady = offset, 0
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = path.stat().st_size if path.exists() else size
        steady = steady + 1 if now == size and now > offset else 0
        size = now
        if steady >= 3:  # no growth for 0.15 s: the dump is written
            break
    if size <= offset:
        return (), f"faulthandler wrote nothing within {timeout:g} s"
    with path.open("rb") as file:
        file.seek(offset)
        text = file.read(size - offset).decode("utf-8", "replace")
    return parse_faulthandler(text), ""


def _read_one(
    proc: psutil.Process, host: str, tool: str, pyspy: str | None, timeout: float
) -> ProcessStacks | None:
    environ = _environ(proc)
    try:
        command = " ".join(proc.cmdline())[:300]
        parent = proc.ppid()
    except psutil.Error:
        return None
    if not _is_python(proc, environ):
        return None
    rank = _integer(environ.get("RANK"))
    local_rank = _integer(environ.get("LOCAL_RANK"))
    base = ProcessStacks(host, proc.pid, command, rank, local_rank, parent, role=_role(command))
    errors = []
    if tool in ("auto", "py-spy") and pyspy is not None:
        threads, error = _pyspy_threads(pyspy, proc.pid, timeout)
        if threads:
            return _with(base, "py-spy", threads)
        errors.append(error)
    elif tool in ("auto", "py-spy"):
        errors.append("py-spy is not installed")
    if tool in ("auto", "faulthandler"):
        threads, error = _faulthandler_threads(proc.pid, environ, timeout)
        if threads:
            return _with(base, "faulthandler", threads)
        errors.append(error)
    return _with(base, "", (), "; ".join(e for e in errors if e) or "no stacks")


def _with(
    base: ProcessStacks, method: str, threads: tuple[ThreadStack, ...], error: str = ""
) -> ProcessStacks:
    return ProcessStacks(
        base.host,
        base.pid,
        base.command,
        base.rank,
        base.local_rank,
        base.parent,
        method,
        threads,
        error,
        base.role,
    )


def dump_stacks(
    host: str,
    *,
    tool: str = "auto",
    processes: Sequence[psutil.Process] | None = None,
    timeout: float = 10.0,
) -> list[ProcessStacks]:
    """The stacks of every Python process of the job on this host (see the module docstring), the
    user's processes first by rank.

    :param host: this host's name, for the records.
    :param tool: ``auto`` (py-spy, else faulthandler), ``py-spy`` or ``faulthandler`` (``SMC_STACKS``).
    :param processes: the processes to read (default: :func:`job_processes`).
    :param timeout: seconds each process may take.
    """
    found = list(job_processes() if processes is None else processes)
    pyspy = find_pyspy() if tool in ("auto", "py-spy") else None
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(found)))) as pool:
        read = list(pool.map(lambda p: _read_one(p, host, tool, pyspy, timeout), found))
    stacks = [s for s in read if s is not None]
    stacks.sort(key=lambda s: (s.role != "user", s.rank is None, s.rank or 0, s.pid))
    return stacks


def faulthandler_environment(directory: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that arm faulthandler in the job's Python processes: ``PYTHONPATH`` with smc's
    ``sitecustomize`` first, :data:`STACKS_DIR_VAR` and :data:`STACKS_SIGNAL_VAR`."""
    path = environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": os.pathsep.join(p for p in (str(SITE_DIR), path) if p),
        STACKS_DIR_VAR: str(directory),
        STACKS_SIGNAL_VAR: str(STACKS_SIGNAL),
    }
