"""What the project's commands (`amqp-broker`, `amqp-gateway`) share: a failure to start
is one line on stderr that names the problem and the option to change, and an exit code
that tells its kind to a supervisor or a script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

#: Exit codes: 2 as argparse's; the others one per thing to fix.
EXIT_BAD_OPTION = 2
EXIT_CANNOT_LISTEN = 3
EXIT_DATA_DIR = 4


class StartupFailure(Exception):
    """Why a command cannot run, in one line, and the exit code that says so."""

    def __init__(self, exit_code: int, reason: str) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose errors are one line (the problem and where to read more) rather
    than the usage and the problem; its epilog is kept as written (the exit codes)."""

    def __init__(self, **options: object) -> None:
        super().__init__(formatter_class=argparse.RawDescriptionHelpFormatter, **options)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        raise StartupFailure(EXIT_BAD_OPTION, f"{message} (see {self.prog} --help)")


def run(program: str, command: Callable[[], None]) -> None:
    """Run `command`; a StartupFailure is printed as one line and ends the process with
    its exit code."""
    try:
        command()
    except StartupFailure as failure:
        print(f"{program}: {failure}", file=sys.stderr)
        sys.exit(failure.exit_code)
