"""Build the agent zipapp (`edge-agent-<version>-<build>.pyz`) from the installed device_agent."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import tempfile
import threading
import zipapp
from pathlib import Path

import device_agent
from device_agent import __version__

from .paths import cache_dir

# Python compiles a zipapp's modules on every start (it cannot cache their bytecode in the
# zip): on first run the agent unpacks itself beside the zipapp (`<pyz>.d`, atomically)
# and imports from there, so later runs load cached bytecode. The check comes first so a
# too-old Python says so.
ZIPAPP_MAIN = (
    "import sys\n"
    "if sys.version_info < (3, 8):\n"
    "    sys.stderr.write('edge-agent needs Python 3.8+, this is %s\\n' % sys.version.split()[0])\n"
    "    sys.exit(4)\n"
    "import os\n"
    "def _unpacked():\n"
    "    pyz = os.path.abspath(sys.argv[0])\n"
    "    d = pyz + '.d'\n"
    "    if os.path.isdir(os.path.join(d, 'device_agent')):\n"
    "        return d\n"
    "    import shutil, tempfile, zipfile\n"
    "    try:\n"
    "        tmp = tempfile.mkdtemp(prefix='.unpack-', dir=os.path.dirname(pyz))\n"
    "        with zipfile.ZipFile(pyz) as z:\n"
    "            z.extractall(tmp, [n for n in z.namelist() if n.startswith('device_agent/')])\n"
    "        try:\n"
    "            os.rename(tmp, d)\n"
    "        except OSError:\n"
    "            shutil.rmtree(tmp, ignore_errors=True)\n"
    "        return d if os.path.isdir(os.path.join(d, 'device_agent')) else None\n"
    "    except (OSError, zipfile.BadZipFile):\n"
    "        return None\n"
    "_d = _unpacked()\n"
    "if _d:\n"
    "    sys.path.insert(0, _d)\n"
    "from device_agent.__main__ import main\n"
    "sys.exit(main())\n"
)


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 over the agent's sources: names the build on the device."""
    pkg = Path(device_agent.__file__).resolve().parent
    digest = hashlib.sha256(ZIPAPP_MAIN.encode())
    for src in _sources():
        digest.update(str(src.relative_to(pkg)).encode())
        digest.update(src.read_bytes())
    return digest.hexdigest()


def agent_filename() -> str:
    """`edge-agent-<version>-<build>.pyz`: a device that has the file has this build."""
    return f"edge-agent-{__version__}-{source_digest()[:12]}.pyz"


def _sources() -> list[Path]:
    pkg = Path(device_agent.__file__).resolve().parent
    return sorted(p for p in pkg.rglob("*.py") if "__pycache__" not in p.parts)


def build_zipapp(out_dir: Path | None = None) -> Path:
    """Return the path of the zipapp for this build, building it when the sources changed."""
    pkg = Path(device_agent.__file__).resolve().parent
    out_dir = out_dir or cache_dir() / "agent" / source_digest()[:16]
    target = out_dir / agent_filename()
    with _BUILD_LOCK:  # the devices of a fleet command ask for it from several threads
        if target.exists():
            return target
        out_dir.mkdir(parents=True, exist_ok=True)
        _build(pkg, target)
    return target


_BUILD_LOCK = threading.Lock()


def _build(pkg: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        for src in _sources():
            dest = stage / "device_agent" / src.relative_to(pkg)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        (stage / "__main__.py").write_text(ZIPAPP_MAIN)
        partial = target.with_suffix(f".pyz.partial{os.getpid()}")
        zipapp.create_archive(stage, partial, interpreter=None)
        os.replace(partial, target)  # other processes may race us: each has its own partial
