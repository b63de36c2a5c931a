"""`serve`: answer agent commands one after another from a single long-lived process.

The host's connection multiplexer keeps one `serve` per device, so a warm fleet command
costs a request line instead of a Python start (~0.15 s here, more on a Jetson's cores).

Wire format, one JSON object per line each way:
  request  {"id": N, "argv": [command, args...], "stdin": base64 or null}
  reply    {"id": N, "exit": code, "stdout": text, "stderr": text}
Only short commands that answer and return are served; `serve` ends at end of input.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import traceback
from typing import IO, Callable, List, Optional

SERVED = frozenset({"info", "status", "result", "cancel", "jobs", "push-plan", "push-commit",
                    "cache", "manifest"})


def answer(main: Callable[[Optional[List[str]]], int], root: str, request: dict) -> dict:
    """Run one request through `main` with its stdin, capturing stdout and stderr."""
    argv = [str(a) for a in request.get("argv") or []]
    reply = {"id": request.get("id"), "exit": 2, "stdout": "", "stderr": ""}
    if not argv or argv[0] not in SERVED:
        reply["stderr"] = f"serve: not a served command: {argv[:1]!r}\n"
        return reply
    data = request.get("stdin")
    text = base64.b64decode(data).decode() if data else ""
    saved = sys.stdin, sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(text), out, err
    try:
        code = main(["--root", root] + argv)
    except SystemExit as exc:  # argparse refusing the arguments
        code = exc.code if isinstance(exc.code, int) else 2
    except Exception:  # a bug in one command must not take the server down
        traceback.print_exc()
        code = 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    reply.update(exit=code, stdout=out.getvalue(), stderr=err.getvalue())
    return reply


def serve(main: Callable[[Optional[List[str]]], int], root: str,
          inp: Optional[IO[str]] = None, outp: Optional[IO[str]] = None) -> int:
    """Answer request lines from `inp` until it ends."""
    inp = inp or sys.stdin
    outp = outp or sys.stdout
    for line in inp:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
        except ValueError as exc:
            reply = {"id": None, "exit": 2, "stdout": "", "stderr": f"serve: {exc}\n"}
        else:
            reply = answer(main, root, request)
        outp.write(json.dumps(reply) + "\n")
        outp.flush()
    return 0
