"""Running a runner on a job and timing it; interleaving runners; summarising samples.

One sample is one run of a runner's ``train`` on a job directory:

* ``first_line_s``: from just before the harness spawns ``train`` until the user script's first line
  (``time.time()`` on both sides: the same clock).
* ``total_s``: until ``train`` exits.
* ``runner_peak_mib``: the runner process's own ``VmHWM`` (peak resident set) read from ``/proc`` by the
  user script while it runs; the user's process is not counted.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envs import Venv
from jobs import Job, reset_job


@dataclass
class Sample:
    """One run."""

    ok: bool
    first_line_s: float | None = None
    total_s: float | None = None
    runner_peak_mib: float | None = None
    exit_code: int | None = None
    error: str | None = None
    cpu_s: float | None = None
    """CPU time (user + system) of ``train`` and everything it ran, until it exited."""


@dataclass
class Series:
    """The samples of one runner on one measurement (warm-up runs excluded)."""

    runner: str
    venv: str
    samples: list[Sample] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        """The metric's values over the successful samples."""
        return [getattr(s, metric) for s in self.samples if s.ok and getattr(s, metric) is not None]

    def failures(self) -> list[Sample]:
        """The failed samples."""
        return [s for s in self.samples if not s.ok]


def runner_env(venv: Venv, job: Job, common: Mapping[str, str], cache_dir: Path) -> dict[str, str]:
    """The environment ``train`` gets: the same for both runners but for the venv's ``bin`` on PATH."""
    env = {
        "PATH": f"{venv.path / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "SAGEMAKER_BASE_DIR": str(job.base),
        "SMC_BENCH_PID_FILE": str(job.pid_file),
        "SMC_BENCH_RESULT_FILE": str(job.result_file),
        # Cold package caches for every run, as in a fresh container.
        "PIP_CACHE_DIR": str(cache_dir / "pip"),
        "UV_CACHE_DIR": str(cache_dir / "uv"),
    }
    env.update(common)
    env.update(job.extra_env)
    return env


def run_once(venv: Venv, job: Job, common: Mapping[str, str], *, timeout: float = 600.0) -> Sample:
    """Run ``venv``'s ``train`` on ``job`` once and return the sample."""
    reset_job(job)
    cache_dir = job.base.parent / f"{job.name}.cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    env = runner_env(venv, job, common, cache_dir)
    pid_tmp = job.pid_file.with_suffix(".tmp")
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with job.log_file.open("wb") as log:
        started = time.time()
        proc = subprocess.Popen(
            [str(venv.train)], env=env, cwd=str(job.base), stdout=log, stderr=subprocess.STDOUT
        )
        pid_tmp.write_text(str(proc.pid))
        os.replace(pid_tmp, job.pid_file)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return Sample(ok=False, error=f"timed out after {timeout:.0f} s; see {job.log_file}")
        ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shutil.rmtree(cache_dir, ignore_errors=True)
    try:
        result = json.loads(job.result_file.read_text())
    except (OSError, ValueError):
        tail = job.log_file.read_text(errors="replace").strip().splitlines()[-3:]
        return Sample(
            ok=False,
            exit_code=code,
            error=f"the user script did not run (exit code {code}): {' | '.join(tail)}",
        )
    return Sample(
        ok=code == 0,
        first_line_s=result["first_line"] - started,
        total_s=ended - started,
        runner_peak_mib=result["runner_vmhwm_kib"] / 1024 if result.get("runner_pid") == proc.pid else None,
        exit_code=code,
        error=None if code == 0 else f"exit code {code}; see {job.log_file}",
        cpu_s=cpu,
    )


def interleave(
    contenders: Sequence[tuple[str, Venv]],
    job: Job,
    common: Mapping[str, str],
    *,
    runs: int,
    warmup: int,
    verify: Callable[[Venv], str | None] | None = None,
    after_each: Callable[[Venv], None] | None = None,
    progress: Callable[[str], None] = print,
) -> list[Series]:
    """Run every contender on ``job`` in turn (A B A B ...), ``warmup`` rounds discarded then ``runs`` kept.

    :param verify: called after every successful run; a returned message marks the run failed (e.g. the
        requirements were not installed: the run did not do the work being timed).
    :param after_each: called after every run (e.g. to uninstall what the run installed).
    """
    series = [Series(name, venv.path.name) for name, venv in contenders]
    for round_index in range(warmup + runs):
        for (_, venv), s in zip(contenders, series, strict=True):
            sample = run_once(venv, job, common)
            if sample.ok and verify is not None:
                problem = verify(venv)
                if problem:
                    sample.ok, sample.error = False, problem
            if after_each is not None:
                after_each(venv)
            if round_index >= warmup:
                s.samples.append(sample)
            tag = "warm-up" if round_index < warmup else f"run {round_index - warmup + 1}/{runs}"
            shown = f"{sample.first_line_s:.3f} s to first line" if sample.ok else f"FAILED: {sample.error}"
            progress(f"  {job.name:<22} {s.runner:<10} {tag:<9} {shown}")
    return series


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """min, median and max of ``values`` (None when empty)."""
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def paired_ratios(numerator: Series, denominator: Series, metric: str) -> list[float]:
    """``numerator / denominator`` of ``metric`` round by round (both runs of a round must have succeeded)."""
    ratios = []
    for a, b in zip(numerator.samples, denominator.samples, strict=False):
        va, vb = getattr(a, metric), getattr(b, metric)
        if a.ok and b.ok and va is not None and vb:
            ratios.append(va / vb)
    return ratios


