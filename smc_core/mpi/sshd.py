"""The job's own sshd and keys, for MPI jobs whose ``mpirun`` reaches the other hosts over ssh.

Everything lives in one private directory per job and host (:class:`JobKeys`), made with mode 0700
and removed when the job ends:

* the master host makes a client key pair for the job (:func:`make_key_pair`); only its public half
  leaves the host, handed to the workers over the job's channel (:mod:`smc_core.mpi.launch`);
* every worker host makes its own host key, and starts an sshd (:func:`start_sshd`) that listens on
  the job's network interface only, accepts that one public key (``from=`` the master's address)
  and nothing else: no passwords, no keyboard-interactive, no host-based login, no agent, X11 or TCP
  forwarding, no tunnels, no user environment or rc files;
* the master writes an ssh client configuration (:func:`write_client_config`) that uses the job's
  key, checks the workers' host keys strictly against those they reported, never asks anything
  (``BatchMode``), and a wrapper command for Open MPI's ssh agent setting.

The image must contain ``openssh-server`` (``sshd``) and ``openssh-client`` (``ssh``, ``ssh-keygen``).
Nothing in the image's own ssh setup is read or changed: no ``/root/.ssh``, no ``/etc/ssh``.
"""

from __future__ import annotations

import getpass
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from smc_core.errors import ClusterError, ConfigError
from smc_core.launch.process import SupervisedProcess, start_process

__all__ = [
    "JobKeys",
    "find_program",
    "make_host_key",
    "make_key_pair",
    "sshd_config",
    "start_sshd",
    "write_client_config",
]

_INSTALL_HINT = (
    "Install it in the image (Debian/Ubuntu: apt-get install -y openssh-server openssh-client), "
    "or name it with the setting {setting}."
)
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_program(name: str, configured: str | None = None, setting: str | None = None) -> str:
    """The absolute path of ``name`` (``sshd``, ``ssh``, ``ssh-keygen``): ``configured`` (the value
    of ``setting``) when given, else the one on ``PATH`` or in the usual ``sbin`` directories.

    :raises ConfigError: naming the program, where it was looked for, and how to install it.
    """
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise ConfigError(
                f"{setting} is {configured!r}, which is not an executable file. " + _fix(setting)
            )
        return os.path.abspath(found)
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    found = shutil.which(name, path=search)
    if found is None:
        raise ConfigError(
            f"MPI jobs need {name}, which is not installed (looked in {search}). " + _fix(setting)
        )
    return found


def _fix(setting: str | None) -> str:
    hint = _INSTALL_HINT.format(setting=setting)
    return hint if setting else hint.split(", or name it")[0] + "."


@dataclass
class JobKeys:
    """The private directory that holds one job's keys and ssh files on one host.

    Create it with :meth:`create`; :meth:`remove` deletes it and everything in it.
    """

    directory: Path

    @classmethod
    def create(cls) -> JobKeys:
        """A new directory (mode 0700) under the system's temporary directory."""
        return cls(Path(tempfile.mkdtemp(prefix="smc-mpi-")))

    @property
    def client_key(self) -> Path:
        """The job's private client key (master)."""
        return self.directory / "id_ed25519"

    @property
    def host_key(self) -> Path:
        """This host's private host key for the job's sshd (worker)."""
        return self.directory / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        """The one key the job's sshd accepts (worker)."""
        return self.directory / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        """The workers' host keys, as they reported them to the master."""
        return self.directory / "known_hosts"

    @property
    def client_config(self) -> Path:
        """The ssh client configuration mpirun's ssh uses (master)."""
        return self.directory / "ssh_config"

    @property
    def ssh_agent(self) -> Path:
        """A command that runs ``ssh -F client_config``: Open MPI's ssh agent setting (master)."""
        return self.directory / "ssh"

    def remove(self) -> None:
        """Delete the directory and every key in it."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _keygen(keygen: str, path: Path, comment: str) -> str:
    completed = subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0:
        raise ClusterError(
            f"{keygen} could not make {path}: {completed.stderr.strip() or completed.returncode}"
        )
    return path.with_name(path.name + ".pub").read_text().strip()


def make_key_pair(keys: JobKeys, keygen: str, comment: str = "smc-mpi-job") -> str:
    """Make the job's client key pair in ``keys``; return the public key line."""
    return _keygen(keygen, keys.client_key, comment)


