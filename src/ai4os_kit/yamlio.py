"""YAML reading that keeps line numbers, so every error can point at a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ai4os_kit.errors import InputError

KeyPath = tuple[str | int, ...]


def format_path(path: KeyPath) -> str:
    """Render a key path as ``a.b[0].c``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> None:
    lines[path] = node.start_mark.line + 1
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


def load_yaml(file: Path) -> tuple[Any, dict[KeyPath, int]]:
    """Load a YAML file; return the data and a map key path -> line number.

    Syntax errors and duplicate keys become :class:`InputError` with the line.
    """
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(name, "", "file not found", "create it (ai4os-kit init copies the sample inventory)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(name, "", f"cannot be read: {exc}", "check the file's permissions and that it is UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
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
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _walk(node, (), lines, name)
    return data, lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """Line of the deepest known prefix of ``path``."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None
