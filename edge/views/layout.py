"""Tables that never cut a value, and consoles that do not squeeze piped output.

rich's own fallback for a table wider than the terminal is to cut cells with '…'. A
`FitTable` instead decides at render time, for the width it is given:

- a `name` or `number` column is never wrapped nor cut (its widest cell sets its width);
- a `text` column wraps on words (a word longer than the column folds, never '…');
- when the minimum widths do not fit, the columns with the highest `drop` priority are left
  out (the caption says which), and only when nothing droppable is left do cells wrap.

A `PipeConsole` writing to something that is not a terminal (a pipe, a file, a CI log) is
PIPED_WIDTH columns wide, whatever COLUMNS says, so piped tables are never narrowed at all.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import IO, Any, Literal

from rich.cells import cell_len
from rich.console import (
    Console,
    ConsoleDimensions,
    ConsoleOptions,
    Group,
    JustifyMethod,
    RenderableType,
    RenderResult,
)
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

Kind = Literal["name", "number", "text"]

PIPED_WIDTH = 1000
# A text column is not squeezed below its longest word, or this many cells if that is less.
TEXT_MIN = 20
TEXT_SQUEEZED = 8  # ... and this many when the table does not fit otherwise


def is_tty(file: IO[str]) -> bool:
    """Whether `file` is a terminal (False for a closed or tty-less stream)."""
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:
        return False


class PipeConsole(Console):
    """A Console that is PIPED_WIDTH wide when its file is not a terminal (unless a width
    was given), so piped or logged output is laid out for no terminal at all."""

    def __init__(self, *args: Any, width: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._fixed_width = width is not None

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if not self._fixed_width and not is_tty(self.file):
            return ConsoleDimensions(PIPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size
        self._fixed_width = True


class FitTable(Table):
    """A rich Table whose columns are declared by kind and drop priority (`column`), and
    that fits the width it is rendered at without cutting a name or a number."""

    def __init__(self, *headers: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drop: dict[int, int] = {}  # column index -> priority; 0: always shown
        self.kinds: dict[int, Kind] = {}
        self.group: tuple[str, ...] = ()
        self.least: dict[int, int] = {}
        for header in headers:
            self.column(header)

    def column(
        self,
        header: RenderableType,
        kind: Kind = "name",
        drop: int = 0,
        justify: JustifyMethod | None = None,
        style: str | None = None,
        least: int = 0,
    ) -> FitTable:
        """Add a column; `drop` > 0 may be left out when the width is short, highest first.
        `least`: a text column keeps this many cells before other columns are left out."""
        self.add_column(
            header,
            justify=justify or ("right" if kind == "number" else "left"),
            no_wrap=kind != "text",
            overflow="fold",
            style=style,
        )
        index = len(self.columns) - 1
        self.kinds[index], self.drop[index] = kind, drop
        self.least[index] = least
        return self

    def droppable(self, *headers: str) -> FitTable:
        """Let these columns (by header) be left out when short of width, the first first."""
        names = [_plain(c.header) for c in self.columns]
        for rank, header in enumerate(headers):
            self.drop[names.index(header)] = len(headers) - rank
        return self

    def grouped(self, *headers: str) -> FitTable:
        """When the table does not fit, show one table per distinct value of these columns
        (titled by it) before falling back to `records`: e.g. (device, model) of a bench."""
        self.group = headers
        return self

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        out = self.fitted(console, options.max_width)
        if isinstance(out, Table):
            yield from Table.__rich_console__(out, console, options)
        else:
            yield out

    def fitted(self, console: Console, width: int) -> Table | Group:
        """This table laid out for `width` cells: fixed column widths, and the columns that
        did not fit left out (named in the caption); as `records` if even that is too wide."""
        cols = self.columns
        kinds = [self.kinds.get(i, "text" if not c.no_wrap else "name") for i, c in enumerate(cols)]
        sizes = [_measure(console, c) for c in cols]
        pad = self.padding[1] + self.padding[3]

        def need(i: int, level: int) -> int:
            """Level 0: a text column keeps TEXT_MIN cells; 1: its longest word up to
            TEXT_MIN; 2: up to TEXT_SQUEEZED. Names and numbers: always all of them."""
            word, want = sizes[i]
            if kinds[i] != "text":
                return want
            if level == 0:
                return min(want, max(TEXT_MIN, self.least.get(i, 0)))
            return min(want, word, TEXT_MIN if level == 1 else TEXT_SQUEEZED)

        def total(keep: list[int], widths: dict[int, int]) -> int:
            border = (2 if self.show_edge else 0) + len(keep) - 1 if self.box else 0
            return sum(widths[i] + pad for i in keep) + border

        grouping = bool(self.group and self.row_count)
        # a table that can be grouped is grouped before any column is left out
        for level in (0, 1) if grouping else (0, 1, 2):
            least = {i: need(i, level) for i in range(len(cols))}
            keep = list(range(len(cols)))
            droppable = sorted(
                (i for i in keep if self.drop.get(i) and not grouping),
                key=lambda i: (-self.drop[i], -i),
            )
            dropped: list[int] = []
            while total(keep, least) > width and droppable:
                dropped.append(droppable.pop(0))
                keep.remove(dropped[-1])
            for i in reversed(dropped):  # one dropped early may fit once others are out
                if total(sorted([*keep, i]), least) <= width:
                    keep = sorted([*keep, i])
            if total(keep, least) <= width:
                widths = {i: sizes[i][1] for i in keep}
                excess = total(keep, widths) - width
                while excess > 0:  # narrow the widest text column that still can be
                    i = max((i for i in keep if widths[i] > least[i]), key=lambda i: widths[i])
                    widths[i] -= 1
                    excess -= 1
                return self._subset(keep, widths)
        if grouping:
            return self._groups(console, width)
        return self.records()

    def _groups(self, console: Console, width: int) -> Group:
        names = [_plain(c.header) for c in self.columns]
        key_cols = [names.index(h) for h in self.group]
        rest = [i for i in range(len(self.columns)) if i not in key_cols]
        rows: dict[tuple[str, ...], list[int]] = {}
        for r in range(self.row_count):
            key = tuple(_text(console, self.columns[i]._cells[r]).plain for i in key_cols)
            rows.setdefault(key, []).append(r)
        parts: list[RenderableType] = []
        if self.title:
            parts.append(Text.assemble(_text(console, self.title), style="bold"))
        for key, members in rows.items():
            title = " · ".join(key)
            title = title if cell_len(title) <= width else "\n".join(key)  # one value a line
            parts.append(Text(title, style="bold"))
            sub = FitTable(box=self.box)
            for i in rest:
                c = self.columns[i]
                kind = self.kinds.get(i, "name" if c.no_wrap else "text")
                sub.column(c.header, kind, self.drop.get(i, 0), c.justify, str(c.style or ""))
            for r in members:
                sub.add_row(*(self.columns[i]._cells[r] for i in rest), style=self.rows[r].style)
            parts.append(sub)
        if self.caption:
            parts.append(_text(console, self.caption))
        return Group(*parts)

    def _subset(self, keep: list[int], widths: dict[int, int]) -> Table:
        out = copy.copy(self)
        cols = self.columns
        out.columns = [
            replace(cols[i], _index=j, width=widths[i], overflow="fold") for j, i in enumerate(keep)
        ]
        left_out = [_plain(c.header) for i, c in enumerate(cols) if i not in keep]
        if left_out:
            out.caption = _caption(self.caption, f"not shown here: {', '.join(left_out)}")
        return out

    def records(self) -> Table:
        """The table as records, one `header  value` line per cell and a rule between
        rows: for widths no row fits in. Nothing is left out and no name is folded."""
        out = Table(
            title=self.title,
            caption=self.caption,
            show_header=False,
            title_justify=self.title_justify,
            caption_justify=self.caption_justify,
            box=self.box,
        )
        out.add_column("field", style="bold", no_wrap=True)
        out.add_column("value", overflow="fold")
        headers = [c.header for c in self.columns] if self.show_header else [""] * len(self.columns)
        for r, row in enumerate(self.rows):
            cells = [c._cells[r] for c in self.columns]
            for h, cell in zip(headers, cells):
                out.add_row(h, cell, style=row.style)
            out.rows[-1].end_section = True
        return out


def _measure(console: Console, column: Column) -> tuple[int, int]:
    """(longest word, longest line) over a column's header and cells."""
    word, line = 1, 1
    for cell in [column.header, *column._cells]:
        if isinstance(cell, str):
            cell = console.render_str(cell)
        if isinstance(cell, Text):
            plain = cell.plain
            line = max(line, *(cell_len(ln) for ln in plain.splitlines() or [""]))
            word = max(word, *(cell_len(w) for w in plain.split() or [""]))
        else:
            m = Measurement.get(console, console.options, cell)
            word, line = max(word, m.minimum), max(line, m.maximum)
    return word, line


def _plain(header: Any) -> str:
    return header.plain if isinstance(header, Text) else Text.from_markup(str(header)).plain


def _text(console: Console, cell: Any) -> Text:
    if isinstance(cell, Text):
        return cell
    return console.render_str(cell) if isinstance(cell, str) else Text(str(cell))


def _caption(caption: Any, note: str) -> Text:
    text = Text.from_markup(caption) if isinstance(caption, str) else caption
    if not isinstance(text, Text):
        return Text(note, style="dim")
    return Text.assemble(text, "; " if text.plain else "", (note, "dim"))
