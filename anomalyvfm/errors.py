"""User errors on the command line: told in a line or two, without a traceback.

A *user error* is a bad option, file or dataset. This project's code reports one by raising
``ValueError``, ``TypeError``, ``KeyError``, ``ImportError``, ``RuntimeError`` or an ``OSError``
such as ``FileNotFoundError`` with a message that names the option or file and says what would
fix it;
Lightning reports its own as ``MisconfigurationException``. Such errors often reach the command
line wrapped: jsonargparse re-raises an error from a class's constructor as a long "does not
validate against any of the Union subtypes" message, with the original as its context.
:func:`user_error` finds the original in the chain. Anything else (a bug, an error inside torch)
is unexpected and keeps its traceback; so does everything when ``--debug`` or
``ANOMALYVFM_DEBUG=1`` is given.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEBUG_ENV = "ANOMALYVFM_DEBUG"
# Packages whose raise statements are deliberate messages to the user.
_OWN_PACKAGES = tuple(
    str(Path(__file__).resolve().parents[1] / name) + os.sep
    for name in ("anomalyvfm", "data_synthesis")
)
_USER_TYPES = (ValueError, TypeError, KeyError, ImportError, OSError, RuntimeError)


def debug_requested() -> bool:
    """Whether full tracebacks were asked for (``ANOMALYVFM_DEBUG`` set to a true value)."""
    return os.environ.get(DEBUG_ENV, "").lower() not in ("", "0", "false", "no")


def _raised_in_own_code(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(_OWN_PACKAGES)


def _is_lightning_misconfiguration(exc: BaseException) -> bool:
    return type(exc).__name__ == "MisconfigurationException"


def user_error(exc: BaseException) -> BaseException | None:
    """The user error behind ``exc`` (``exc`` itself or a cause or context in its chain), or
    None when the failure is unexpected. The innermost one wins: it is the original message."""
    found: BaseException | None = None
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if _is_lightning_misconfiguration(current) or (
            isinstance(current, _USER_TYPES) and _raised_in_own_code(current)
        ):
            found = current
        stack += [e for e in (current.__context__, current.__cause__) if e is not None]
    return found


def error_message(exc: BaseException) -> str:
    """The exception's message (KeyError's repr quotes removed), at most a few lines."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()] or [type(exc).__name__]
    return "\n  ".join(lines[:6])


def condense_parse_error(message: str) -> str:
    """jsonargparse's parse error in one line: the option's full key and the innermost reason.

    ``Parser key "model": ... Parser key "adapter.rank": Expected a <class 'int'>. Got value:
    abc`` becomes ``--model.init_args.adapter.rank: Expected a <class 'int'>. Got value: abc``.
    """
    keys: list[str] = []
    detail = ""
    skip = (
        "Does not validate",
        "Subtypes:",
        "Errors:",
        "Given value",
        "- Expected a <class 'NoneType'>",
        "- Problem with given class_path",
    )
    for raw in message.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = re.match(r'(?:- )?Parser key "([^"]+)":\s*(.*)', line)
        if match:
            keys.append(match.group(1))
            detail = match.group(2) or detail
            continue
        if line.startswith(skip):
            continue
        if not detail or keys:
            detail = line.lstrip("- ").strip()
            if keys and detail:
                break
    if not keys:
        return detail or message.strip()
    head = keys[0]
    if len(keys) > 1 and head in ("model", "data"):
        head = f"{head}.init_args"
    key = ".".join([head, *keys[1:]])
    return f"--{key}: {detail}" if detail else f"--{key}"


def hint(prog: str) -> str:
    return f"(`{prog} --help` lists the options; --debug or {DEBUG_ENV}=1 shows the traceback)"


def notice(message: str) -> None:
    """A one-line notice on standard error (global rank zero only, as Lightning logs)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


def run_console(prog: str, entry: Callable[[], Any]) -> int:
    """Runs a command's ``entry`` and returns its exit status: the int it returns (0 for any
    other value), 1 with one message for a user error, 130 on Ctrl-C. Unexpected errors, and
    every error under ``--debug``/``ANOMALYVFM_DEBUG=1``, propagate with their traceback."""
    try:
        result = entry()
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except Exception as exc:
        user = user_error(exc)
        if user is None or debug_requested():
            raise
        sys.stderr.write(f"{prog}: error: {error_message(user)}\n{hint(prog)}\n")
        return 1
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def take_debug_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``--debug``; its presence sets ``ANOMALYVFM_DEBUG=1`` (which child
    processes inherit)."""
    if "--debug" in argv:
        os.environ[DEBUG_ENV] = "1"
    return [a for a in argv if a != "--debug"]


def run_command(prog: str, main: Callable[[list[str]], Any]) -> int:
    """A tool's console entry: ``main`` on this process's arguments (``--debug`` taken out),
    through :func:`run_console`."""
    argv = take_debug_flag(sys.argv[1:])
    return run_console(prog, lambda: main(argv))
