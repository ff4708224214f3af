"""smc arms faulthandler in the job's Python processes (see smc_core.launch.stacks).

Put first on the job's ``PYTHONPATH`` only where py-spy cannot read the processes (or ``SMC_STACKS``
asks for it): each Python process registers ``faulthandler`` on ``$SMC_STACKS_SIGNAL``, writing every
thread's stack to ``$SMC_STACKS_DIR/<pid>.stacks`` when smc sends it, and a forked child gets a file of
its own. Then the ``sitecustomize`` this one hides (the image's own) is imported, as if smc's were
not there. Nothing here may fail the user's process: every error is swallowed.
"""

import os
import sys

_files: list = []
# Set by smc for the job's processes (smc_core.launch.stacks), not settings: nothing for the user to set.
DIR_VAR = "SMC_STACKS_DIR"
SIGNAL_VAR = "SMC_STACKS_SIGNAL"


def _arm() -> None:
    directory = os.environ.get(DIR_VAR)
    signum = os.environ.get(SIGNAL_VAR, "")
    if not directory or not signum.isdigit():
        return
    import faulthandler

    def register() -> None:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            file = open(os.path.join(directory, f"{os.getpid()}.stacks"), "w")  # noqa: SIM115 - kept open
        except OSError:
            return
        _files.append(file)
        faulthandler.register(int(signum), file=file, all_threads=True, chain=False)

    register()
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=register)


def _import_hidden() -> None:
    """Import the next ``sitecustomize`` on ``sys.path`` after this one's directory."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


try:
    _arm()
except Exception:  # never fail the user's process
    pass
try:
    _import_hidden()
except Exception:
    sys.modules.pop("sitecustomize", None)
    raise
