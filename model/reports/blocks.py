"""What a report is made of: blocks (heading, paragraph, table, figures, ...) in a `Report`, and the text rules
every renderer applies (`literal`). The renderers are in `model.reports.render`, the content in
`model.reports.documents`."""
from __future__ import annotations

from dataclasses import dataclass, field

from model.core.constants import CLASS_NAMES, DISPLAY_NAMES

FOOTER = "Research use only - not for the diagnosis of any patient"


def display(name: str) -> str:
    """'Mild_Demented' -> 'Mild dementia'."""
    return DISPLAY_NAMES[CLASS_NAMES.index(name)]


def words(value) -> str:
    """A setting in plain words: {"steps": 32, "scores": {"map": 0.1}} -> 'steps 32, scores (map 0.1)'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} ({words(v)})" if isinstance(v, dict) else f"{k} {words(v)}" for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str
    small: bool = False


@dataclass(frozen=True)
class Notice:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    widths: tuple[float, ...] | None = None  # relative column widths; None: equal


@dataclass(frozen=True)
class KeyValues:
    rows: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Figures:
    """PNG images side by side, each with a caption: (png bytes, caption)."""
    items: tuple[tuple[bytes, str], ...]
    width: float = 1.0  # share of the text width the row takes
    left: bool = False  # aligned left instead of centred


@dataclass(frozen=True)
class Beside:
    """Figures on the left and other blocks in a column to their right (PDF); one after the other in HTML."""
    left: Figures
    right: tuple


@dataclass(frozen=True)
class Lead:
    """One line that stands out: the answer."""
    text: str


@dataclass(frozen=True)
class Bars:
    """Labelled values in [0, 1] drawn as horizontal bars: (label, value, colour)."""
    items: tuple[tuple[str, float, str], ...]


@dataclass
class Report:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(b for b in blocks if b is not None)


def literal(text) -> str:
    """Text shown as it is: control characters (NUL, newline inside a name, ...) written as [U+XXXX]."""
    return "".join(ch if ch.isprintable() or ch == "\n" else f"[U+{ord(ch):04X}]" for ch in str(text))
