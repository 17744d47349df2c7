"""What every terminal table shares (issue 33): a compact 80-column layout, one number format per
column, the narrower table chosen when the wide one cannot fit, and text made safe to print.

A table that does not fit makes rich shrink its columns below their content: words are broken a
letter per line and numbers cut with "…". Here number columns never wrap or shrink, words
columns wrap only at spaces, :func:`needed_width` says what a table needs for that, and
:class:`Fitted` prints the first of several layouts (widest first) that fits.
"""

from __future__ import annotations

import math
import re

#: C0 and C1 control characters and DEL, except newline and tab: ESC starts terminal escape
#: sequences (colours, OSC 8 links, window titles, clipboard writes), NUL cuts C strings.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), so a term, spec
    name or path can never move the cursor, retitle the window or hide text on the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text) if _CONTROL.search(text) else text


def printable_tree(value):
    """A document with :func:`printable` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_tree(k): printable_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(printable_tree(v) for v in value)
    return value


def compact_table(title: str | None = None, caption: str | None = None):
    """A table for 80 columns: a rule under the header, one space between columns, no edges."""
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                 padding=(0, 1, 0, 0), pad_edge=False, collapse_padding=True, show_edge=False)


def add_columns(table, columns, words=(), left=()) -> None:
    """Numbers right-aligned, never wrapped or shrunk; ``words`` columns left-aligned and wrapped
    at spaces (their minimum is their longest word, so a word is never cut); ``left`` columns
    left-aligned and never wrapped (names, ids)."""
    for name in columns:
        is_words = name in words
        table.add_column(name, justify="left" if is_words or name in left else "right", no_wrap=not is_words,
                         overflow="fold")


def needed_width(table) -> int:
    """Columns this table needs to print every cell on one line: each column at its widest cell
    (header included), plus the padding and rules between columns (two cells each in the compact
    layout, three and the edges in rich's default box). Only a table that fits this way is safe:
    when the natural widths do not fit, rich narrows the widest wrapping columns below their
    longest word and breaks it ("photorealisti / c"), whatever that word's length. A table marked
    ``wraps_words`` with a single wrapping column (a what / value table) needs that column only as
    wide as its longest word: it is the only one rich narrows, and it wraps at spaces."""
    from rich.cells import cell_len

    def longest_word(column) -> int:
        return max((cell_len(w) for c in (column.header, *column.cells) for w in str(c).split()), default=1)

    widths = [max(cell_len(line) for c in (column.header, *column.cells) for line in (str(c).splitlines() or [""]))
              for column in table.columns]
    wrapping = [i for i, column in enumerate(table.columns) if not column.no_wrap]
    if getattr(table, "wraps_words", False) and len(wrapping) == 1:  # rich narrows only that column: by words
        widths[wrapping[0]] = longest_word(table.columns[wrapping[0]])
    gap = 2 if not table.show_edge else 3
    edges = 0 if not table.show_edge else 4
    return sum(widths) + gap * (len(widths) - 1) + edges


class Fitted:
    """The first of several tables (widest first) that fits the console's width, else the last:
    a narrow terminal drops a column rather than cutting a number or a word."""

    def __init__(self, *builders):
        self.builders = builders

    def __rich_console__(self, console, options):
        table = None
        for build in self.builders:  # built one at a time: the narrower ones only when needed
            table = build()
            if not hasattr(table, "columns") or needed_width(table) <= options.max_width:
                break
        yield table


def number_format(values, digits: int = 3, signed: bool = False, sci_below: float = 1e-3, min_decimals: int = 0,
                  basis=None):
    """One format for a whole column: fixed decimals giving the column's largest |value| ``digits``
    significant digits (0.163 and 0.3 print 0.163 and 0.300), or scientific notation for every
    value (2.83e-05 and 8.52e-08) when that largest value is below ``sci_below`` or most nonzero
    values of ``basis`` (default: ``values``; e.g. the estimates, not their CI ends) would print
    as zero (one that does reads "+0.000": no measurable value at this column's precision). A zero prints without a minus sign; None and non-finite values print "—"."""
    def finite(vs):
        return [abs(v) for v in vs if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]

    top = max(finite(values), default=0.0)
    sign = "+" if signed else ""
    decimals = digits - 1 if not top else max(0, digits - 1 - math.floor(math.log10(top)))
    decimals = min(max(decimals, min_decimals), 6)
    nonzero = [v for v in finite(values if basis is None else basis) if v]
    vanishing = sum(v < 0.5 * 10 ** -decimals for v in nonzero)  # would print as zero in fixed notation
    if top and (top < sci_below or 2 * vanishing > len(nonzero)):
        spec = f"{sign}.{digits - 1}e"
    else:
        spec = f"{sign}.{decimals}f"

    def fmt(value) -> str:
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "—"
        text = format(value, spec)
        if re.fullmatch(r"[+-]?0(\.0+)?(e[+-]?0+)?", text):
            text = format(0.0, spec)  # "-0.00" is a zero
        return text

    return fmt


class Stacked:
    """A table's rows one under another, for a terminal too narrow for its columns: each row's
    first cell on a line of its own (bold), then ``header value`` pairs indented below it,
    wrapped at spaces. Nothing is cut; a long id or path keeps a line to itself."""

    def __init__(self, title: str | None, headers, rows, caption: str | None = None):
        self.title, self.headers, self.caption = title, list(headers), caption
        self.rows = [r if isinstance(r, str) else list(r) for r in rows]

    def __rich_console__(self, console, options):
        from rich.padding import Padding
        from rich.text import Text

        if self.title:
            yield Text(self.title)
        for row in self.rows:
            if isinstance(row, str):  # a section heading
                yield Text(row, style="bold underline")
                continue
            yield Text(str(row[0]), style="bold")
            pairs = [f"{h}: {v}" if h else str(v) for h, v in zip(self.headers[1:], row[1:]) if str(v).strip()]
            if pairs:
                yield Padding(Text("; ".join(pairs)), (0, 0, 0, 2))
        if self.caption:
            yield Text(self.caption, style="dim")


def table_or_stacked(title: str | None, headers, rows, words=(), caption: str | None = None):
    """A compact table of ``rows`` when it fits the console, else :class:`Stacked` (nothing cut)."""
    return shrinking_table(title, headers, rows, words=words, caption=caption)


def shrinking_table(title: str | None, columns, rows, *, drops=((),), words=(), caption=None, wraps_words=False,
                    left=()):
    """The widest of several tables that fits, else :class:`Stacked`: ``drops`` lists, widest
    first, the columns each narrower table leaves out (``caption(dropped)`` says where they are).
    A row is a tuple of cells, or a string: a section heading (bold) before the rows under it."""

    def caption_for(dropped):
        return caption(dropped) if callable(caption) else caption

    def build(dropped):
        keep = [i for i, c in enumerate(columns) if c not in dropped]
        t = compact_table(title, caption_for(dropped))
        t.wraps_words = wraps_words
        add_columns(t, [columns[i] for i in keep], words=words, left=left)
        for n, row in enumerate(rows):
            if isinstance(row, str):
                from rich.text import Text

                t.add_row(Text(row, style="bold underline"), end_section=False)
                continue
            last = n + 1 == len(rows) or isinstance(rows[n + 1], str)
            t.add_row(*(str(row[i]) for i in keep), end_section=last and n + 1 < len(rows))
        return t

    builders = [lambda dropped=tuple(d): build(dropped) for d in drops]
    return Fitted(*builders, lambda: Stacked(title, columns, rows, caption_for(())))