# --- plugin discovery, in-process ---------------------------------------------------------------------

# The runner has imported smc_core.host.runner (and with it the environment, reporting and process modules)
# when it calls get_plugin_manager(): the probe does the same before it starts the clock. It reports
#   total_s: a first get_plugin_manager() call, which also imports the built-in default plugins' modules;
#   discovery_s (in a second interpreter): the call once those modules are imported, that is finding the
#     smc.plugins / smc.adapters entry points among all installed distributions and loading what is found.
DISCOVERY_PROBE = """\
import time; t0 = time.perf_counter()
import json, sys
import smc_core.host.runner
import smc_core.host.plugins as plugins
t1 = time.perf_counter()
if sys.argv[1] == "discovery":
    plugins.get_plugin_manager(environ={}, load_entrypoints=False)
    t1 = time.perf_counter()
pm = plugins.get_plugin_manager(environ={})
t2 = time.perf_counter()
from importlib import metadata  # after the clock: the runner imports it only when it needs it
n = len(list(metadata.distributions()))
print(json.dumps({"import_s": t1 - t0, "call_s": t2 - t1, "plugins": len(pm.plugin_info),
                  "adapter": pm.adapter.name if pm.adapter else None, "distributions": n}))
"""

BARE_PROBE = "import time, json; print(json.dumps({'now': time.time()}))"


def discovery_once(venv: Venv) -> dict[str, float]:
    """Fresh interpreters in ``venv``: discovery, the whole first ``get_plugin_manager()``, a bare start."""
    env = {
        "PATH": f"{venv.path / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }

    def probe(mode: str) -> dict[str, float]:
        cmd = [str(venv.python), "-c", DISCOVERY_PROBE, mode]
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    total = probe("total")
    result = {**probe("discovery"), "total_s": total["call_s"], "import_s": total["import_s"]}
    result["discovery_s"] = result.pop("call_s")
    started = time.time()
    subprocess.run([str(venv.python), "-c", BARE_PROBE], env=env, check=True, capture_output=True)
    result["bare_interpreter_s"] = time.time() - started
    return result


# --- where start-up time goes: python -X importtime, by top-level package ----------------------------


def import_profile(venv: Venv, job: Job, common: Mapping[str, str]) -> dict[str, float]:
    """Seconds of import time (self time, ``-X importtime``) per top-level package in one run of ``train``.

    ``-X importtime`` slows imports down itself: compare packages with each other, not with the timings.
    The key ``(all imports)`` holds the sum.
    """
    reset_job(job)
    cache_dir = job.base.parent / f"{job.name}.cache"
    env = runner_env(venv, job, common, cache_dir)
    job.pid_file.write_text("0")
    done = subprocess.run(
        [str(venv.python), "-X", "importtime", str(venv.train)],
        env=env,
        cwd=str(job.base),
        capture_output=True,
        text=True,
        check=False,
    )
    by_package: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(self_us) / 1e6
    by_package["(all imports)"] = sum(by_package.values())
    return by_package


# --- the floor of start-up on the S3 path: its parts, in a fresh interpreter -------------------------

S3_FLOOR_PROBE = """\
import time; t0 = time.perf_counter()
import json, sys
import boto3
t1 = time.perf_counter()
from smc_core.usercode.s3 import S3ObjectReader, s3_client
t2 = time.perf_counter()
client = s3_client()
t3 = time.perf_counter()
reader = S3ObjectReader(client, sys.argv[1], sys.argv[2])
data = reader.read()
t4 = time.perf_counter()
print(json.dumps({"import_boto3_s": t1 - t0, "import_smc_s3_s": t2 - t1, "client_s": t3 - t2,
                  "head_get_s": t4 - t3, "bytes": len(data)}))
"""


def s3_floor_once(venv: Venv, common: Mapping[str, str], bucket: str, key: str) -> dict[str, float]:
    """The parts of smc's start-up on the S3 path, in a fresh interpreter in ``venv``: ``import
    boto3``, importing smc's S3 module, creating the client, HEAD and GET of a small object; and a
    bare interpreter's start (the same for both runners, and for the user's process)."""
    env = {
        "PATH": f"{venv.path / 'bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        **common,
    }
    cmd = [str(venv.python), "-c", S3_FLOOR_PROBE, bucket, key]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    started = time.time()
    subprocess.run([str(venv.python), "-c", BARE_PROBE], env=env, check=True, capture_output=True)
    result["bare_interpreter_s"] = time.time() - started
    return result
