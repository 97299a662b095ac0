"""Errors the kit reports to operators.

Every error that reaches the CLI is one of these; the CLI prints ``str(err)``
(never a traceback) and exits with ``err.exit_code``.
"""

from __future__ import annotations


class KitError(Exception):
    """Something failed while doing the work (exit code 1)."""

    exit_code = 1


class InputError(KitError):
    """The operator's input is wrong (exit code 2).

    The message always names the file, the key, what is wrong and the fix.
    """

    exit_code = 2

    def __init__(self, file: str, key: str, problem: str, fix: str, line: int | None = None) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        self.fix = fix
        self.line = line
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = self.key or "(top level)"
        return f"{where}: {key}: {self.problem}\n  fix: {self.fix}"


class InputErrors(InputError):
    """Several input errors found in one pass; reported together."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.file, first.key, first.problem, first.fix, first.line)

    def render(self) -> str:
        parts = [e.render() for e in self.errors]
        return f"{len(parts)} problem(s) found:\n" + "\n".join(parts)
