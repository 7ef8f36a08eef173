"""Reading YAML files so that every error can say which line it is about.

PyYAML's plain ``safe_load`` forgets positions; we compose the node tree once, keep it, and
look up the line of any key path (``models.candidate.adapter``) when validation complains.
"""

from __future__ import annotations

import contextlib
import reprlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator

from harness.errors import TollgateInputError

MAX_YAML_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 64  # levels of nesting: no config needs more, and PyYAML's composer recurses
MAX_VALUES = 100_000  # values after expanding aliases


# Strings of the project and suite files that become paths or names: checked where they are read.
def _path_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("a path cannot hold a NUL character")
    return value


def _name_text(value: str) -> str:
    if not value.strip() or not value.isprintable():
        raise ValueError("a name must be printable text: no control characters, not blank")
    return value


PathText = Annotated[str, AfterValidator(_path_text)]
Name = Annotated[str, AfterValidator(_name_text)]

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 80, 80, 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def show(value: Any) -> str:
    """A user's value inside an error message: quoted, control characters escaped, cut short, so
    the message stays one short paragraph whatever the file held."""
    try:
        return _REPR.repr(value)
    except Exception:  # an integer past Python's digit limit, an object whose repr fails
        return f"<a {type(value).__name__}>"


def one_line(text: str, limit: int | None = 300) -> str:
    """A library's message inside ours: control characters escaped, at most ``limit`` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


@contextlib.contextmanager
def printable_errors() -> Iterator[None]:
    """Decorates a loader: an input error raised inside it (by it, or by a check or a registry it
    calls) reads as one printable line, whatever control characters the user's file put in a key,
    an id or a name, because the CLI prints it as the one-paragraph message."""
    try:
        yield
    except TollgateInputError as exc:
        exc.message = one_line(exc.message, None)
        exc.field = one_line(exc.field, None) if exc.field is not None else None
        exc.hint = one_line(exc.hint, None) if exc.hint is not None else None
        if exc.file is not None and not str(exc.file).isprintable():
            exc.file = one_line(str(exc.file), None)
        exc.args = (exc.message,)
        raise


def field_path(loc: tuple[Any, ...]) -> str | None:
    """``models.echo.adapter``; control characters in a key are escaped, a long key is cut short."""
    return ".".join(one_line(str(p), 60) for p in loc) or None


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
    """Parse a YAML file that must hold a mapping.

    The node tree is checked before any Python value is built from it: no key twice in a mapping,
    no recursive alias, at most ``MAX_DEPTH`` levels and ``MAX_VALUES`` values (counting every use
    of an alias, so a "billion laughs" file is refused instead of expanded), and text that is valid
    Unicode. A scalar Python cannot represent (an impossible date, a number of thousands of digits)
    is an error on its line, not a crash.
    """
    text = read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _marked_error(path, exc) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most control bytes)
        line = text.count("\n", 0, exc.position) + 1
        char = ord(exc.character) if isinstance(exc.character, str) else exc.character
        raise TollgateInputError(f"is not valid YAML: character U+{char:04X} is not allowed in a YAML file.",
                                 file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise TollgateInputError(f"is not valid YAML: {one_line(str(exc))}.", file=path) from None
    except RecursionError:
        raise TollgateInputError(f"is nested too deeply (more than {MAX_DEPTH} levels) to be a config file.",
                                 file=path) from None
    if node is None:
        raise TollgateInputError("is empty; expected a YAML mapping.", file=path)
    _check_nodes(path, node)
    loader = yaml.SafeLoader("")
    try:
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise _marked_error(path, exc) from None
    except (ValueError, OverflowError, TypeError):  # e.g. 2024-13-45 read as a date, an int of 5000 digits
        raise _scalar_error(path, node) from None
    finally:
        loader.dispose()
    if data is None:
        raise TollgateInputError("is empty; expected a YAML mapping.", file=path)
    if not isinstance(data, dict):
        raise TollgateInputError(
            f"must be a YAML mapping at the top level, found {type(data).__name__}.", file=path, line=1
        )
    return YamlDoc(path, data, node)


def _marked_error(path: Path, exc: yaml.MarkedYAMLError) -> TollgateInputError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = one_line(exc.problem or exc.context or "unreadable")
    return TollgateInputError(f"is not valid YAML: {problem}.", file=path, line=line)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_nodes(path: Path, root: yaml.Node) -> None:
    """Walk the node graph once (each node once, however many aliases point at it): refuse repeated
    keys, recursive aliases, deep nesting, too many values after alias expansion, and lone surrogates.

    YAML lets a repeated key silently win; in a config file that is always a mistake.
    """
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    size: dict[int, int] = {}  # values under a node, aliases expanded
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, leaving = stack.pop()
        line = node.start_mark.line + 1
        if leaving:
            n = size[id(node)] = 1 + sum(size[id(c)] for c in _children(node))
            if n > MAX_VALUES:
                raise TollgateInputError(f"holds more than {MAX_VALUES:,} values (counting every use of a YAML "
                                         "alias); a config file that large is almost surely a mistake.",
                                         file=path, line=line)
            state[id(node)] = 2
            continue
        seen_state = state.get(id(node))
        if seen_state == 2:
            continue
        if seen_state == 1:
            raise TollgateInputError("an alias refers to a value that contains it (a recursive YAML anchor).",
                                     file=path, line=line)
        if depth > MAX_DEPTH:
            raise TollgateInputError(f"is nested more than {MAX_DEPTH} levels deep.", file=path, line=line)
        state[id(node)] = 1
        if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
            try:
                node.value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise TollgateInputError(f"text {show(node.value)} holds a lone surrogate "
                                         f"({exc.object[exc.start]!a}), which is not valid Unicode.",
                                         file=path, line=line) from None
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, _ in node.value:
                key = str(k.value) if isinstance(k, yaml.ScalarNode) else f"<{k.id} at line {k.start_mark.line + 1}>"
                if key in seen:
                    raise TollgateInputError(f"key {show(key)} appears twice (first on line {seen[key]}).",
                                             file=path, line=k.start_mark.line + 1, field=field_path((key,)))
                seen[key] = k.start_mark.line + 1
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in reversed(_children(node)))


def _scalar_error(path: Path, root: yaml.Node) -> TollgateInputError:
    """The first scalar that cannot be built, as an error on its line."""
    loader = yaml.SafeLoader("")
    seen: set[int] = set()
    stack = [root]
    try:
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.ScalarNode):
                try:
                    loader.construct_object(node)
                except Exception as exc:
                    what = {"tag:yaml.org,2002:timestamp": "is not a real date or time",
                            "tag:yaml.org,2002:int": "is not a number Python can hold",
                            "tag:yaml.org,2002:float": "is not a number Python can hold"}.get(node.tag,
                                                                                              "cannot be read")
                    return TollgateInputError(f"the value {show(node.value)} {what} ({one_line(str(exc))}); "
                                              "put it in quotes if it is meant as text.",
                                              file=path, line=node.start_mark.line + 1)
            stack.extend(reversed(_children(node)))
    finally:
        loader.dispose()
    return TollgateInputError("holds a value that cannot be read.", file=path)


def pydantic_error(doc: YamlDoc, exc: Any, prefix: tuple[Any, ...] = ()) -> TollgateInputError:
    """Turn the first error of a pydantic ValidationError into one clear input error."""
    errors = exc.errors()
    err = errors[0]
    loc = prefix + tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        msg = "unknown key; check its spelling and indentation."
    elif kind == "missing":
        msg = "is required but missing."
    else:
        msg = one_line(err["msg"]).removeprefix("Value error, ").rstrip(".") + "."
        if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], dict):
            msg += f" Got {show(err['input'])}."
    more = len(errors) - 1
    if more:
        msg += f" ({more} more problem{'s' if more > 1 else ''} in this file.)"
    return TollgateInputError(msg, file=doc.path, line=doc.line_of(loc), field=field_path(loc))
