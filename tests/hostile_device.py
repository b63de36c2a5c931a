"""A hostile device for tests: a stand-in for the board's `python3` that lies on cue.

`hostile_python(dir, real_python)` writes an executable that a test device uses as its
`python` (`Device(python=str(path))`). Agent commands whose name has a canned reply in
`<dir>/replies.json` get that reply (stdout, stderr, exit code) instead of running the
agent; everything else (the host's probe, the install, other agent commands, the detached
worker) runs the real interpreter. The replies file is read on every call, so a test can
let a real job run and then make one command lie (`set_replies`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_SCRIPT = """\
#!{real}
import json, os, sys
REAL = {real!r}
args = sys.argv[1:]
flags = []
while args and args[0].startswith("-") and args[0] not in ("-c", "-m"):
    flags.append(args.pop(0))
if args and args[0].endswith(".pyz"):
    rest = args[1:]
    if rest[:1] == ["--root"]:
        rest = rest[2:]
    with open({replies!r}) as f:
        replies = json.load(f)
    reply = replies.get(rest[0] if rest else "")
    if reply is not None:
        sys.stdout.write(reply.get("stdout", ""))
        sys.stderr.write(reply.get("stderr", ""))
        sys.stdout.flush()
        sys.exit(int(reply.get("exit", 0)))
os.execv(REAL, [REAL] + sys.argv[1:])
"""


def hostile_python(directory: Path, real_python: Path) -> Path:
    """Write the stand-in interpreter under `directory` (no canned replies yet)."""
    directory.mkdir(parents=True, exist_ok=True)
    replies = directory / "replies.json"
    set_replies(directory, {})
    exe = directory / "python3"
    exe.write_text(_SCRIPT.format(real=str(real_python), replies=str(replies)))
    exe.chmod(0o755)
    return exe


def set_replies(directory: Path, replies: dict[str, dict[str, Any]]) -> None:
    """Replace the canned replies: {command: {"stdout": str, "stderr": str, "exit": int}}.
    A reply's stdout is printed as given (end JSON with a newline yourself)."""
    tmp = directory / "replies.json.tmp"
    tmp.write_text(json.dumps(replies))
    tmp.replace(directory / "replies.json")


def json_reply(obj: Any, exit: int = 0) -> dict[str, Any]:
    """A canned reply whose stdout is `obj` as one JSON line."""
    return {"stdout": json.dumps(obj) + "\n", "exit": exit}
