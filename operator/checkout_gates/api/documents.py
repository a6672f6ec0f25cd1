"""Rollout YAML from bytes, safely: every document of a stream, or one line saying why not.

The text may come from a pull request, so it is hostile until proven otherwise. PyYAML's own
loaders build Python objects for whatever the text describes: an alias bomb ("billion laughs")
is a few hundred bytes that expand into gigabytes once anything walks it, 10,000 nested brackets
end in a RecursionError, and a duplicated key silently keeps the last value, so that a reviewer
reads gated steps while the object gets ``[setWeight: 100]``. Here PyYAML only scans and parses
(its C parser, libyaml, when installed; the pure one otherwise) and :class:`_Composer` builds the
node graph itself, refusing before any Python value exists:

* text larger than :data:`MAX_FILE_BYTES`, not UTF-8, or of more than :data:`MAX_DOCUMENTS` documents;
* nesting deeper than :data:`MAX_DEPTH`;
* more than :data:`MAX_ALIASES` aliases, or a stream whose values, aliases expanded, number more
  than :data:`MAX_NODES` (what a bomb is), and an alias of a node that contains it (a cycle);
* a key twice in one mapping (named, with both places), a key that is a list or a mapping;
* explicit tags other than JSON's types (``!!python/object``, ``!custom``, ``!!binary``, ``!!set``).

Only then does PyYAML's safe constructor build the values. MemoryError and RecursionError are
caught anyway, as a backstop. Pure: no file is read here (the CLI reads, bounded, and passes bytes).
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import yaml
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from checkout_gates.api.text import printable, shown

# A real rollout is a few KiB of a few hundred values, ten levels deep, in one document; these
# limits are far above any real one and far below what hurts.
MAX_FILE_BYTES: Final = 2 * 1024 * 1024
MAX_DOCUMENTS: Final = 100
MAX_DEPTH: Final = 64
MAX_ALIASES: Final = 256
# Values in the whole stream, every alias counted as the whole node it repeats: a rollout has about
# 200, so this is MAX_DOCUMENTS rollouts' worth.
MAX_NODES: Final = 20_000
MAX_NUMBER_DIGITS: Final = 100  # Python refuses to read integers of more than 4,300 digits anyway

_CORE = "tag:yaml.org,2002:"
# The explicit tags a rollout may use: JSON's types, which is what kube-apiserver stores.
ALLOWED_TAGS: Final = frozenset(f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))
_NUMBER_TAGS = frozenset({f"{_CORE}int", f"{_CORE}float"})
# The tags whose scalars are equal as values though written differently (1 and 0x1, true and True).
_CANONICAL_TAGS = frozenset({f"{_CORE}int", f"{_CORE}float", f"{_CORE}bool", f"{_CORE}null"})
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")


class DocumentError(ValueError):
    """Text that is not a safe YAML stream; the message is one line (what is wrong, what is right),
    without the file's name, which the caller puts in front."""


class _Marked(Protocol):
    line: int
    column: int


def _at(mark: _Marked | None) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def _name(anchor: str) -> str:
    """An anchor's name as a message shows it (anchors are printable, but of any length)."""
    return printable(anchor[:40]) + ("..." if len(anchor) > 40 else "")


