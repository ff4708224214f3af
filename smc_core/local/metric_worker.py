"""The process that matches ``smc local``'s metric regexes (:class:`smc_core.local.metrics.MetricMatcher`).

Python's ``re`` cannot be interrupted, and holds the interpreter while it backtracks: a catastrophic
regex (``(a+)+$``) matched in ``smc local`` itself would stall the job's output. Here it stalls only
this process, which ``smc local`` kills when one line takes too long.

Protocol, one JSON document a line: argv[1] is ``[[name, regex], ...]``; each input line is a log
line (a JSON string); for each, the worker writes the index of every definition before it matches it
(``0``, ``1`` ...), then the list of ``[name, value]`` found.
"""

from __future__ import annotations

import json
import re
import sys


def main() -> int:
    """Match lines from stdin until it closes (see the module docstring)."""
    definitions = [(name, re.compile(pattern)) for name, pattern in json.loads(sys.argv[1])]
    out = sys.stdout
    for raw in sys.stdin:
        line = json.loads(raw)
        found = []
        for index, (name, regex) in enumerate(definitions):
            out.write(f"{index}\n")
            out.flush()
            match = regex.search(line)
            if match is None or match.group(1) is None:
                continue
            try:
                found.append([name, float(match.group(1))])
            except ValueError:
                continue
        out.write(json.dumps(found) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
