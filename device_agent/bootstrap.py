"""The zipapp's start: check the Python, verify or repair the unpacked copy, run the agent.

This file is the zipapp's `__main__.py` (edge.agentpkg writes it there with FILES filled
in). Python compiles a zipapp's modules on every start (it cannot cache their bytecode in
the zip), so the agent unpacks itself beside the zipapp (`<pyz>.d`) and imports from
there. Every start checks that copy against the sizes and sha256 digests recorded at
build time and extracts it again when a file was changed, lost or torn by a power cut.
It refuses a directory that others can write, then tells the package which zipapp it is,
so jobs re-run exactly this file (device_agent.jobs.agent_command).

It must parse on any Python 3, so that a too-old one says so instead of failing on
syntax (3.6, JetPack 4.6's, included): no `from __future__ import annotations`, no
walrus, stdlib only.
"""

import os
import stat
import sys
from typing import Dict, List, Optional, Tuple, Union

# name -> [size, sha256] of every file in the zipapp; edge.agentpkg fills this line in.
FILES: Dict[str, List[Union[int, str]]] = {}


def writable_by_others(path: str) -> Optional[Tuple[str, str]]:
    """(problem, hint) when users other than this one could change the directory `path`,
    as OpenSSH's StrictModes judges it: owned by someone else, or writable by others or by
    a group that is not this user's own private group (Debian's rule for umask 002 logins).
    None when it is safe or does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    uid = os.getuid()
    if st.st_uid not in (uid, 0):
        return (
            f"{path} belongs to uid {st.st_uid}, not to this user (uid {uid}): someone "
            "else could change the agent or its jobs.",
            f"Use a device root of your own, or: chown {uid} {path}",
        )
    writable = bool(st.st_mode & 0o002)
    if st.st_mode & 0o020 and not writable:
        try:
            import grp
            import pwd

            group = grp.getgrgid(st.st_gid)
            owner = pwd.getpwuid(st.st_uid)
            primary = {p.pw_name for p in pwd.getpwall() if p.pw_gid == st.st_gid}
            writable = primary | set(group.gr_mem) != {owner.pw_name}
        except (ImportError, KeyError):
            writable = True
    if writable:
        return (
            f"{path} can be written by other users (mode {st.st_mode & 0o777:o}): they "
            "could change the agent or its jobs.",
            f"chmod go-w {path}",
        )
    return None


def _refuse(problem: Tuple[str, str]) -> None:
    import json

    sys.stdout.write(json.dumps({"error": problem[0], "hint": problem[1]}) + "\n")
    sys.exit(3)  # device_agent.__main__.EXIT_AGENT_ERROR


def verified(d: str) -> bool:
    """Whether `d` holds exactly the recorded bytes, in files and dirs only we can write."""
    import hashlib

    dirs = set()
    try:
        for name, (size, digest) in FILES.items():
            dirs.add(os.path.dirname(name))
            fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(fd)
                if st.st_size != size or st.st_mode & 0o022 or st.st_uid != os.getuid():
                    return False
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    return False
        for sub in dirs | {""}:
            st = os.lstat(os.path.join(d, sub))
            if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
                return False
    except (OSError, ValueError):
        return False
    return True


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _extract(pyz: str, parent: str) -> str:
    """A fresh, verified, fsynced copy of the package in a new directory under `parent`."""
    import hashlib
    import tempfile
    import zipfile

    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    with zipfile.ZipFile(pyz) as z:
        for name, (size, digest) in sorted(FILES.items()):
            data = z.read(name)
            if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
                raise ValueError(f"{name} in {pyz} does not match its digest")
            path = tmp
            for part in name.split("/")[:-1]:  # each level 0o755, whatever the umask says
                path = os.path.join(path, part)
                if not os.path.isdir(path):
                    os.mkdir(path, 0o755)
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(fd)
    for sub in sorted({os.path.dirname(n) for n in FILES}, reverse=True):
        _fsync_dir(os.path.join(tmp, sub))
    _fsync_dir(tmp)
    return tmp


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def _repair(pyz: str, d: str) -> Optional[str]:
    """Replace `d` with a fresh copy (one process at a time); None: run from the zip."""
    import fcntl
    import zipfile

    parent = os.path.dirname(d)
    lock = os.open(parent, os.O_RDONLY)
    tmp: Optional[str] = None
    aside: Optional[str] = None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when closed
        if verified(d):  # another start repaired it meanwhile
            return d
        tmp = _extract(pyz, parent)
        if os.path.lexists(d):  # the bad copy: out of the way first, then removed
            aside = os.path.join(parent, f".{os.path.basename(d)}.bad-{os.getpid()}")
            os.rename(d, aside)
        os.rename(tmp, d)
        tmp = None
        os.fsync(lock)
        return d
    except (OSError, ValueError, zipfile.BadZipFile):
        return None
    finally:
        for path in (tmp, aside):
            if path:
                _remove(path)
        os.close(lock)


def unpacked(pyz: str) -> Optional[str]:
    """The verified `<pyz>.d`, repaired first when needed; None: run from the zip."""
    d = pyz + ".d"
    return d if verified(d) else _repair(pyz, d)


def run() -> None:
    """The zipapp's start (it never returns)."""
    if sys.version_info < (3, 8):  # noqa: UP036 - this check is for Pythons older than ours
        sys.stderr.write(f"edge-agent needs Python 3.8+, this is {sys.version.split()[0]}\n")
        sys.exit(4)
    pyz = os.path.abspath(sys.argv[0])
    for directory in (os.path.dirname(pyz), os.path.dirname(os.path.dirname(pyz))):
        problem = writable_by_others(directory)
        if problem:
            _refuse(problem)
    # -I also hides the login's user site-packages, where boards often have numpy (pip3
    # install --user); put it back, after the agent and the system's paths.
    if sys.flags.no_user_site and sys.prefix == sys.base_prefix and os.getuid() == os.geteuid():
        import site

        if os.path.isdir(site.getusersitepackages()):
            site.addsitedir(site.getusersitepackages())
    d = unpacked(pyz)
    if d:
        sys.path.insert(0, d)
    import device_agent

    device_agent.ZIPAPP = pyz
    from device_agent.__main__ import main

    sys.exit(main())


if __name__ == "__main__":
    run()