# The loader whose parser the composer reads events from, whose resolver tags plain scalars, and
# whose safe constructor builds the values once the nodes passed every check: libyaml's when PyYAML
# was built with it (ten times faster), else the pure one.
Loader = yaml.SafeLoader | yaml.CSafeLoader
DEFAULT_LOADER: type[Loader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Events:
    """The loader's parser and resolver, typed: PyYAML's stubs leave events optional, and the C and
    pure parsers' marks are of two classes that the nodes take alike."""

    def __init__(self, loader: Loader) -> None:
        self._loader: Any = loader

    def next(self) -> Event:
        event: Event | None = self._loader.get_event()
        if event is None:  # only after the stream's end, which the composer never reads past
            raise DocumentError("not valid YAML: the stream ended early")
        return event

    def peek(self) -> Event:
        event: Event | None = self._loader.peek_event()
        if event is None:
            raise DocumentError("not valid YAML: the stream ended early")
        return event

    def resolve(self, kind: type[Node], value: str | None, implicit: Any) -> str:
        return str(self._loader.resolve(kind, value, implicit))

    def scalar(self, node: ScalarNode) -> Any:
        """What the safe constructor makes of one scalar (it keeps no state for scalars)."""
        return self._loader.yaml_constructors[node.tag](self._loader, node)


def _marks(event: Event) -> tuple[Any, Any]:
    return event.start_mark, event.end_mark


class _Composer:
    """Events into nodes, like PyYAML's composer, with the limits above checked as each event arrives."""

    def __init__(self, loader: Loader) -> None:
        self._events = _Events(loader)
        self._anchors: dict[str, tuple[Node, int]] = {}
        self._values = 0
        self._aliases = 0

    def stream(self) -> list[Node]:
        """The root node of every document in the stream."""
        self._expect(StreamStartEvent)
        roots: list[Node] = []
        while not isinstance(self._events.peek(), StreamEndEvent):
            if len(roots) == MAX_DOCUMENTS:
                raise DocumentError(f"holds more than {MAX_DOCUMENTS} YAML documents; split it into several files")
            self._expect(DocumentStartEvent)
            roots.append(self._node(depth=1)[0])
            self._expect(DocumentEndEvent)
            self._anchors = {}  # anchors belong to their document
        return roots

    def _expect(self, kind: type[Event]) -> Event:
        event = self._events.next()
        if not isinstance(event, kind):  # the parser only emits well-formed streams; this is a safeguard
            raise DocumentError(f"not valid YAML: unexpected {type(event).__name__}{_at(event.start_mark)}")
        return event

    def _count(self, values: int, event: Event) -> None:
        self._values += values
        if self._values > MAX_NODES and self._aliases:
            raise DocumentError(
                f"expands to more than {MAX_NODES} values{_at(event.start_mark)} with its aliases repeated"
                " (an alias bomb?); a rollout has a few hundred values: use fewer aliases"
            )
        if self._values > MAX_NODES:
            raise DocumentError(
                f"holds more than {MAX_NODES} values (the last{_at(event.start_mark)});"
                " a rollout has a few hundred: split the file or remove what is not a rollout"
            )

    def _tag(self, event: ScalarEvent | CollectionStartEvent, kind: type[Node]) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            return self._events.resolve(kind, event.value if isinstance(event, ScalarEvent) else None, event.implicit)
        if tag not in ALLOWED_TAGS:
            written = "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
            raise DocumentError(
                f"the tag {shown(written)}{_at(event.start_mark)} is not allowed; a rollout holds plain"
                " strings, numbers, booleans, lists and mappings: remove the tag"
            )
        return tag

    def _node(self, depth: int) -> tuple[Node, int]:
        """The next node and how many values it stands for, its aliases expanded."""
        event = self._events.next()
        if isinstance(event, AliasEvent):
            return self._alias(event)
        if not isinstance(event, ScalarEvent | CollectionStartEvent):
            raise DocumentError(f"not valid YAML: unexpected {type(event).__name__}{_at(event.start_mark)}")
        if isinstance(event, CollectionStartEvent) and depth > MAX_DEPTH:
            raise DocumentError(
                f"is nested deeper than {MAX_DEPTH} levels{_at(event.start_mark)}; a rollout needs about ten"
            )
        anchor = event.anchor
        if anchor is not None and anchor in self._anchors:
            first = self._anchors[anchor][0].start_mark
            raise DocumentError(
                f"defines the anchor &{_name(anchor)} twice (first{_at(first)}, again{_at(event.start_mark)});"
                " give each anchor its own name"
            )
        self._count(1, event)
        node: Node
        if isinstance(event, ScalarEvent):
            node, size = self._scalar(event), 1
        elif isinstance(event, SequenceStartEvent):
            node, size = self._sequence(event, depth)
        else:
            assert isinstance(event, MappingStartEvent)
            node, size = self._mapping(event, depth)
        if anchor is not None:
            # Registered only now that the node is complete: an alias inside it cannot refer to it, so
            # no document is a cycle (PyYAML would build a self-containing list that nothing can walk).
            self._anchors[anchor] = (node, size)
        return node, size

    def _alias(self, event: AliasEvent) -> tuple[Node, int]:
        anchor = event.anchor or ""
        name = _name(anchor)
        if anchor not in self._anchors:
            raise DocumentError(
                f"the alias *{name}{_at(event.start_mark)} has no complete anchor &{name} before it"
                " (an alias repeats an earlier node, never one that contains it); define the anchor first"
            )
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise DocumentError(
                f"uses more than {MAX_ALIASES} aliases (the last{_at(event.start_mark)}); write the values out"
            )
        node, size = self._anchors[anchor]
        self._count(size, event)
        return node, size

    def _scalar(self, event: ScalarEvent) -> ScalarNode:
        tag = self._tag(event, ScalarNode)
        if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER_DIGITS:
            raise DocumentError(
                f"holds a number of {len(event.value)} characters{_at(event.start_mark)}; quote it if it is text"
            )
        start, end = _marks(event)
        return ScalarNode(tag, event.value, start, end, style=event.style)

    def _sequence(self, event: SequenceStartEvent, depth: int) -> tuple[SequenceNode, int]:
        node = SequenceNode(self._tag(event, SequenceNode), [], _marks(event)[0], None, flow_style=event.flow_style)
        size = 1
        while not isinstance(self._events.peek(), SequenceEndEvent):
            item, item_size = self._node(depth + 1)
            node.value.append(item)
            size += item_size
        node.end_mark = _marks(self._events.next())[1]
        return node, size

    def _canonical(self, key: ScalarNode) -> Any:
        """The value a scalar key stands for, so that ``1`` and ``0x1``, or ``true`` and ``True``, collide."""
        if key.tag not in _CANONICAL_TAGS:
            return key.value
        try:  # the constructor of one scalar: no state, no other node is looked at
            return self._events.scalar(key)
        except (ValueError, OverflowError, yaml.YAMLError):
            return key.value

    def _mapping(self, event: MappingStartEvent, depth: int) -> tuple[MappingNode, int]:
        node = MappingNode(self._tag(event, MappingNode), [], _marks(event)[0], None, flow_style=event.flow_style)
        size = 1
        seen: dict[tuple[str, Any], ScalarNode] = {}
        while not isinstance(self._events.peek(), MappingEndEvent):
            key, key_size = self._node(depth + 1)
            if not isinstance(key, ScalarNode):
                raise DocumentError(
                    f"has a {'list' if isinstance(key, SequenceNode) else 'mapping'} as a mapping key"
                    f"{_at(key.start_mark)}; keys are plain strings"
                )
            identity = (key.tag, self._canonical(key))
            first = seen.get(identity)
            if first is not None:
                # Last-wins would hide the first value from whoever reviews the file.
                raise DocumentError(
                    f"has the key {shown(key.value)} twice in one mapping (first{_at(first.start_mark)},"
                    f" again{_at(key.start_mark)}); keep one of them"
                )
            seen[identity] = key
            value, value_size = self._node(depth + 1)
            node.value.append((key, value))
            size += key_size + value_size
        node.end_mark = _marks(self._events.next())[1]
        return node, size


def check_size(size: int) -> None:
    """DocumentError when ``size`` bytes are more than a rollout file may hold (checked before parsing)."""
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            f"cannot read: it is larger than the {MAX_FILE_BYTES}-byte limit of a rollout file"
            f" ({size} bytes or more); a rollout is a few KiB: split it"
        )


