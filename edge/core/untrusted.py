"""Text a device sent, made safe to show: in the terminal (rich), in HTML and in plots.

Anything a device sends (hostnames, model names, errors, hints, events, op names, job
ids, paths, log lines) is untrusted. Shown raw, `[/x]` crashes rich's markup parser,
`[bold red]` restyles the output, and escape sequences (OSC 8 links, `ESC[2J`) reach the
user's terminal. Every view passes such text through one of these functions.
"""

from __future__ import annotations

import re

# ESC sequences: CSI (ESC [ ... final), OSC/DCS/SOS/PM/APC strings (ended by BEL or ST),
# and two-character ESC sequences; then the 8-bit CSI/OSC forms (C1 introducers).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x9d\x90\x98\x9e\x9f].*?(?:\x07|\x1b\\|\x9c|\Z)",
    re.DOTALL,
)
# What is left: C0 controls but tab and newline, DEL, C1 controls (a lone ESC among them).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_REPLACEMENT = "\N{REPLACEMENT CHARACTER}"


def clean(text: object, newlines: bool = True) -> str:
    """`text` as a string without escape sequences or control characters.

    Sequences are dropped (an OSC 8 link keeps its visible text); any other control
    character becomes U+FFFD. `newlines=False` also replaces newlines (one-line fields)."""
    s = _CONTROLS.sub(_REPLACEMENT, _ESCAPES.sub("", str(text)))
    return s if newlines else s.replace("\n", _REPLACEMENT)


def safe_text(text: object) -> str:
    """Device text for rich: cleaned, and its markup escaped (prints exactly as sent)."""
    from rich.markup import escape  # loaded by the views that need it, not by every command

    return escape(clean(text))


def safe_html(text: object) -> str:
    """Device text for an HTML page: cleaned and HTML-escaped (quotes included)."""
    import html

    return html.escape(clean(text), quote=True)


def safe_plot(text: object) -> str:
    """Device text for a matplotlib label: cleaned, with `$` escaped (no mathtext)."""
    return clean(text).replace("$", r"\$")
