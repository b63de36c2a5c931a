"""The CLI's consoles are made at their first use (edge.cli._out): they must behave as
the rich Console they stand for, wherever rich takes one (the push bars' Live, too)."""

from __future__ import annotations

import io
import subprocess
import sys

from edge.cli._out import _LazyConsole
from edge.views.layout import PipeConsole
from edge.views.progress import PushBars


def test_push_bars_draw_on_a_lazy_console_in_a_terminal() -> None:
    lazy = _LazyConsole(stderr=True)
    out = io.StringIO()
    lazy.file = out  # the first use makes the console
    lazy._force_terminal = True
    assert isinstance(object.__getattribute__(lazy, "_made"), PipeConsole)
    assert lazy.is_terminal
    with PushBars(lazy) as bars:  # type: ignore[arg-type]  # a Live enters its console
        bars.start("jetson-1", 4 << 20)
        bars.advance("jetson-1", 4 << 20)
        bars.finish("jetson-1", True)
    assert "jetson-1" in out.getvalue()


def test_settings_and_reads_reach_the_one_console() -> None:
    lazy = _LazyConsole(stderr=False)
    lazy.quiet = True
    made = object.__getattribute__(lazy, "_made")
    assert made.quiet is True and lazy.quiet is True
    with lazy:  # rich's own buffer context
        lazy.print("not shown: quiet")


def test_nothing_is_loaded_until_a_console_is_used() -> None:
    code = (
        "import sys; from edge.cli import _out; "
        "print('rich' in sys.modules); _out.err_console.width; print('rich' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