def make_host_key(keys: JobKeys, keygen: str) -> str:
    """Make this host's key for the job's sshd; return its public key line."""
    return _keygen(keygen, keys.host_key, "smc-mpi-host")


def sshd_config(keys: JobKeys, *, address: str, port: int, user: str) -> str:
    """The sshd configuration of the job: one listening address, key login for ``user`` only."""
    lines = [
        f"ListenAddress {address}",
        f"Port {port}",
        f"HostKey {keys.host_key}",
        f"AuthorizedKeysFile {keys.authorized_keys}",
        f"AllowUsers {user}",
        "PidFile none",
        "PubkeyAuthentication yes",
        "AuthenticationMethods publickey",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitEmptyPasswords no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        # The key directory lives under the temporary directory (mode 1777), which StrictModes refuses;
        # smc makes every file in it itself, 0600 in a 0700 directory.
        "StrictModes no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "AllowStreamLocalForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "PermitUserEnvironment no",
        "PermitUserRC no",
        "GatewayPorts no",
        "PrintMotd no",
        "PrintLastLog no",
        "LoginGraceTime 30",
        "MaxAuthTries 2",
        "LogLevel ERROR",
    ]
    return "\n".join(lines) + "\n"


def start_sshd(
    keys: JobKeys,
    *,
    sshd: str,
    address: str,
    port: int,
    master_address: str,
    public_key: str,
    env: Mapping[str, str],
) -> SupervisedProcess:
    """Start the job's sshd on ``address:port`` (in the foreground, supervised), accepting
    ``public_key`` from ``master_address`` only. Stop it with ``.stop()``; its children go with it.
    It obeys the job's supervision policy, as every supervised process does.

    :raises ClusterError: when the configuration is refused (``sshd -t``).
    """
    keys.authorized_keys.write_text(
        f'from="{master_address}",no-agent-forwarding,no-X11-forwarding,no-port-forwarding {public_key}\n'
    )
    keys.authorized_keys.chmod(stat.S_IRUSR | stat.S_IWUSR)
    config = keys.directory / "sshd_config"
    config.write_text(sshd_config(keys, address=address, port=port, user=getpass.getuser()))
    _privilege_separation_dir()
    check = subprocess.run(
        [sshd, "-t", "-f", str(config)], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )
    if check.returncode != 0:
        said = check.stderr.strip() or f"exit code {check.returncode}, no message"
        raise ClusterError(f"{sshd} refuses the job's configuration {config}: {said}")
    return start_process([sshd, "-D", "-e", "-f", str(config)], env=env, prefix="[sshd] ")


def _privilege_separation_dir() -> None:
    # Debian's sshd needs /run/sshd (an image that never ran the service has none).
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def write_client_config(keys: JobKeys, *, ssh: str, port: int, host_keys: Mapping[str, str]) -> Path:
    """Write the ssh client configuration and the agent wrapper for mpirun; return the wrapper.

    :param host_keys: ``{host name or address: public host key line}`` for every worker.
    """
    known = [f"{host} {key}" for host, key in host_keys.items()]
    keys.known_hosts.write_text("\n".join(known) + "\n")
    config = [
        "Host *",
        f"  Port {port}",
        f"  IdentityFile {keys.client_key}",
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        f"  UserKnownHostsFile {keys.known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  HostKeyAlgorithms ssh-ed25519",
        "  BatchMode yes",
        "  PasswordAuthentication no",
        "  KbdInteractiveAuthentication no",
        "  ForwardAgent no",
        "  ForwardX11 no",
        "  ConnectTimeout 20",
        "  ServerAliveInterval 5",
        "  ServerAliveCountMax 4",
        "  LogLevel ERROR",
    ]
    keys.client_config.write_text("\n".join(config) + "\n")
    keys.ssh_agent.write_text(f'#!/bin/sh\nexec {ssh} -F {keys.client_config} "$@"\n')
    keys.ssh_agent.chmod(stat.S_IRWXU)
    return keys.ssh_agent


def ssh_command(keys: JobKeys, ssh: str, host: str, command: Sequence[str]) -> list[str]:
    """The command that runs ``command`` on ``host`` with the job's client configuration."""
    return [ssh, "-F", str(keys.client_config), host, *command]
