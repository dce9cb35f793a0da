"""Tag schemes of token classification (NER) files, and their conversion to IOB2.

A tag is `O` (outside every entity) or a prefix, a dash and an entity type (`B-PER`, `I-LOC`):

    iob1    B-/I-      an entity starts with I-; B- only where an entity directly follows another entity of
                       the same type (CoNLL-2003's own files)
    iob2    B-/I-      every entity starts with B- (what the models are trained on)
    bioes   B-/I-/E-/S-   B- begins, I- continues, E- ends a multi-word entity; S- is a one-word entity

Anything else (a lower-case prefix, `B_PER`, `B-` without a type, `E-` in iob2) is outside the scheme:
the reader reports it with its file and line. `to_iob2` converts a valid sequence; where a tag cannot be
read as the scheme says (IOB2: `I-X` after `O` or after another type; BIOES: `I-`/`E-` that continue no
`B-`) it starts an entity there and returns that position as repaired: a finding, not a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SCHEMES = ("iob1", "iob2", "bioes")
PREFIXES = {"iob1": "BI", "iob2": "BI", "bioes": "BIES"}
OUTSIDE = "O"
EXAMPLES = {"iob1": "O, or B-/I- and a type, e.g. I-PER", "iob2": "O, or B-/I- and a type, e.g. B-PER",
            "bioes": "O, or B-/I-/E-/S- and a type, e.g. S-PER"}


def split_tag(tag: object, scheme: str) -> tuple[str, str] | None:
    """(prefix, type) of a tag of `scheme` (`("O", "")` for O), or None when the tag is outside it."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    if not isinstance(tag, str) or len(tag) < 3 or tag[1] != "-" or tag[0] not in PREFIXES[scheme]:
        return None
    kind = tag[2:]
    if not kind or kind != kind.strip() or any(c.isspace() for c in kind):
        return None
    return tag[0], kind


def first_outside(tags: Sequence[object], scheme: str) -> int | None:
    """The position of the first tag outside `scheme`, or None when every tag belongs to it."""
    return next((i for i, tag in enumerate(tags) if split_tag(tag, scheme) is None), None)


def to_iob2(tags: Sequence[str], scheme: str) -> tuple[list[str], list[int]]:
    """(the tags in IOB2, the positions where an invalid sequence was repaired to start an entity).

    IOB1: an I- that starts an entity (after O, or after another type) becomes B-; B- stays B-.
    IOB2: kept; an I-X after O, at the start, or after another type is repaired to B-X.
    BIOES: S- becomes B-, E- becomes I-; an I-/E- that follows no B-/I- of its type is repaired to B-.
    Raises ValueError for a tag outside the scheme (the reader checks with `first_outside` first)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    out: list[str] = []
    repaired: list[int] = []
    prev_prefix, prev_type = OUTSIDE, ""
    for i, tag in enumerate(tags):
        parts = split_tag(tag, scheme)
        if parts is None:
            raise ValueError(f"tag {tag!r} is outside the {scheme} scheme")
        prefix, kind = parts
        continues = prev_type == kind and prev_prefix in ("B", "I")
        if prefix == OUTSIDE:
            out.append(OUTSIDE)
        elif prefix in ("B", "S"):
            out.append(f"B-{kind}")
        elif scheme == "iob1":  # I-: continues an entity of its type, else starts one
            out.append(f"I-{kind}" if continues else f"B-{kind}")
        elif continues:  # iob2 I-, bioes I-/E-
            out.append(f"I-{kind}")
        else:
            out.append(f"B-{kind}")
            repaired.append(i)
        prev_prefix, prev_type = prefix, kind
        if scheme == "bioes" and prefix in ("E", "S"):
            prev_prefix = "E"  # the entity is closed: nothing continues it
    return out, repaired


def entity_spans(iob2_tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of an IOB2 sequence as (type, start, end exclusive). An I-X that continues no entity of
    type X starts one (as `to_iob2` would have repaired it)."""
    spans: list[tuple[str, int, int]] = []
    kind, start = None, 0
    for i, tag in enumerate(list(iob2_tags) + [OUTSIDE]):
        prefix, _, tag_type = tag.partition("-")
        if kind is not None and (prefix != "I" or tag_type != kind):
            spans.append((kind, start, i))
            kind = None
        if prefix in ("B", "I") and kind is None:
            kind, start = tag_type, i
    return spans


def tag_names(types: Iterable[str]) -> list[str]:
    """The IOB2 label set of the entity types: O first, then B-/I- of each type in sorted order."""
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in sorted(set(types)) for prefix in ("B", "I")]


def entity_types(iob2_tags: Iterable[str]) -> set[str]:
    """The entity types that occur in IOB2 tags."""
    return {tag[2:] for tag in iob2_tags if tag != OUTSIDE}
