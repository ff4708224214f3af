"""Settings: every ``SMC_*`` variable (and each adapter's own) declared once, parsed once.

A :class:`Setting` names an environment variable, its type, default, description and owner. The core
declares its own in :data:`CORE_SETTINGS`; a plugin or adapter declares its own by implementing the
``register_settings`` hook. At start the runner parses every declared setting from the environment it
was given (never ``os.environ`` behind its back), whether or not this job uses it, so a bad value
fails the job at once with a :class:`ConfigError` (exit 2) that names the variable, the value and
what is accepted. The parsed values travel with the job as ``training_env.settings``::

    from smc_core import Setting

    PROCESSES_PER_HOST = Setting.integer(
        "SMC_MYFW_PROCESSES", default=None, minimum=1, owner="smc-myfw",
        description="processes per host (default: one per GPU, else 1)",
    )

    @hookimpl
    def register_settings():
        return [PROCESSES_PER_HOST]

    @hookimpl
    def prepare_training(training_env, user_code):
        count = training_env.settings[PROCESSES_PER_HOST]  # an int, or None when unset
"""

from __future__ import annotations

import functools
import json
import math
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from smc_core.base.messages import did_you_mean
from smc_core.errors import ConfigError, PluginError

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable that smc or a plugin reads.

    Build one with a constructor (:meth:`seconds`, :meth:`integer`, :meth:`switch`, :meth:`choice`,
    :meth:`text`, :meth:`identifier`, :meth:`names`) rather than directly: each parses and validates
    its type the same way.
    """

    name: str
    """The environment variable (``SMC_GRACE_PERIOD``)."""
    default: T
    """The value when the variable is unset or empty."""
    description: str
    """One sentence for the settings reference, ``smc --help`` and the README."""
    parse: Callable[[str], T] = field(repr=False, compare=False)
    """Turns the variable's text into the value; raises ``ValueError`` for a bad value."""
    accepted: str
    """What the variable accepts, for the reference and for error messages (``a number of seconds >= 0``)."""
    owner: str = "smc-core"
    """The distribution that declares it."""
    policy: bool = False
    """A field of the job's supervision policy (:class:`~smc_core.base.supervision.Supervision`): the
    runner builds the policy from every such setting, and launches read it there
    (``training_env.supervision[SETTING]``); ``smc env`` and the job's log show it with the rest."""

    def read(self, environ: Mapping[str, str]) -> T:
        """The value in ``environ``, or :attr:`default` when unset or empty.

        :raises ConfigError: the value is not accepted; the message names the variable, the value
            and what is accepted.
        """
        raw = environ.get(self.name, "")
        if not raw.strip():
            return self.default
        try:
            return self.parse(raw.strip())
        except (ValueError, TypeError) as error:
            detail = f" ({error})" if str(error) else ""
            raise ConfigError(
                f"The environment variable {self.name} is {raw!r}{detail}, but it takes "
                f"{self.accepted}: {self.description}. Set it to an accepted value, or unset it "
                f"for the default ({self.default_text})."
            ) from None

    @property
    def default_text(self) -> str:
        """The default as the reference shows it."""
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "1" if self.default else "0"
        if isinstance(self.default, (list, tuple, frozenset)):
            return ",".join(self.default) or "empty"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        return str(self.default)

    # --- constructors --------------------------------------------------------------------------
    @staticmethod
    def seconds(
        name: str,
        default: float | None,
        description: str,
        *,
        minimum: float = 0.0,
        positive: bool = False,
        owner: str = "smc-core",
        policy: bool = False,
    ) -> Setting[Any]:
        """A duration in seconds (a float); negative values are refused, zero too when ``positive``.

        ``policy=True`` makes it a field of the job's supervision policy (see :attr:`Setting.policy`).
        """
        bound = "> 0" if positive else f">= {minimum:g}"
        parse = functools.partial(_parse_seconds, minimum=minimum, positive=positive)
        return Setting(name, default, description, parse, f"a number of seconds {bound}", owner, policy)

    @staticmethod
    def integer(
        name: str,
        default: int | None,
        description: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        owner: str = "smc-core",
    ) -> Setting[Any]:
        """A whole number within ``[minimum, maximum]`` (either bound optional)."""
        if minimum is not None and maximum is not None:
            accepted = f"a whole number from {minimum} to {maximum}"
        elif minimum is not None:
            accepted = f"a whole number >= {minimum}"
        elif maximum is not None:
            accepted = f"a whole number <= {maximum}"
        else:
            accepted = "a whole number"
        parse = functools.partial(_parse_integer, minimum=minimum, maximum=maximum)
        return Setting(name, default, description, parse, accepted, owner)

    @staticmethod
    def switch(name: str, default: bool, description: str, *, owner: str = "smc-core") -> Setting[bool]:
        """On or off: ``1 true yes on`` / ``0 false no off`` (any case); anything else is refused."""
        return Setting(name, default, description, _parse_switch, "1/true/yes/on or 0/false/no/off", owner)

    @staticmethod
    def choice(
        name: str, choices: Sequence[str], default: str | None, description: str, *, owner: str = "smc-core"
    ) -> Setting[Any]:
        """One of ``choices`` (case-sensitive); a misspelt value gets a did-you-mean hint."""
        parse = functools.partial(_parse_choice, choices=tuple(choices))
        return Setting(name, default, description, parse, "one of " + ", ".join(choices), owner)

    @staticmethod
    def text(name: str, default: str | None, description: str, *, owner: str = "smc-core") -> Setting[Any]:
        """Free text, taken as it is (surrounding white space removed)."""
        return Setting(name, default, description, str, "any text", owner)

    @staticmethod
    def identifier(
        name: str, default: str | None, description: str, *, owner: str = "smc-core"
    ) -> Setting[Any]:
        """One name: a plugin, module or entry-point name (letters, digits, ``_ . -``)."""
        return Setting(name, default, description, _parse_name, "a name (letters, digits, _ . -)", owner)

    @staticmethod
    def names(name: str, description: str, *, owner: str = "smc-core") -> Setting[tuple[str, ...]]:
        """A comma-separated list of names (``a,b,c``, each as :meth:`identifier` takes it); empty items
        are dropped."""
        return Setting(
            name,
            (),
            description,
            _parse_names,
            "a comma-separated list of names (letters, digits, _ . -)",
            owner,
        )


