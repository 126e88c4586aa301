"""Tables printed with rich that read whole at the console's width (80 columns when not a terminal, or $COLUMNS).

rich squeezes a table that is wider than the console and cuts the cells it cannot wrap ("B…", "30…"); a command
that prints a table lays it out again, more compactly, where the usual layout would not fit."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def fits(console: Console, table: Table) -> bool:
    """Whether ``table`` prints at ``console``'s width as it is laid out, no cell wrapped by rich or cut."""
    return console.measure(table, options=console.options.update_width(10_000)).maximum <= console.width


def first_fitting(console: Console, *tables: Table) -> Table:
    """The first of ``tables`` (the most spacious layout first) that fits the console, else the last one."""
    return next((t for t in tables[:-1] if fits(console, t)), tables[-1])
