"""Benchmarks: smc against the reference toolkit (PyPI ``sagemaker-training``) on identical job directories.

    .venv/bin/python benchmarks/run.py                   # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick           # a smoke run: one run of each, a small tarball
    .venv/bin/python benchmarks/run.py --only overhead,discovery --runs 9
    .venv/bin/python benchmarks/run.py --update-results  # also rewrite the figures in benchmarks/RESULTS.md

Fairness: both runners are installed into their own virtual environment made from the same interpreter
(``benchmarks/.work``), read the same job directory, reach the same loopback S3 endpoint and package index,
and run interleaved (A B A B ...), warm-up rounds discarded. The reference waits until every host name
resolves, so as root the whole benchmark runs in a private mount and UTS namespace whose ``/etc/hosts``
maps ``algo-1`` (else both get ``SM_STUDIO_LOCAL_MODE=true``, the reference's switch for skipping that wait).
See ``benchmarks/RESULTS.md`` for the figures and what each measurement means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envs
import jobs
import measure
import report
import scale
import services

MEASUREMENTS = (
    "overhead",
    "overhead-requirements",
    "overhead-framework",
    "overhead-requirements-framework",
    "overhead-s3",
    "overhead-s3-framework",
    "fetch",
    "fetch-fast",
    "install",
    "install-pip",
    "discovery",
    "profile",
    "s3-floor",
    "logs",
    "failure",
    "peers",
)
IN_NAMESPACE = "SMC_BENCH_IN_NAMESPACE"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 run, no warm-up, a 10 MB tarball (figures mean nothing)",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="kept runs per runner for 3 and 4 (default 5; --quick 1)"
    )
    parser.add_argument(
        "--overhead-runs",
        type=int,
        default=None,
        help="kept runs per runner for 1 and 2, which take well under a second (default 11; --quick 1)",
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="discarded rounds first (default 1; --quick 0)"
    )
    parser.add_argument(
        "--only",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated measurements (default all: {','.join(MEASUREMENTS)})",
    )
    parser.add_argument("--runners", default="reference,smc", help="which runners (default reference,smc)")
    parser.add_argument(
        "--smc-venv",
        type=Path,
        default=None,
        help="use this existing environment for smc's small runs instead of building one",
    )
    parser.add_argument("--source-mb", type=int, default=None, help="size of sourcedir.tar.gz (default 200)")
    parser.add_argument(
        "--work", type=Path, default=envs.WORK, help="scratch directory (default benchmarks/.work)"
    )
    parser.add_argument(
        "--log-lines", type=int, default=3_000_000, help="lines for the log measurement (default 3M)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write all samples to this JSON file")
    parser.add_argument(
        "--update-results", action="store_true", help="rewrite the figures section of benchmarks/RESULTS.md"
    )
    parser.add_argument(
        "--no-namespace",
        action="store_true",
        help="do not enter a private namespace (use SM_STUDIO_LOCAL_MODE=true instead)",
    )
    args = parser.parse_args(argv)
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 5)
    if args.overhead_runs is None:
        args.overhead_runs = 1 if args.quick else max(11, args.runs)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 1)
    args.source_mb = args.source_mb or (10 if args.quick else 200)
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(args.only) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")
    args.runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    if set(args.runners) - {"reference", "smc"}:
        parser.error("--runners takes reference and/or smc")
    return args


def enter_namespace(work: Path) -> None:
    """Re-run this command in a private mount and UTS namespace where ``algo-1`` resolves (root only)."""
    if os.environ.get(IN_NAMESPACE) or os.geteuid() != 0 or not shutil.which("unshare"):
        return
    work.mkdir(parents=True, exist_ok=True)
    hosts = work / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text().rstrip("\n") + "\n127.0.0.1 algo-1\n")
    script = 'mount --bind "$1" /etc/hosts && hostname algo-1 && shift && exec "$@"'
    cmd = [
        "unshare",
        "--mount",
        "--uts",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
        str(hosts),
        sys.executable,
        *sys.argv,
    ]
    env = {**os.environ, IN_NAMESPACE: "1"}
    try:
        # A dry run first: where namespaces are not allowed, carry on outside.
        subprocess.run(
            [*cmd[:8], script, "sh", str(hosts), "true"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, subprocess.CalledProcessError):
        print("[setup] cannot enter a private namespace; using SM_STUDIO_LOCAL_MODE=true", flush=True)
        return
    os.execvpe(cmd[0], cmd, env)


def algo1_resolves() -> bool:
    """Whether ``algo-1`` resolves here."""
    try:
        socket.gethostbyname("algo-1")
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; returns 0, or 1 when a runner failed every run of a measurement."""
    args = parse_args(argv)
    work: Path = args.work.resolve()
    if not args.no_namespace:
        enter_namespace(work)
    work.mkdir(parents=True, exist_ok=True)
    log = print
    common: dict[str, str] = {
        **services.FAKE_CREDENTIALS,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_CONFIG_FILE": os.devnull,
    }
    if not algo1_resolves():
        common["SM_STUDIO_LOCAL_MODE"] = "true"
    resolution = (
        "resolves" if "SM_STUDIO_LOCAL_MODE" not in common else "does not resolve: SM_STUDIO_LOCAL_MODE=true"
    )
    log(f"[setup] algo-1 {resolution}")

    want = set(args.only)
    need_framework = bool(
        want & {"overhead-framework", "overhead-requirements-framework", "overhead-s3-framework", "discovery"}
    )
    small: dict[str, envs.Venv] = {}
    framework: dict[str, envs.Venv] = {}
    if "reference" in args.runners:
        small["reference"] = envs.ensure_reference("small")
        if need_framework:
            framework["reference"] = envs.ensure_reference("framework")
    if "smc" in args.runners:
        small["smc"] = envs.existing_venv(args.smc_venv) if args.smc_venv else envs.ensure_smc("small")
        if need_framework and not (args.quick and args.smc_venv):
            framework["smc"] = envs.ensure_smc("framework")
    for venv in [*small.values(), *framework.values()]:
        log(f"[setup] {venv.path.name}: {venv.distributions()} distributions installed")

    jobs_root = work / "jobs"
    jobs_root.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[measure.Series]] = {}
    discovery: dict[str, list[dict[str, float]]] = {}

    def contenders(pool: dict[str, envs.Venv]) -> list[tuple[str, envs.Venv]]:
        return [(name, pool[name]) for name in ("reference", "smc") if name in pool]

    def timed(
        name: str, pool: dict[str, envs.Venv], job: jobs.Job, env: dict[str, str], **kw: object
    ) -> None:
        if name not in want or not pool:
            return
        log(f"[{name}] {', '.join(v.path.name for v in pool.values())}")
        results[name] = measure.interleave(
            contenders(pool),
            job,
            env,
            runs=args.overhead_runs if name.startswith("overhead") else args.runs,
            warmup=args.warmup,
            progress=log,
            **kw,
        )  # type: ignore[arg-type]

    plain = jobs.make_job(jobs_root, "plain")
    present = jobs.make_job(jobs_root, "requirements-present", requirements=jobs.REQUIREMENTS_PRESENT)
    timed("overhead", small, plain, common)
    timed("overhead-requirements", small, present, common)
    timed("overhead-framework", framework, plain, common)
    timed("overhead-requirements-framework", framework, present, common)

    if "fetch" in want:
        tarball = jobs.make_sourcedir(
            work / "data" / f"sourcedir-{args.source_mb}mb.tar.gz", megabytes=args.source_mb
        )
        with services.s3_endpoint(work) as endpoint:
            services.upload(endpoint, jobs.BUCKET, jobs.SOURCE_KEY, tarball)
            size = tarball.stat().st_size / 1e6
            log(
                f"[fetch] {size:.0f} MB, {jobs.tar_member_count(tarball)} members at s3://{jobs.BUCKET}/"
                f"{jobs.SOURCE_KEY} on {endpoint}"
            )
            fetch = jobs.make_job(jobs_root, "fetch", s3_uri=f"s3://{jobs.BUCKET}/{jobs.SOURCE_KEY}")

            def extracted(venv: envs.Venv) -> str | None:
                # Every file there, byte for byte: a run that fetched nothing or half must not be timed.
                return jobs.differences_from_tarball(tarball, fetch.base / "code")

            timed("fetch", small, fetch, {**common, "AWS_ENDPOINT_URL": endpoint}, verify=extracted)

    limits: dict[str, list[float]] = {}
    floor: list[dict[str, float]] = []
    if want & {"overhead-s3", "overhead-s3-framework", "fetch-fast", "s3-floor"}:
        # The same job from s3://, served by a static endpoint fast enough not to be what is measured.
        root = work / "s3root"
        small_tar = jobs.make_small_sourcedir(work / "data" / "small.tar.gz")
        services.place(root, jobs.BUCKET, jobs.SMALL_KEY, small_tar)
        tarball = None
        if "fetch-fast" in want:
            tarball = jobs.make_sourcedir(
                work / "data" / f"sourcedir-{args.source_mb}mb.tar.gz", megabytes=args.source_mb
            )
            services.place(root, jobs.BUCKET, jobs.SOURCE_KEY, tarball)
        with services.static_s3_endpoint(root, work) as endpoint:
            s3env = {**common, "AWS_ENDPOINT_URL": endpoint}
            s3_small = jobs.make_job(jobs_root, "s3-plain", s3_uri=f"s3://{jobs.BUCKET}/{jobs.SMALL_KEY}")
            small_manifest = jobs.tar_manifest(small_tar)
            timed(
                "overhead-s3",
                small,
                s3_small,
                s3env,
                verify=lambda venv: jobs.check_extracted(
                    s3_small.base / "code", small_manifest, digests=True
                ),
            )
            timed(
                "overhead-s3-framework",
                framework,
                s3_small,
                s3env,
                verify=lambda venv: jobs.check_extracted(
                    s3_small.base / "code", small_manifest, digests=True
                ),
            )
            if tarball is not None:
                fast = jobs.make_job(jobs_root, "fetch-fast", s3_uri=f"s3://{jobs.BUCKET}/{jobs.SOURCE_KEY}")
                fast_manifest = jobs.tar_manifest(tarball)
                log(f"[fetch-fast] {tarball.stat().st_size / 1e6:.0f} MB on the static endpoint {endpoint}")
                url = f"{endpoint}/{jobs.BUCKET}/{jobs.SOURCE_KEY}"

                def limit_after(venv: envs.Venv) -> None:
                    # The limit, measured in the same rounds: the transfer alone, then GNU tar alone.
                    if venv.runner != "smc":
                        return
                    transfer = services.transfer_seconds(url)
                    tar = jobs.gnu_tar_seconds(tarball, work / "tar-limit")
                    limits.setdefault("transfer", []).append(transfer)
                    if tar is not None:
                        limits.setdefault("tar", []).append(tar)
                        limits.setdefault("sum", []).append(transfer + tar)
                    log(f"  {'limit':<22} transfer {transfer:.3f} s + GNU tar {tar or 0:.3f} s")

                timed(
                    "fetch-fast",
                    small,
                    fast,
                    s3env,
                    verify=lambda venv: jobs.check_extracted(
                        fast.base / "code", fast_manifest, digests=args.quick
                    ),
                    after_each=limit_after,
                )
            if "s3-floor" in want and "smc" in small:
                log("[s3-floor] the parts of start-up on the S3 path, fresh interpreters")
                for index in range(args.warmup + max(args.runs, 5 if not args.quick else 1)):
                    sample = measure.s3_floor_once(small["smc"], s3env, jobs.BUCKET, jobs.SMALL_KEY)
                    if index >= args.warmup:
                        floor.append(sample)

    if want & {"install", "install-pip"}:
        index_root = jobs.make_package_index(work / "index", jobs.REQUIREMENTS_NEW)
        with services.package_index(index_root, work) as index_url:
            install = jobs.make_job(jobs_root, "install", requirements=jobs.REQUIREMENTS_NEW)
            # Both runners read pip's settings (smc hands them on to uv when it uses uv).
            env = {**common, "PIP_INDEX_URL": index_url}

            def uninstall(venv: envs.Venv) -> None:
                subprocess.run(
                    [str(venv.python), "-m", "pip", "uninstall", "-q", "-y", *jobs.REQUIREMENTS_NEW],
                    env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )

            def installed(venv: envs.Venv) -> str | None:
                check = "import attr, click, idna, tabulate, toml, tqdm"
                done = subprocess.run([str(venv.python), "-c", check], capture_output=True, check=False)
                return None if done.returncode == 0 else "the requirements were not installed"

            for venv in small.values():
                uninstall(venv)
            timed("install", small, install, env, verify=installed, after_each=uninstall)
            # The same with smc told to use pip: how much of the difference is uv's.
            pip_env = {**env, "SMC_INSTALLER": "pip"}
            timed("install-pip", small, install, pip_env, verify=installed, after_each=uninstall)

    if "discovery" in want and "smc" in args.runners:
        pools = [small["smc"], *([framework["smc"]] if "smc" in framework else [])]
        log(f"[discovery] {', '.join(v.path.name for v in pools)}")
        for venv in pools:
            discovery[f"{venv.path.name}"] = []
        for round_index in range(args.warmup + max(args.runs, 5 if not args.quick else 1)):
            for venv in pools:
                sample = measure.discovery_once(venv)
                if round_index >= args.warmup:
                    discovery[venv.path.name].append(sample)
                log(
                    f"  {venv.path.name:<22} discovery {sample['discovery_s'] * 1000:.1f} ms, "
                    f"import {sample['import_s'] * 1000:.1f} ms"
                )

    big: dict[str, list[dict[str, object]]] = {}
    if "logs" in want:
        lines = 30_000 if args.quick else args.log_lines
        log(f"[logs] {lines:,} lines: direct, smc local, torchrun (2 processes), smc local + torchrun")
        out_dir = Path("/dev/shm") if Path("/dev/shm").is_dir() else work
        for index in range(args.warmup + (1 if args.quick else 3)):
            for how in ("direct", "smc", "torchrun", "smc-torchrun"):
                run = scale.logs_once(work, how, lines, out_dir)
                if index >= args.warmup:
                    big.setdefault(f"logs-{how}", []).append(asdict(run))
                log(f"  logs {how:<14} {run.seconds:.2f} s {run.problem or 'every line whole, in order'}")
    if "failure" in want:
        hosts = ["one-host"] + (["two-hosts"] if scale.netns_available() else [])
        log(f"[failure] a rank raises: {', '.join(hosts)}")
        for _ in range(1 if args.quick else 5):
            for how in hosts:
                run = (scale.failure_once_one_host if how == "one-host" else scale.failure_once_two_hosts)(
                    work
                )
                big.setdefault(f"failure-{how}", []).append(asdict(run))
                log(
                    f"  failure {how:<10} {run.seconds or 0:.2f} s, exit codes {run.exit_codes} "
                    f"{run.problem or ''}"
                )
    if "peers" in want and scale.netns_available():
        log("[peers] algo-2 resolves on algo-1 5 s late")
        for _ in range(1 if args.quick else 3):
            run = scale.peers_once(work)
            big.setdefault("peers", []).append(asdict(run))
            log(f"  peers {run.seconds or 0:.3f} s from resolvable to launch {run.problem or ''}")

    profile: dict[str, dict[str, list[float]]] = {}
    if "profile" in want:
        log(f"[profile] python -X importtime, {', '.join(v.path.name for v in small.values())}")
        for _ in range(max(args.runs, 1)):
            for name, venv in contenders(small):
                for package, seconds in measure.import_profile(venv, plain, common).items():
                    profile.setdefault(name, {}).setdefault(package, []).append(seconds)

    command = "make bench" if not sys.argv[1:] else "python benchmarks/run.py " + " ".join(sys.argv[1:])
    info = report.machine()
    info["reference"] = envs.REFERENCE_REQUIREMENT
    info["host name resolution"] = (
        "private mount+UTS namespace, /etc/hosts maps algo-1"
        if os.environ.get(IN_NAMESPACE)
        else "algo-1 resolves"
        if "SM_STUDIO_LOCAL_MODE" not in common
        else "SM_STUDIO_LOCAL_MODE=true"
    )
    info["runs"] = (
        f"{args.overhead_runs} (measurements 1, 2) and {args.runs} (3, 4, 6, profile) kept per runner "
        f"after {args.warmup} warm-up round(s), interleaved"
    )
    section = report.render(results, discovery, info, command, profile, limits=limits, floor=floor, big=big)
    print()
    print(section)
    (work / "latest.md").write_text(section)
    if args.json:
        payload = {
            "info": info,
            "discovery": discovery,
            "profile": profile,
            "limits": limits,
            "floor": floor,
            "scale": big,
            "results": {k: [asdict(s) for s in v] for k, v in results.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2))
    if args.update_results:
        report.update_results_file(Path(__file__).resolve().parent / "RESULTS.md", section)
        log("[done] wrote benchmarks/RESULTS.md")
    failed_all = [
        f"{name}/{s.runner}"
        for name, series in results.items()
        for s in series
        if s.samples and not any(x.ok for x in s.samples)
    ]
    # torchrun's own --tee (the baseline) splits lines under load: reported, not a failure of the run.
    failed_all += [
        f"{name}: {run['problem']}"
        for name, runs in big.items()
        if name != "logs-torchrun"
        for run in runs
        if run.get("problem")
    ]
    if failed_all:
        log(f"[done] every run failed for: {', '.join(failed_all)} (see the logs under {jobs_root})")
    return 1 if failed_all else 0


if __name__ == "__main__":
    sys.exit(main())
