"""YAML reading that keeps line numbers, so every error can point at a line."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.errors import InputError

KeyPath = tuple[str | int, ...]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: several times faster


class SourceMap(dict[KeyPath, int]):
    """Key path -> line number, plus ``plain``: key path -> the text of each unquoted scalar.

    The text tells what the operator wrote when YAML read it as something else
    (``22.10`` as the number 22.1, ``NO`` as false).
    """

    def __init__(self) -> None:
        super().__init__()
        self.plain: dict[KeyPath, str] = {}


def format_path(path: KeyPath) -> str:
    """Render a key path as ``a.b[0].c``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(node: yaml.Node, path: KeyPath, lines: SourceMap, file: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and not node.style:  # plain: None (Python), "" (libyaml)
        lines.plain[path] = node.value
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise InputError(
                    file, format_path(path + (key,)),
                    f"key given twice (first at line {seen[key]})",
                    "keep one of the two entries; YAML would silently use the last one",
                    line=key_node.start_mark.line + 1,
                )
            seen[key] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, file)


def read_error(name: str, exc: OSError | UnicodeDecodeError) -> InputError:
    """Why a file cannot be read, with the fix that matches the cause."""
    if isinstance(exc, UnicodeDecodeError):
        return InputError(name, "", f"is not UTF-8 text ({exc.reason} at byte {exc.start})",
                          "save the file as UTF-8 (it is YAML text)")
    if isinstance(exc, FileNotFoundError):
        return InputError(name, "", "file not found", "create it (ai4os-kit init copies the sample inventory)")
    if isinstance(exc, IsADirectoryError):
        return InputError(name, "", "is a directory, not a file",
                          "remove or rename the directory and put the YAML file there (ai4os-kit init creates it)")
    if exc.errno == errno.ELOOP:
        return InputError(name, "", "is a symbolic link that points back at itself (a link loop)",
                          "replace the link with the file, or point it at a real file")
    if isinstance(exc, NotADirectoryError):
        return InputError(name, "", "a parent of this path is a file, not a directory",
                          "give the path of an inventory directory")
    if isinstance(exc, PermissionError):
        return InputError(name, "", "cannot be read: permission denied",
                          "let the user running ai4os-kit read it (e.g. chmod u+r)")
    return InputError(name, "", f"cannot be read: {exc.strerror or exc}", "check the file and its directory")


def load_yaml(file: Path) -> tuple[Any, SourceMap]:
    """Load a YAML file; return the data and its source map (key path -> line, plain scalars).

    Unreadable files, syntax errors and duplicate keys become :class:`InputError` with the line.
    """
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise read_error(name, exc) from None
    try:
        loader = _Loader(text)
        try:  # parse once: the node tree gives the lines, the data is constructed from it
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = (exc.problem or "invalid YAML").strip()
        if exc.context:
            problem = f"{exc.context.strip()}: {problem}"
        raise InputError(name, "", f"YAML syntax error: {problem}",
                         "fix the YAML at that line (indentation, a missing ':' or an unclosed quote)",
                         line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(name, "", f"YAML error: {exc}", "fix the YAML syntax") from None
    lines = SourceMap()
    if node is not None:
        _walk(node, (), lines, name)
    return data, lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """Line of the deepest known prefix of ``path``."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None
