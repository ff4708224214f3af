"""The fault catalogue: each fault, the exit code, the failure file's first line, what is preserved.

``docs/faults.md`` is rendered from this table (``python -m tests.faults.catalogue > docs/faults.md``)
and a test keeps the two the same. Every row runs as a test through the real ``train`` or ``smc``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.faults import cases_config as cfg
from tests.faults import cases_fetch as fetch
from tests.faults import cases_run as run
from tests.faults.kit import Kit, Outcome

NONE = ""  # no failure file: the job dir cannot hold one (or the command writes none)


@dataclass(frozen=True)
class Case:
    """One fault: how it is made, and how smc must end."""

    id: str
    run: Callable[[Kit], Outcome]
    fault: str
    exit_code: int
    first_line: str
    """What the failure file's first line starts with (``NONE``: no failure file)."""
    preserved: str


CASES: tuple[Case, ...] = (
    # --- configuration and the job dir: exit 2 -------------------------------------------------------
    Case("hp-json-malformed", cfg.hp_json_malformed, "hyperparameters.json is not JSON", 2,
         "ConfigError: ", "code not run"),
    Case("hp-json-missing", cfg.hp_json_missing, "hyperparameters.json missing", 2,
         "ConfigError: ", "names the missing file; code not run"),
    Case("input-config-missing", cfg.input_config_missing, "input/config missing", 2,
         "ConfigError: ", "names the missing directory"),
    Case("base-dir-missing", cfg.base_dir_missing, "SAGEMAKER_BASE_DIR mistyped (does not exist)", 2,
         NONE, "nothing created under it; stderr names it"),
    Case("output-is-a-file", cfg.output_is_a_file, "output/ is a regular file", 2,
         NONE, "the file untouched; code not run; no traceback"),
    Case("job-dir-read-only", cfg.job_dir_read_only, "job dir on a read-only mount (tmpfs, root)", 2,
         NONE, "stderr names output/; no traceback"),
    Case("current-host-unknown", cfg.current_host_unknown, "current_host not in hosts", 2,
         "ConfigError: ", "code not run"),
    Case("program-not-a-string", cfg.program_not_a_string, "sagemaker_program is 5", 2,
         "ConfigError: ", "code not run"),
    Case("program-empty", cfg.program_empty, 'sagemaker_program is ""', 2,
         "ConfigError: ", "says it is empty"),
    Case("program-missing", cfg.program_missing, "sagemaker_program misspelt", 2,
         "ConfigError: The entry point 'tran.py'", "did-you-mean train.py"),
    Case("program-is-a-directory", cfg.program_is_a_directory, "sagemaker_program names a directory", 2,
         "ConfigError: The entry point 'scripts' (sagemaker_program) is a directory", "no did-you-mean"),
    Case("program-climbs-out", cfg.program_climbs_out, "sagemaker_program is ../../x.py", 2,
         "ConfigError: The entry point '../../x.py' (sagemaker_program) is outside", "x.py not run"),
    Case("program-absolute", cfg.program_absolute, "sagemaker_program is an absolute path", 2,
         "ConfigError: The entry point '/", "the outside script not run"),
    Case("grace-period-negative", cfg.grace_period_negative, "SMC_GRACE_PERIOD=-5", 2,
         "ConfigError: The environment variable SMC_GRACE_PERIOD is '-5'", "code not run"),
    Case("grace-period-nan", cfg.grace_period_not_a_number, "SMC_GRACE_PERIOD=abc", 2,
         "ConfigError: The environment variable SMC_GRACE_PERIOD is 'abc'", "code not run"),
    Case("s3-timeout-zero", cfg.s3_timeout_zero, "SMC_S3_TIMEOUT=0", 2,
         "ConfigError: The environment variable SMC_S3_TIMEOUT", "code not run"),
    Case("s3-retries-negative", cfg.s3_retries_negative, "SMC_S3_RETRIES=-1", 2,
         "ConfigError: The environment variable SMC_S3_RETRIES", "code not run"),
    Case("install-timeout-bad", cfg.install_timeout_bad, "SMC_INSTALL_TIMEOUT=soon", 2,
         "ConfigError: The environment variable SMC_INSTALL_TIMEOUT", "code not run"),
    Case("leftover-grace-negative", cfg.leftover_grace_negative, "SMC_LEFTOVER_GRACE=-1", 2,
         "ConfigError: The environment variable SMC_LEFTOVER_GRACE", "code not run"),
    Case("existing-code-bogus", cfg.existing_code_bogus, "SMC_EXISTING_CODE=overwrite", 2,
         "ConfigError: The environment variable SMC_EXISTING_CODE", "code not run"),
    Case("hyperparameter-10mb", cfg.hyperparameter_10mb, "a 10 MB hyperparameter", 2,
         "ConfigError: The hyperparameter 'blob'", "code not run; suggests a file in a channel"),
    Case("hyperparameter-200kb", cfg.hyperparameter_over_one_argument, "a 200 KB hyperparameter (> MAX_ARG_STRLEN)", 2,
         "ConfigError: The hyperparameter 'vocab'", "names only the large one"),
    Case("switch-unclaimed", cfg.unclaimed_switch, "sagemaker_mpi_enabled with no plugin to launch it", 2,
         "ConfigError: ", "code not run"),
    Case("channel-dir-missing", cfg.channel_dir_missing, "a File-mode channel's directory missing", 2,
         "ConfigError: ", "code not run"),
    Case("job-dir-busy", cfg.second_job_on_busy_dir, "a second train on a job dir whose job runs", 2,
         NONE, "first job's code, config and outcome untouched; it succeeds"),
    Case("env-no-job-dir", cfg.smc_env_without_job_dir, "smc env with no job dir", 2,
         NONE, "prints no made-up environment"),
    Case("exec-error-label", cfg.smc_exec_error_names_the_command, "smc exec error message", 2,
         NONE, "stderr starts 'smc exec: '"),
    Case("local-job-name-climbs", cfg.local_job_name_climbs_out, "smc local --job-name ../../../x", 2,
         NONE, "nothing written outside ./.smc/jobs"),
    Case("local-job-name-absolute", cfg.local_job_name_absolute, "smc local --job-name /abs/path", 2,
         NONE, "nothing written there"),
    Case("local-job-name-dotdot", cfg.local_job_name_dotdot, "smc local --job-name ..", 2,
         NONE, "nothing written"),
    # --- plugins: exit 3; internal errors: exit 1 -------------------------------------------------------
    Case("plugin-missing", cfg.plugin_missing, "SMC_PLUGINS names a module that is not there", 3,
         "PluginError: ", "code not run"),
    Case("plugin-crashes", cfg.plugin_crashes, "a plugin's hook raises RuntimeError", 1,
         "InternalError: internal error in smc or a plugin: RuntimeError", "traceback in the log"),
    # --- stop signals before the user's code: 128 + signal ------------------------------------------------
    Case("sigterm-loading", cfg.sigterm_while_loading, "SIGTERM while loading the environment", 143,
         "JobStopped: the job was stopped by SIGTERM while reading the job's configuration", "code not run"),
    Case("sigint-loading", cfg.sigint_while_loading, "SIGINT while loading the environment", 130,
         "JobStopped: the job was stopped by SIGINT", "code not run"),
    Case("sigterm-s3-download", fetch.sigterm_during_s3_download, "SIGTERM while S3 never answers", 143,
         "JobStopped: the job was stopped by SIGTERM while fetching the user's code", "no staging dir left"),
    Case("sigterm-s3-retrying", fetch.sigterm_mid_body, "SIGTERM while S3 GETs are being retried", 143,
         "JobStopped: the job was stopped by SIGTERM while fetching", "no staging dir left; code not run"),
    Case("sigterm-install", run.sigterm_during_install, "SIGTERM while pip waits on an index", 143,
         "JobStopped: the job was stopped by SIGTERM while preparing the job", "code not run; no InstallError"),
    Case("sigterm-host-wait", run.sigterm_while_waiting_for_hosts, "SIGTERM while waiting for a peer host", 143,
         "JobStopped: the job was stopped by SIGTERM while preparing the job", "code not run"),
    # --- fetching the code: exit 4 (or success after transient faults) -----------------------------------
    Case("s3-refused", fetch.s3_connection_refused, "S3 endpoint refuses connections", 4,
         "FetchError: s3://bucket/job/source/sourcedir.tar.gz: HEAD failed at http://127.0.0.1:",
         "retries logged; no AttributeError"),
    Case("s3-silent", fetch.s3_endpoint_never_answers, "S3 endpoint accepts and never answers", 4,
         "FetchError: s3://bucket/code.tar.gz: HEAD failed at http://127.0.0.1:", "ends within SMC_S3_TIMEOUT"),
    Case("s3-head-503x6", fetch.s3_head_503_then_ok, "HEAD answered 503 six times, then 200", 0,
         NONE, "six retries logged; code runs"),
    Case("s3-get-reset", fetch.s3_get_reset_mid_body, "GET reset twice mid-body", 0,
         NONE, "resumed with Range; code runs"),
    Case("s3-get-500", fetch.s3_get_500_always, "GET always 500", 4,
         "FetchError: s3://", "no staging dir left"),
    Case("s3-object-missing", fetch.s3_object_missing, "the object does not exist", 4,
         "FetchError: s3://", "says the object, not the bucket"),
    Case("s3-bucket-missing", fetch.s3_bucket_missing, "the bucket does not exist", 4,
         "FetchError: s3://no-such-bucket-smc/code.tar.gz: NoSuchBucket", "says the bucket"),
    Case("s3-truncated-targz", fetch.s3_truncated_tar_gz, ".tar.gz cut short (S3)", 4,
         "FetchError: s3://", "nothing extracted into code/; code not run"),
    Case("local-truncated-targz", fetch.local_truncated_tar_gz, ".tar.gz cut short (local path)", 4,
         "FetchError: ", "code not run"),
    Case("gzip-corrupt", fetch.corrupt_gzip, "a flipped byte inside the gzip stream", 4,
         "FetchError: ", "code not run"),
    Case("gzip-crc-wrong", fetch.gzip_trailer_wrong, "the gzip trailer's CRC is wrong", 4,
         "FetchError: ", "code not run"),
    Case("tar-cut-mid-member", fetch.plain_tar_cut_mid_member, "an uncompressed .tar cut inside a member", 4,
         "FetchError: ", "code not run"),
    Case("s3-zip", fetch.s3_zip_source, "the source is a zip archive (S3)", 0,
         NONE, "extracted and run"),
    Case("local-zip", fetch.local_zip_source, "the source is a zip archive (local path)", 0,
         NONE, "extracted and run"),
    Case("zip-truncated", fetch.truncated_zip, "a zip cut short", 4,
         "FetchError: s3://", "code not run"),
    Case("zip-climbs-out", fetch.zip_climbs_out, "a zip member named ../evil.py", 4,
         "FetchError: s3://", "nothing written outside code/"),
    Case("s3-not-an-archive", fetch.s3_not_an_archive, "the S3 object is a script, not an archive", 4,
         "FetchError: s3://", "says it is not an archive"),
    Case("local-not-an-archive", fetch.local_file_named_like_archive, "a local code.tar.gz that is text", 4,
         "FetchError: ", "not blamed on the entry point"),
    Case("member-absolute", fetch.member_absolute, "an archive member with an absolute path", 4,
         "FetchError: ", "nothing written outside"),
    Case("member-dotdot", fetch.member_dotdot, "an archive member named ../../evil.txt", 4,
         "FetchError: ", "nothing written outside"),
    Case("member-symlink-out", fetch.member_symlink_outside, "a symlink member pointing outside", 4,
         "FetchError: ", "no link created"),
    Case("member-device", fetch.member_device, "a character device member", 4,
         "FetchError: ", "no device created"),
    Case("source-http", fetch.source_http, "sagemaker_submit_directory is http://", 4,
         "FetchError: http://example.invalid/code.tar.gz: unsupported code source", "code not run"),
    Case("source-local-missing", fetch.source_local_missing, "the local source does not exist", 4,
         "FetchError: ", "code not run"),
    Case("source-bad-s3-uri", fetch.source_bad_s3_uri, "s3://bucket-only (no key)", 4,
         "FetchError: ", "code not run"),
    Case("existing-code-error", fetch.existing_code_error_policy, "SMC_EXISTING_CODE=error, other code present", 4,
         "FetchError: The code dir", "the code present untouched"),
    Case("stale-staging", fetch.stale_staging_cleaned, "a staging dir left by a killed run", 0,
         NONE, "removed at the next start, with a warning"),
    # --- installing: exit 5 ---------------------------------------------------------------------------
    Case("requirement-not-found", run.requirement_not_found, "requirements.txt names a missing dist", 5,
         "InstallError: ", "code not run"),
    Case("index-refused", run.index_refuses_connections, "the package index refuses connections", 5,
         "InstallError: Installing ", "headline names the index URL"),
    Case("index-hangs", run.index_hangs, "the package index never answers (SMC_INSTALL_TIMEOUT=5)", 5,
         "InstallError: Installing ", "stopped after the timeout"),
    # --- hosts: exit 6 --------------------------------------------------------------------------------
    Case("peer-unresolved", run.peer_never_resolves, "a peer host never resolves (pytorch adapter)", 6,
         "ClusterError: ", "code not run"),
    # --- the user's code: its own exit code --------------------------------------------------------------
    Case("user-exit-2", run.user_exits_2, "the script exits 2 (same code as a config error)", 2,
         "UserCodeError: ValueError: bad flag", "first line tells it from smc's 2"),
    Case("user-exit-4", run.user_exits_4, "the script exits 4 (same code as a fetch error)", 4,
         "UserCodeError: the training code exited with exit code 4", "the user's code kept"),
    Case("user-exit-5", run.user_exits_5, "the script exits 5 (same code as an install error)", 5,
         "UserCodeError: the training code exited with exit code 5", "the user's code kept"),
    Case("user-exit-7", run.user_exits_7, "the script exits 7", 7,
         "UserCodeError: the training code exited with exit code 7", "the user's code kept"),
    Case("user-raises", run.user_raises, "the script raises ValueError", 1,
         "UserCodeError: ValueError: loss is NaN", "traceback in the failure file"),
    Case("user-exit-0-failure-file", run.user_exit_0_wrote_failure, "the script exits 0 but wrote output/failure",
         1, "my reason", "the user's failure file kept; no success file; a warning"),
    Case("user-sigkill-self", run.user_kills_itself, "the script is killed by SIGKILL (not by smc)", 137,
         "UserCodeError: the training code ended: killed by SIGKILL (not by smc", "not blamed on smc"),
    Case("user-segfault", run.user_segfaults, "the script segfaults", 139,
         "UserCodeError: the training code ended: a segmentation fault", "the signal kept"),
    Case("sigterm-user-exits", run.sigterm_user_exits, "SIGTERM while the script runs", 143,
         "UserCodeError: the training code ended: terminated (SIGTERM)", "signal passed on"),
    Case("sigint-user-exits", run.sigint_user_exits, "SIGINT while the script runs", 130,
         "UserCodeError: ", "signal passed on"),
    Case("sigterm-grace-runs-out", run.sigterm_user_ignores, "SIGTERM ignored; grace period 1 s", 137,
         "UserCodeError: the training code ended: killed by SIGKILL, sent by smc when the grace period",
         "says how to lengthen it"),
    Case("sigterm-checkpoint", run.sigterm_user_checkpoints, "SIGTERM; the script checkpoints and exits 0", 0,
         NONE, "checkpoint written"),
    Case("orphan-new-session", run.orphan_in_new_session, "a child in a new session ignoring SIGTERM, holding stdout", 0,
         NONE, "child stopped within 10 s, named in a warning"),
    Case("orphan-parent-3s", run.orphan_parent_lives_3s, "a new-session child whose parent lives 3 s", 0,
         NONE, "child stopped"),
    Case("grandchild-in-group", run.grandchild_in_group, "the script exits 3 leaving a child", 3,
         "UserCodeError: ", "child stopped"),
    Case("double-fork-daemon", run.double_fork_daemon, "a double-forked daemon", 0,
         NONE, "daemon stopped"),
    Case("disk-full-exit-7", run.disk_full_user_exits_7, "the script fills the disk (tmpfs) and exits 7", 7,
         "UserCodeError: OSError: [Errno 28] No space left on device", "exit code kept; failure file written"),
    Case("disk-full-exit-0", run.disk_full_user_exits_0, "the script fills the disk and exits 0", 0,
         NONE, "success written"),
    Case("output-flood", run.flood_of_output, "200 000 lines of output, then exit 9", 9,
         "UserCodeError: RuntimeError: flood", "exit code kept"),
    Case("invalid-utf8", run.invalid_utf8_output, "invalid UTF-8 on stderr", 11,
         "UserCodeError: KeyError: ", "exit code kept"),
    Case("entry-not-executable", run.entry_not_executable, "an entry point with no #! and no x bit", 2,
         "ConfigError: The entry point ", "code not run"),
    Case("success", run.success, "nothing wrong", 0, NONE, "success written; reserve removed"),
)


def render() -> str:
    """``docs/faults.md``."""
    lines = [
        "# Fault catalogue",
        "",
        "Every row is a test through the real `train` or `smc` (`tests/faults/test_catalogue.py`, table in",
        "`tests/faults/catalogue.py`; regenerate this file with `python -m tests.faults.catalogue > docs/faults.md`).",
        "Exit codes 2-6 are both smc's own and codes a user's script may exit with: the failure file's first",
        "line tells them apart (`ConfigError`, `PluginError`, `FetchError`, `InstallError`, `ClusterError`",
        "against `UserCodeError`); an smc-internal crash says `InternalError: internal error` there.",
        "",
        "| id | fault | exit | failure file's first line starts | preserved / checked |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        first = f"`{case.first_line}`" if case.first_line else "(no failure file)"
        lines.append(f"| {case.id} | {case.fault} | {case.exit_code} | {first} | {case.preserved} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
