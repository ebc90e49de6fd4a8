"""A worker's own namespace: where ``pool.execute`` code runs, and what shipped functions see.

Code run with ``pool.execute`` (``%%fiber`` in a notebook) defines names on
every worker: imports, loaded data, helpers. A function defined in a notebook
travels by value (cloudpickle), carrying only the globals the notebook had;
when a worker loads one, the names that exist only on the worker are added to
its globals, so a mapped function can use the ``np`` that ``%%fiber`` imported.
Where both have a name, the notebook's value, which travelled with the
function, wins. Functions imported from modules keep their modules' globals.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import linecache
import sys
import traceback
from typing import Any, Dict, Optional, Tuple

NAMESPACE: Dict[str, Any] = {"__name__": "__fiber__"}
_step_numbers = itertools.count(1)


def run(code: str) -> Tuple[str, Optional[str]]:
    """Run ``code`` in the namespace: (what it printed, its traceback text or None).

    The code gets a file name of its own, registered with linecache, so that a
    traceback shows its lines, as IPython does for cells.
    """
    filename = f"<fiber setup {next(_step_numbers)}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            exec(compile(code, filename, "exec"), NAMESPACE)
    except BaseException as exc:  # SystemExit too: setup code reports, it does not end workers
        below_this_frame = exc.__traceback__.tb_next if exc.__traceback__ else None
        return printed.getvalue(), "".join(
            traceback.format_exception(type(exc), exc, below_this_frame))
    return printed.getvalue(), None


def share_with(function: Any) -> None:
    """Give a function that travelled by value the names defined on this worker."""
    target = getattr(function, "func", function)  # functools.partial
    function_globals = getattr(target, "__globals__", None)
    module = sys.modules.get(getattr(target, "__module__", None) or "")
    if function_globals is None or (module is not None and vars(module) is function_globals):
        return
    for name, value in NAMESPACE.items():
        if not name.startswith("__"):
            function_globals.setdefault(name, value)