def decode(data: bytes) -> str:
    """UTF-8 text (a leading byte order mark dropped); DocumentError for anything else."""
    check_size(len(data))
    if data.startswith(_UTF32_BOMS):
        raise DocumentError("cannot read: it is UTF-32 text (it starts with a byte order mark); save it as UTF-8")
    if data.startswith(_UTF16_BOMS):
        raise DocumentError("cannot read: it is UTF-16 text (it starts with a byte order mark); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DocumentError(
            f"cannot read: it is not UTF-8 text (byte 0x{data[error.start]:02x} at line {line},"
            f" byte offset {error.start}); save it as UTF-8"
        ) from None


def _yaml_problem(error: yaml.YAMLError, text: str, loader: type[Loader]) -> str:
    """PyYAML's error as one bounded line, with line and column from 1."""
    if isinstance(error, yaml.reader.ReaderError):
        # A character YAML forbids (NUL, other controls). libyaml counts bytes of UTF-8, PyYAML characters.
        before = (
            text.encode("utf-8")[: error.position].decode("utf-8", "replace")
            if loader is not yaml.SafeLoader
            else text[: error.position]
        )
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        code = error.character if isinstance(error.character, int) else ord(error.character or "\0")
        what = f"{error.reason} (character #x{code:04x}) at line {line}, column {column}"
    elif isinstance(error, yaml.MarkedYAMLError):
        what = f"{error.problem or 'invalid'}{_at(error.problem_mark)}"
        if error.context:
            what += f" ({error.context}{_at(error.context_mark)})"
    else:
        what = str(error)
    return printable(" ".join(what.split())[:300])


def _values(text: str, loader: type[Loader]) -> list[Any]:
    parser = loader(text)  # the pure reader checks for forbidden characters here already
    try:
        roots = _Composer(parser).stream()
        # Only now, every document checked, are Python values built.
        return [parser.construct_document(root) for root in roots]
    finally:
        parser.dispose()


def load_documents(data: bytes, *, loader: type[Loader] = DEFAULT_LOADER) -> list[tuple[int, Any]]:
    """The non-empty documents of a YAML stream, each with its 1-based position in the stream.

    DocumentError (one line) when the bytes are not UTF-8 text, not YAML, or break a limit above."""
    text = decode(data)
    try:
        values = _values(text, loader)
    except DocumentError:
        raise
    except yaml.YAMLError as error:
        raise DocumentError(f"not valid YAML: {_yaml_problem(error, text, loader)}") from None
    # The limits above keep these from happening; they are caught so that, should one slip
    # through, the answer is still one line and not a traceback.
    except RecursionError:
        raise DocumentError("cannot read: it is nested too deeply; a rollout needs about ten levels") from None
    except MemoryError:
        raise DocumentError("cannot read: it needs more memory than there is; a rollout is a few KiB") from None
    except Exception as error:
        # The constructor's own checks (the date 2026-02-30 unquoted, ``!!bool maybe``) raise what they like.
        detail = printable(" ".join(str(error).split())[:200])
        raise DocumentError(f"holds a value that cannot be read ({type(error).__name__}: {detail})") from None
    return [(number, value) for number, value in enumerate(values, start=1) if value is not None]
