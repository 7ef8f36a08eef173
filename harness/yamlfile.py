"""Reading YAML files so that every error can say which line it is about.

PyYAML's plain ``safe_load`` forgets positions; we compose the node tree once, keep it, and
look up the line of any key path (``models.candidate.adapter``) when validation complains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import TollgateInputError

MAX_YAML_BYTES = 5 * 1024 * 1024


def read_text(path: Path, *, max_bytes: int = MAX_YAML_BYTES) -> str:
    """Read a small text file as UTF-8, or raise an input error naming the offending line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TollgateInputError("file not found.", file=path) from None
    except IsADirectoryError:
        raise TollgateInputError("is a directory, expected a file.", file=path) from None
    except OSError as exc:
        raise TollgateInputError(f"cannot read: {exc.strerror}.", file=path) from None
    if len(raw) > max_bytes:
        raise TollgateInputError(
            f"is {len(raw):,} bytes, over the {max_bytes:,}-byte limit for a YAML file.", file=path
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TollgateInputError(
            f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8.",
            file=path, line=line,
        ) from None


class YamlDoc:
    """A parsed YAML mapping plus its node tree, for line numbers of key paths."""

    def __init__(self, path: Path, data: Any, node: yaml.Node | None) -> None:
        self.path = path
        self.data = data
        self.node = node

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of the deepest node on ``loc`` that exists."""
        node = self.node
        best = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                nxt = None
                for key_node, value_node in node.value:
                    if str(key_node.value) == str(part):
                        best = key_node.start_mark.line + 1
                        nxt = value_node
                        break
                node = nxt
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if 0 <= part < len(node.value):
                    node = node.value[part]
                    best = node.start_mark.line + 1
                else:
                    node = None
            else:
                node = None
            if node is None:
                break
        return best


def load_yaml(path: Path) -> YamlDoc:
    """Parse a YAML file that must hold a mapping."""
    text = read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        raise TollgateInputError(f"is not valid YAML: {problem}.", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise TollgateInputError(f"is not valid YAML: {exc}.", file=path) from None
    if data is None:
        raise TollgateInputError("is empty; expected a YAML mapping.", file=path)
    _refuse_duplicate_keys(path, node)
    if not isinstance(data, dict):
        raise TollgateInputError(
            f"must be a YAML mapping at the top level, found {type(data).__name__}.", file=path, line=1
        )
    return YamlDoc(path, data, node)


def _refuse_duplicate_keys(path: Path, node: yaml.Node | None) -> None:
    """YAML lets a repeated key silently win; in a config file that is always a mistake."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in n.value:
                key = str(k.value)
                if key in seen:
                    raise TollgateInputError(f"key '{key}' appears twice (first on line {seen[key]}).",
                                             file=path, line=k.start_mark.line + 1, field=key)
                seen[key] = k.start_mark.line + 1
                stack.append(v)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)


def pydantic_error(doc: YamlDoc, exc: Any, prefix: tuple[Any, ...] = ()) -> TollgateInputError:
    """Turn the first error of a pydantic ValidationError into one clear input error."""
    err = exc.errors()[0]
    loc = prefix + tuple(err["loc"])
    field = ".".join(str(p) for p in loc) or None
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown key; check its spelling and indentation."
    elif kind == "missing":
        msg = "is required but missing."
    else:
        msg = err["msg"].rstrip(".") + "."
        if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], dict):
            msg += f" Got {err['input']!r}."
    more = len(exc.errors()) - 1
    if more:
        msg += f" ({more} more problem{'s' if more > 1 else ''} in this file.)"
    return TollgateInputError(msg, file=doc.path, line=doc.line_of(loc), field=field)
