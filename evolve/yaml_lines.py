"""Load YAML keeping the line of every value, so that errors can name file, line and field."""
from __future__ import annotations

import yaml

from core.errors import UserError


class ConfigError(UserError):
    """A configuration problem; the message names the file, the line and the field."""


def load_with_lines(text: str, source: str) -> tuple[object, dict[tuple, int]]:
    """Parse `text`; return (data, lines) where lines maps a path such as ("stages", 1, "tasks") to a
    1-based line number."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    lines: dict[tuple, int] = {}
    if node is None:
        return {}, lines
    return _build(node, (), lines, source), lines


def _build(node, path: tuple, lines: dict, source: str):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: keys must be strings, got {key_node.value!r}")
            if key in out:
                raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: field {dotted(path + (key,))!r} is given twice")
            out[key] = _build(value_node, path + (key,), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, path + (i,), lines, source) for i, child in enumerate(node.value)]
    return _scalar(node)  # a scalar: the safe constructor resolves its type


def _scalar(node):
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out