# Parsers live at module level (bound with functools.partial) so that settings, and the TrainingEnv
# that carries them, can be pickled.
def _parse_seconds(text: str, *, minimum: float, positive: bool) -> float:
    value = float(text)
    if not math.isfinite(value) or value < minimum or (positive and value <= 0):
        raise ValueError("out of range")
    return value


def _parse_integer(text: str, *, minimum: int | None, maximum: int | None) -> int:
    value = int(text)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError("out of range")
    return value


def _parse_switch(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("neither on nor off")


def _parse_choice(text: str, *, choices: tuple[str, ...]) -> str:
    if text in choices:
        return text

    raise ValueError(f"not a known choice{did_you_mean(text, choices).rstrip('.')}")


_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _parse_name(text: str) -> str:
    if not _NAME.fullmatch(text):
        raise ValueError("not a name")
    return text


def _parse_names(text: str) -> tuple[str, ...]:
    return tuple(_parse_name(item.strip()) for item in text.split(",") if item.strip())


def _parse_channels(text: str) -> tuple[tuple[str, str], ...]:
    channels: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not item:
            continue
        if not sep or not name or not path or "/" in name or name in (".", ".."):
            raise ValueError(f"{item!r} is not name=path")
        channels.append((name, path))
    return tuple(channels)


def _parse_regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as error:
        raise ValueError(f"not a valid regular expression: {error}") from None


def _parse_argument_list(text: str) -> tuple[str, ...]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("not a JSON list of strings")
    return tuple(value)


class Settings(Mapping[str, Any]):
    """The parsed value of every declared setting, read-only: the job's frozen registry.

    ``Settings(declared, environ)`` declares the core's settings (:data:`CORE_SETTINGS`) and
    ``declared``, and parses every one of them from ``environ`` at once (the runner builds its own
    through :class:`SettingsRegistry`, adding each plugin's ``register_settings``). Index it with a
    :class:`Setting` for a typed value (``settings[GRACE_PERIOD]`` is a float) or with the variable's
    name. Nothing is parsed after that: reading a setting that was not declared is a
    :class:`~smc_core.errors.PluginError` naming it and the fix, never a silent read of the
    environment. ::

        settings = Settings([WORKERS], {"SMC_MYFW_WORKERS": "4"})
        settings[WORKERS]             # 4
        settings[GRACE_PERIOD]        # 100.0: the core's settings are always declared

    :raises ConfigError: one line per bad value, each naming the variable, the value and what is
        accepted.
    :raises PluginError: two different declarations of one variable, naming both owners.
    """

    _environ: dict[str, str]
    _declared: dict[str, Setting[Any]]
    _values: dict[str, Any]

    def __init__(self, declared: Iterable[Setting[Any]], environ: Mapping[str, str]) -> None:
        registry = SettingsRegistry(environ)
        registry.declare(declared)
        parsed = registry.freeze()
        self._environ, self._declared, self._values = parsed._environ, parsed._declared, parsed._values

    @classmethod
    def _parsed(
        cls, environ: dict[str, str], declared: dict[str, Setting[Any]], values: dict[str, Any]
    ) -> Settings:
        settings = cls.__new__(cls)
        settings._environ, settings._declared, settings._values = environ, declared, values
        return settings

    @property
    def declared(self) -> tuple[Setting[Any], ...]:
        """Every declared setting, in declaration order."""
        return tuple(self._declared.values())

    def is_set(self, setting: Setting[Any] | str) -> bool:
        """Whether the variable is set (non-empty) in the environment, rather than defaulted.

        :raises PluginError: the setting was not declared.
        """
        name = self._checked(setting)
        return bool(self._environ.get(name, "").strip())

    def _checked(self, key: Setting[Any] | str) -> str:
        """The variable's name, once it is known to be declared (as this very setting, when one is given)."""
        name = key if isinstance(key, str) else key.name
        declared = self._declared.get(name)
        if declared is None:
            raise undeclared_error(name, self._declared)
        if isinstance(key, Setting) and key != declared:
            raise PluginError(
                f"The setting {name} is read as declared by {key.owner}, but the job's settings declare it "
                f"as {declared.owner}'s ({declared.description!r}): one variable has one declaration. "
                f"Read it with the declaration registered through register_settings."
            )
        return name

    @overload
    def __getitem__(self, key: Setting[T]) -> T: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: Setting[Any] | str) -> Any:
        return self._values[self._checked(key)]

    def __contains__(self, key: object) -> bool:
        name = key.name if isinstance(key, Setting) else key
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"


