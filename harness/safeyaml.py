"""Strict, bounded reading of YAML the harness is handed (profiles, manifests, sim request bodies).

`yaml.safe_load` is safe against code execution but not against the rest of what a hostile or
mistaken file can do: a 1 KB "billion laughs" alias bomb expands into gigabytes once anything walks
the tree, a FIFO or `/dev/zero` given as a profile blocks or never ends, a duplicate key silently
lets the last value win, and non-UTF-8 bytes surface as a traceback. Every problem here becomes one
`UsageError` line naming the source and what was expected (exit code 2 at the entry points).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError

# A profile is a few KB; manifests a few hundred KB. 4 MiB leaves room and still bounds memory.
MAX_FILE_BYTES = 4 * 1024 * 1024
# Nodes after expanding every alias. The largest shipped profile has a few hundred; an alias bomb
# reaches millions with a handful of lines.
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64


def read_text(path: str | Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> str:
    """A regular file's text (UTF-8), at most `limit` bytes; anything else is one `UsageError`."""
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading must not wait for a writer; fstat then refuses it.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(f"{p}: {what} not found") from None
    except IsADirectoryError:
        raise UsageError(f"{p}: expected a regular {what}, got a directory") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{p}: expected a regular {what}, got {_kind(info.st_mode)}")
        if info.st_size > limit:
            raise UsageError(f"{p}: {what} is {info.st_size} bytes; at most {limit} bytes are accepted")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            try:
                chunk = os.read(fd, min(65536, limit + 1 - total))
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    continue
                raise UsageError(f"{p}: cannot read the {what} ({exc.strerror})") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # the file grew while we read it
            raise UsageError(f"{p}: {what} is larger than {limit} bytes")
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{p}: {what} is not UTF-8 text (invalid byte at offset {exc.start})") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a non-regular file"


class _Refused(yaml.YAMLError):
    def __init__(self, message: str, mark: Any = None) -> None:
        super().__init__(message)
        self.problem = message
        self.problem_mark = mark


class _UniqueKeys(yaml.constructor.SafeConstructor):
    """A constructor that refuses duplicate mapping keys (YAML 1.2 says keys are unique)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node)
                try:
                    if key in seen:
                        raise _Refused(
                            f"duplicate key {key!r} (first at line {seen[key].line + 1}); "
                            "each key may appear once",
                            key_node.start_mark,
                        )
                    seen[key] = key_node.start_mark
                except TypeError:
                    pass
        return super().construct_mapping(node, deep=deep)


class _StrictLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python loader: its error messages name the offending token or alias."""


# libyaml's parser, where PyYAML was built with it (its wheels are), reads the same documents at a
# fraction of the CPU (reading profiles and manifests was a fifth of some test processes' time); a
# document it refuses is read again by the Python loader, whose message says more.
_FastStrictLoader: type[Any] = (type("_FastStrictLoader", (_UniqueKeys, yaml.CSafeLoader), {})
                                if getattr(yaml, "__with_libyaml__", False) else _StrictLoader)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse alias cycles and trees that expand past MAX_EXPANDED_NODES / MAX_DEPTH.

    Aliases point at the same node object, so sizes are memoised by identity: linear in the
    document, whatever the expansion would be.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()

    def walk(node: yaml.Node, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key], depths[key]
        if key in on_path:
            raise _Refused("an alias refers to its own ancestor (a recursive structure)", node.start_mark)
        if depth > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        on_path.add(key)
        size, deepest = 1, 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children.extend((k, v))
        for child in children:
            child_size, child_depth = walk(child, depth + 1)
            size += child_size
            deepest = max(deepest, child_depth + 1)
            if size > MAX_EXPANDED_NODES:
                raise _Refused(
                    f"expands to more than {MAX_EXPANDED_NODES} nodes once aliases are resolved "
                    "(an alias bomb?)", node.start_mark,
                )
            if depth + deepest > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels once aliases are resolved", node.start_mark)
        on_path.discard(key)
        sizes[key], depths[key] = size, deepest
        return size, deepest

    walk(root, 0)


def _fail(source: str, exc: yaml.YAMLError) -> UsageError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, _Refused):
        return UsageError(f"{source}: refused YAML{where}: {problem}")
    return UsageError(f"{source}: not valid YAML{where}: {problem}")


def load_all(text: str, source: str) -> list[Any]:
    """Every document of `text`, strictly and boundedly; one `UsageError` on any problem."""
    try:
        return _documents(_FastStrictLoader, text)
    except (yaml.YAMLError, RecursionError) as exc:
        if _FastStrictLoader is _StrictLoader:
            raise _refusal(source, exc) from None
    try:
        return _documents(_StrictLoader, text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise _refusal(source, exc) from None


def _documents(loader_class: type[Any], text: str) -> list[Any]:
    loader = loader_class(text)
    try:
        docs: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            _check_expansion(node)
            docs.append(loader.construct_document(node))
        return docs
    finally:
        loader.dispose()


def _refusal(source: str, exc: yaml.YAMLError | RecursionError) -> UsageError:
    if isinstance(exc, yaml.YAMLError):
        return _fail(source, exc)
    return UsageError(f"{source}: refused YAML: nested too deeply")


def load_one(text: str, source: str) -> Any:
    """The single document of `text` (None when empty); more than one document is refused."""
    docs = load_all(text, source)
    if len(docs) > 1:
        raise UsageError(f"{source}: expected one YAML document, found {len(docs)}")
    return docs[0] if docs else None
