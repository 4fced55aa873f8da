"""Row-level rules of the Fashion Product Images source: CSV parsing, title masking and normalising, the grouped
split and rare classes. Pure functions on strings and lists (no pixels, no ``datasets``), so each rule is tested
on hand-written rows.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from typing import NamedTuple

import numpy as np

from mtl_bench.errors import UserError

TITLE = "productDisplayName"
LABEL = "articleType"
ATTRIBUTES = {"colour": "baseColour", "gender": "gender", "season": "season", "usage": "usage"}  # tag prefix: column
REQUIRED = ("id", LABEL, TITLE, *ATTRIBUTES.values())  # "image" is optional: images/<id>.jpg by default
MASK = "[mask]"
OTHER = "other"
EMPTY = frozenset({"", "na", "n/a", "nan", "none", "null"})  # read as a missing value
_STOPWORDS = frozenset({"and", "of", "the", "with", "for"})  # article-type words that give nothing away
# Colour words removed from titles before grouping: the Kaggle baseColour vocabulary (plus the data's own values).
COLOUR_WORDS = frozenset(
    "beige black blue bronze brown burgundy charcoal coffee copper cream fluorescent gold green grey khaki lavender "
    "lime magenta maroon mauve melange metallic multi multicolour multicoloured mushroom mustard navy nude off olive "
    "orange peach pink purple red rose rust sea silver skin steel tan taupe teal turquoise white yellow".split()
)


class Table(NamedTuple):
    """Rows of a styles table as {column: text}; ``malformed`` lists the line numbers that could not be parsed."""

    rows: list[dict[str, str]]
    malformed: list[int]


def parse_styles(text: str, source: str = "styles.csv") -> Table:
    """Parse a styles CSV, quoted or not.

    The original Kaggle file leaves commas inside ``productDisplayName`` unquoted (22 of 44k rows), so a record
    with more fields than the header gets its surplus fields joined back into the title; this is the "split on the
    first 9 commas" rule when the title is the last column, and still right when a column (``image``) follows it.
    A header without a required column is a UserError naming the file and the column.
    """
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    for column in REQUIRED:
        if column not in header:
            raise UserError(f"{source}: no column {column!r} (columns: {', '.join(header) or 'none'})")
    title = header.index(TITLE)
    rows, malformed = [], []
    for fields in reader:
        if not fields or fields == [""]:
            continue
        extra = len(fields) - len(header)
        if extra > 0:
            fields = [*fields[:title], ",".join(fields[title : title + extra + 1]), *fields[title + extra + 1 :]]
        elif extra < 0:
            malformed.append(reader.line_num)
            continue
        rows.append({column: value.strip() for column, value in zip(header, fields, strict=True)})
    return Table(rows, malformed)


def is_empty(value: object) -> bool:
    return value is None or str(value).strip().lower() in EMPTY


def _word_forms(word: str) -> set[str]:
    """Singular and plural spellings of one lower-case word (tshirts: tshirt, tshirts; watches: watch, ...)."""
    forms = {word, word + "s", word + "es"}
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("s"):
        forms.add(word[:-1])
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    return forms


def article_forms(article_type: str) -> set[str]:
    """Every spelling to hide for one article type: each of its words (stop words aside), singular or plural."""
    words = re.findall(r"[a-z0-9]+", article_type.lower().replace("-", ""))
    return set().union(*(_word_forms(w) for w in words if w not in _STOPWORDS))


def _matches(candidates: set[str], forms: set[str]) -> bool:
    """A title word hides an article-type word: one of its spellings, a longer word built on a singular or plural
    of at least 4 letters (heeled, blusher), or the same letters reordered, 5 letters or more (duffle, duffel)."""
    for word in candidates:
        if word in forms or any(len(f) >= 4 and word.startswith(f) for f in forms):
            return True
        if len(word) >= 5 and any(len(f) == len(word) and sorted(f) == sorted(word) for f in forms):
            return True
    return False


def mask_title(title: str, article_type: str) -> str:
    """The title with every word of its article type replaced by ``[mask]``, case-insensitively.

    A title word matches (see ``_matches``) when it, hyphens dropped (``T-shirt`` is ``tshirt``), one of its hyphen
    parts (``Flip-Flops``) matches a singular or plural form of an article-type word, or it joined with its
    neighbour is one (``Eye Shadow`` for Eyeshadow). Runs of masks become one mask, so the number of masks does not tell
    one-word types from two-word ones.
    """
    forms = article_forms(article_type)
    tokens = title.split()
    cores = [t.lower().strip(".,;:!?()[]{}'\"") for t in tokens]
    joined = [re.sub(r"[^a-z0-9]", "", c) for c in cores]
    hidden = [_matches({j, *re.split(r"[^a-z0-9]+", c)} - {""}, forms) for c, j in zip(cores, joined, strict=True)]
    for i in range(len(tokens) - 1):
        if joined[i] and joined[i + 1] and joined[i] + joined[i + 1] in forms:  # exact: no prefix rule here
            hidden[i] = hidden[i + 1] = True
    out: list[str] = []
    for token, hide in zip(tokens, hidden, strict=True):
        if not hide:
            out.append(token)
        elif not out or out[-1] != MASK:
            out.append(MASK)
    return " ".join(out)


def normalise_title(title: str, colour_words: frozenset[str] = COLOUR_WORDS) -> str:
    """Lower case, digits and punctuation stripped, colour words removed, whitespace collapsed: the grouping key
    under which colour variants of one product ("Nike Men Blue T-shirt 12" / "Nike Men Red T-shirt 14") are one."""
    words = re.sub(r"[^a-z]+", " ", title.lower()).split()
    return " ".join(w for w in words if w not in colour_words)


def grouped_split(keys: list[str], fractions: tuple[float, float, float], seed: int) -> list[int]:
    """Split index (0 train, 1 validation, 2 test) per row, such that rows with equal keys share a split.

    Groups are visited in a seeded random order and filled into train, then validation, then test, each group going
    where the running row count stands when it is reached, so split sizes follow ``fractions`` to within one group.
    """
    groups = sorted(set(keys))
    sizes = Counter(keys)
    order = np.random.default_rng([seed, 6]).permutation(len(groups))
    bounds = np.cumsum(fractions)[:2] * len(keys)
    assigned, seen = {}, 0
    for g in order:
        key = groups[g]
        assigned[key] = int(np.searchsorted(bounds, seen, side="right"))
        seen += sizes[key]
    return [assigned[k] for k in keys]


class RareRule(NamedTuple):
    """What ``rare_values`` decided: the kept value per row (None: dropped) and the values below the minimum."""

    values: list[str | None]
    rare: list[str]  # sorted by count, then name


def rare_values(values: list[str], min_count: int, mode: str, other: str = OTHER) -> RareRule:
    """Values seen fewer than ``min_count`` times become ``other`` (mode fold) or None (mode drop)."""
    counts = Counter(values)
    rare = sorted((v for v, n in counts.items() if n < min_count), key=lambda v: (counts[v], v))
    low = set(rare)
    replacement = other if mode == "fold" else None
    return RareRule([replacement if v in low else v for v in values], rare)


def attribute_tags(row: dict[str, str]) -> list[str]:
    """``colour:Blue``, ``gender:Men``, ``season:Summer``, ``usage:Casual``; empty values are left out."""
    return [f"{tag}:{row[column].strip()}" for tag, column in ATTRIBUTES.items() if not is_empty(row.get(column))]


def fold_rare_tags(tag_lists: list[list[str]], min_count: int, mode: str) -> tuple[list[list[str]], list[str]]:
    """``rare_values`` per attribute over rows of tags: ``colour:Rust`` -> ``colour:other`` (fold) or no colour tag
    (drop). Returns the new tag lists and the rare tags found."""
    out: list[list[str]] = [[] for _ in tag_lists]
    rare: list[str] = []
    for prefix in ATTRIBUTES:
        found = [(row, tag) for row, tags in enumerate(tag_lists) for tag in tags if tag.startswith(prefix + ":")]
        rule = rare_values([tag for _, tag in found], min_count, mode, f"{prefix}:{OTHER}")
        rare += rule.rare
        for (row, _), value in zip(found, rule.values, strict=True):
            if value is not None:
                out[row].append(value)
    return out, rare