def undeclared_error(name: str, declared: Iterable[str]) -> PluginError:
    """The error for a read of ``name``, which is not among ``declared``."""
    return PluginError(
        f"The setting {name} is read, but nothing declared it, so it was never parsed or checked."
        f"{did_you_mean(name, declared)} Declare it once, in the plugin that owns it: return "
        f'[Setting.text("{name}", ...)] (or another Setting constructor) from its register_settings hook, '
        "and read it as training_env.settings[THAT_SETTING]."
    )


class SettingsRegistry:
    """The settings of one job while they are declared: each name once, parsed from one environment,
    then frozen into :class:`Settings`.

    As tox's ``ConfigSet``: :meth:`declare` adds declarations (the same declaration twice is one; two
    different ones of a name are an error naming both owners) and parses each at once, keeping a bad
    value's message; :meth:`freeze` reports every bad value together and returns the read-only
    :class:`Settings`, after which nothing more can be declared. The core's settings are declared
    first. While plugins load, :meth:`value` gives one already parsed value (``SMC_ADAPTER`` chooses the
    adapter before the adapter can declare its own settings): each variable is parsed once, whoever
    reads it.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ: Mapping[str, str] = dict(environ)
        """The environment every value is parsed from (a copy)."""
        self._declared: dict[str, Setting[Any]] = {}
        self._by: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        self._errors: dict[str, str] = {}
        self._frozen: Settings | None = None
        self.declare(CORE_SETTINGS, by="smc-core")

    def declare(self, settings: Iterable[Setting[Any]], *, by: str | None = None) -> None:
        """Declare ``settings`` and parse each from :attr:`environ`.

        :param by: who declares them, for error messages (a plugin's name; default each setting's owner).
        :raises PluginError: a name already declared differently (naming both owners), or the registry
            is frozen.
        """
        if self._frozen is not None:
            raise PluginError(
                "The job's settings are parsed and frozen: nothing more can be declared. Declare settings "
                "with the register_settings hook, which the runner asks before the job's first step."
            )
        for setting in settings:
            if not isinstance(setting, Setting):
                raise PluginError(
                    f"{by or 'A plugin'} declared {setting!r} as a setting; register_settings returns "
                    "smc_core.Setting objects (Setting.seconds(...), Setting.integer(...) ...), or None."
                )
            who = f"{setting.owner} (plugin {by})" if by and by != setting.owner else setting.owner
            earlier = self._declared.get(setting.name)
            if earlier is not None:
                if earlier == setting:
                    continue  # the same declaration again (a plugin listing a core setting it reads)
                raise PluginError(
                    f"The setting {setting.name} is declared twice: by {self._by[setting.name]} "
                    f"({earlier.description!r}) and by {who} ({setting.description!r}). A variable has one "
                    "owner: rename one of them (prefix it with its plugin's name, e.g. "
                    f"SMC_MYPLUGIN_{setting.name.removeprefix('SMC_')}), or block one plugin with "
                    "SMC_DISABLE_PLUGINS."
                )
            self._declared[setting.name] = setting
            self._by[setting.name] = who
            try:
                self._values[setting.name] = setting.read(self.environ)
            except ConfigError as error:
                self._errors[setting.name] = error.message

    def value(self, setting: Setting[T]) -> T:
        """The parsed value of a declared ``setting``, before the registry is frozen.

        :raises ConfigError: its value is bad; the message lists every bad value found so far.
        :raises PluginError: ``setting`` is not declared.
        """
        if setting.name not in self._declared:
            raise undeclared_error(setting.name, self._declared)
        if setting.name in self._errors:
            raise ConfigError("\n".join(self._errors.values()))
        value: T = self._values[setting.name]
        return value

    def freeze(self) -> Settings:
        """Every declared setting's value, read-only; nothing can be declared afterwards.

        Called again, returns the same :class:`Settings`.

        :raises ConfigError: one line per bad value, in declaration order.
        """
        if self._frozen is None:
            if self._errors:
                raise ConfigError("\n".join(self._errors.values()))
            self._frozen = Settings._parsed(dict(self.environ), dict(self._declared), dict(self._values))
        return self._frozen


def parse_settings(environ: Mapping[str, str], declared: Iterable[Setting[Any]] = ()) -> Settings:
    """Parse the core's settings plus ``declared`` from ``environ`` (all at once, then frozen).

    :raises ConfigError: one line per bad value, each naming the variable, the value and what is accepted.
    :raises PluginError: two different declarations of one variable, naming both owners.
    """
    return Settings(declared, environ)


# --- the core's settings -------------------------------------------------------------------------
ADAPTER = Setting.identifier(
    "SMC_ADAPTER", None, "the adapter to load when several are installed (its entry-point name: pytorch)"
)
PLUGINS = Setting.names("SMC_PLUGINS", "modules to register as plugins without packaging (pkg.module,...)")
DISABLE_PLUGINS = Setting.names(
    "SMC_DISABLE_PLUGINS", "plugins to block, by entry-point or module name (name,...)"
)
EXISTING_CODE = Setting.choice(
    "SMC_EXISTING_CODE",
    ("replace", "keep", "error"),
    "replace",
    "what to do with other code already in code/ when a code source is given; stale code never runs silently",
)
INSTALLER = Setting.choice(
    "SMC_INSTALLER",
    ("uv", "pip"),
    None,
    "the installer for requirements.txt and packages (default: uv when found, else pip)",
)
FUNCTION_MODE = Setting.switch(
    "SMC_FUNCTION_MODE",
    False,
    "function mode: import the entry module and call train(...) with the hyperparameters and "
    "environment fields its signature names; an adapter saves what it returns (a returned object no "
    "adapter saves fails the job)",
)
BOOL_FLAGS = Setting.switch(
    "SMC_BOOL_FLAGS",
    False,
    "render True hyperparameters as bare --flag arguments (argparse store_true) and drop False ones",
)
GRACE_PERIOD = Setting.seconds(
    "SMC_GRACE_PERIOD",
    100.0,
    "seconds between passing SIGTERM on to the user's processes and SIGKILL",
    policy=True,
)
PEER_STOP_GRACE = Setting.seconds(
    "SMC_PEER_STOP_GRACE",
    1.0,
    "seconds between SIGTERM and SIGKILL when smc stops processes because the job failed elsewhere (another "
    "host, another rank): short, the job has failed, and a worker blocked in a collective does not act on "
    "SIGTERM; a stop signal smc receives gets SMC_GRACE_PERIOD",
    policy=True,
)
HOST_WAIT_TIMEOUT = Setting.seconds(
    "SMC_HOST_WAIT_TIMEOUT",
    600.0,
    "seconds every host waits for its peers: their names to resolve, their ports to open, each to join "
    "the job's channel",
    positive=True,
    policy=True,
)
LIVENESS_TIMEOUT = Setting.seconds(
    "SMC_LIVENESS_TIMEOUT",
    30.0,
    "multi-host jobs: seconds a host may go unheard on the job's channel (heartbeats every sixth of it) "
    "before every other host takes it as lost, stops its own processes and fails with exit code 6 naming "
    "it; a host whose smc dies is known at once",
    positive=True,
    policy=True,
)
LEFTOVER_GRACE = Setting.seconds(
    "SMC_LEFTOVER_GRACE",
    5.0,
    "seconds between SIGTERM and SIGKILL for processes the user's code left running after it ended, and "
    "for smc's own helpers (an sshd, a parameter server) once the job is over",
    policy=True,
)
CHANNEL_PORT = Setting.integer(
    "SMC_CHANNEL_PORT",
    7780,
    "the TCP port of the job's channel on the master host (the same on every host): smc's hosts tell each "
    "other there that a process failed and how the job ended",
    minimum=1,
    maximum=65535,
)
S3_TIMEOUT = Setting.seconds(
    "SMC_S3_TIMEOUT",
    120.0,
    "seconds one S3 object may take to open and read, retries included, before the fetch fails (exit 4)",
    positive=True,
)
S3_RETRIES = Setting.integer(
    "SMC_S3_RETRIES",
    8,
    "how many times one S3 request is retried after a transient error (with back-off) within SMC_S3_TIMEOUT",
    minimum=0,
)
INSTALL_TIMEOUT = Setting.seconds(
    "SMC_INSTALL_TIMEOUT",
    1800.0,
    "seconds the install of requirements.txt or the package may take before it is stopped (exit 5)",
    positive=True,
)

PLATFORM = Setting.choice(
    "SMC_PLATFORM",
    ("sagemaker", "kubeflow", "vertex"),
    None,
    "the platform whose description of the job to read (default: recognised from the environment, "
    "SageMaker when nothing else matches); a pinned platform whose variables are missing fails the job",
)
MODEL_DIR = Setting.text(
    "SMC_MODEL_DIR",
    None,
    "the model directory off SageMaker (default: the platform's, else model/ in the job directory)",
)
CHANNELS: Setting[tuple[tuple[str, str], ...]] = Setting(
    "SMC_CHANNELS",
    (),
    "data channels off SageMaker, as name=path,... (each becomes SM_CHANNEL_<NAME>)",
    _parse_channels,
    "a comma-separated list of name=path (training=/data/train,test=/data/test)",
)
SCRIPT_ARGS: Setting[tuple[str, ...] | None] = Setting(
    "SMC_SCRIPT_ARGS",
    None,
    "the script's arguments as a JSON list; `train ARG...` sets it from the container's arguments",
    _parse_argument_list,
    'a JSON list of strings (["--epochs", "3"])',
)

SYNC_FLUSH_TIMEOUT = Setting.seconds(
    "SMC_SYNC_FLUSH_TIMEOUT",
    30.0,
    "seconds the final upload of output/intermediate (and of local mode's checkpoints) may take "
    "once the user's code has ended",
)
SYNC_CONCURRENCY = Setting.integer(
    "SMC_SYNC_CONCURRENCY", 4, "uploads that run at once while syncing outputs to S3", minimum=1, maximum=64
)
SYNC_SETTLE = Setting.seconds(
    "SMC_SYNC_SETTLE",
    1.0,
    "seconds between a file's close and its upload; a file deleted within them is never uploaded",
)

SYS_ROOT = Setting.text(
    "SMC_SYS_ROOT",
    "/sys",
    "where sysfs is mounted: EFA devices are read from its class/infiniband (tests point it at a fake tree)",
)

STALL_TIMEOUT = Setting.seconds(
    "SMC_STALL_TIMEOUT",
    None,
    "stall detection (off when unset): seconds without progress on any host (an output line of any "
    "rank, or a file written under the model, checkpoint or output dirs) after which smc logs every "
    "rank's Python stacks, ends the job on every host and exits 7 (or restarts it, while SMC_MAX_RESTARTS "
    "allows); not in function mode; the hyperparameter sagemaker_stall_timeout sets it from the job",
    positive=True,
)
STALL_PROGRESS: Setting[re.Pattern[str] | None] = Setting(
    "SMC_STALL_PROGRESS",
    None,
    "with SMC_STALL_TIMEOUT: only output lines this regular expression matches count as progress (as "
    "smc local --metric and MetricDefinitions take them, searched in the line), e.g. 'step [0-9]+'; "
    "files written still count; the hyperparameter sagemaker_stall_progress sets it from the job",
    _parse_regex,
    "a regular expression (Python re)",
)
STACKS = Setting.choice(
    "SMC_STACKS",
    ("auto", "py-spy", "faulthandler"),
    "auto",
    "how smc reads the Python stacks of the job's processes (on a stall, on SIGUSR1 to train): py-spy, "
    "else faulthandler armed in every Python process of the job where py-spy cannot attach (auto)",
)
MAX_RESTARTS = Setting.integer(
    "SMC_MAX_RESTARTS",
    0,
    "restarts of the user's code after a failure that is not its own deterministic error (torchrun's "
    "--max-restarts for torch jobs; the whole code on every host for other launch styles); the "
    "hyperparameter sagemaker_max_restarts sets it from the job",
    minimum=0,
    maximum=100,
)
WARM_POOL_CACHE = Setting.switch(
    "SMC_WARM_POOL_CACHE",
    True,
    "keep uv's and pip's caches and the extracted code in the platform's persistent cache directory "
    "(a SageMaker warm pool's sagemaker/warmpoolcache) when it offers one, so the next job starts faster",
)

CORE_SETTINGS: tuple[Setting[Any], ...] = (
    ADAPTER,
    PLUGINS,
    DISABLE_PLUGINS,
    EXISTING_CODE,
    INSTALLER,
    FUNCTION_MODE,
    BOOL_FLAGS,
    GRACE_PERIOD,
    PEER_STOP_GRACE,
    HOST_WAIT_TIMEOUT,
    LIVENESS_TIMEOUT,
    LEFTOVER_GRACE,
    CHANNEL_PORT,
    S3_TIMEOUT,
    S3_RETRIES,
    INSTALL_TIMEOUT,
    PLATFORM,
    MODEL_DIR,
    CHANNELS,
    SCRIPT_ARGS,
    SYNC_FLUSH_TIMEOUT,
    SYNC_CONCURRENCY,
    SYNC_SETTLE,
    SYS_ROOT,
    STALL_TIMEOUT,
    STALL_PROGRESS,
    STACKS,
    MAX_RESTARTS,
    WARM_POOL_CACHE,
)
"""The core's own settings, in the order the reference lists them."""


# --- the reference, generated from the declarations ------------------------------------------------
def settings_table(settings: Iterable[Setting[Any]]) -> str:
    """A Markdown table of ``settings`` (variable, accepted values, default, description), as the
    READMEs show it; a test compares each README with it."""
    rows = ["| variable | accepts | default | what it does |", "|---|---|---|---|"]
    for setting in settings:
        description = setting.description.replace("|", "\\|")
        rows.append(f"| `{setting.name}` | {setting.accepted} | `{setting.default_text}` | {description} |")
    return "\n".join(rows) + "\n"


def settings_help(settings: Iterable[Setting[Any]], width: int = 100) -> str:
    """``settings`` as plain text for ``smc --help``: each variable, then its description, what it
    accepts and its default, indented."""
    lines: list[str] = []
    for setting in settings:
        owner = "" if setting.owner == "smc-core" else f" [{setting.owner}]"
        lines.append(f"  {setting.name}{owner}")
        text = f"{setting.description} ({setting.accepted}; default {setting.default_text})"
        lines += textwrap.wrap(text, width, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
