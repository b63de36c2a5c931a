"""The zipapp's start: check the Python, verify or repair the unpacked copy, run the agent.

This file is the zipapp's `__main__.py` (edge.agentpkg writes it there with FILES filled
in). Python compiles a zipapp's modules on every start (it cannot cache their bytecode in
the zip), so the agent unpacks itself beside the zipapp (`<pyz>.d`) and imports from
there. A start checks that copy against the sizes and sha256 digests recorded at build
time and extracts it again when a file was changed, lost or torn by a power cut. A check
that passed leaves a stamp in the copy (`<pyz>.d/.stamp`: each file's size, mtime, ctime,
inode and mode as it was read), and while every file still matches its line the next
start skips the hashing: any write, chmod, rename or replacement moves a file's ctime.
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
STAMP = ".stamp"  # in the unpacked copy: its files as the last full check saw them


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


def _identity(name: str, st: os.stat_result) -> str:
    """One line of the stamp: what a write, chmod, chown, rename or replacement of the
    file changes (its ctime moves on any of them, and only root can set a clock back)."""
    size, digest = FILES[name]
    fields = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, st.st_mode)
    return "\t".join([name, str(size), str(digest)] + [str(v) for v in fields])


def _dirs_ok(d: str) -> bool:
    for sub in {os.path.dirname(n) for n in FILES} | {""}:
        st = os.lstat(os.path.join(d, sub))
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
            return False
    return True


def verified(d: str) -> Optional[str]:
    """When `d` holds exactly the recorded bytes, in files and dirs only we can write: the
    stamp of those files as they were read (else None)."""
    import hashlib

    lines = []
    try:
        for name in sorted(FILES):
            size, digest = FILES[name]
            fd = os.open(os.path.join(d, name), os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(fd)  # before the read: a later change moves its ctime
                if st.st_size != size or st.st_mode & 0o022 or st.st_uid != os.getuid():
                    return None
                if hashlib.sha256(f.read()).hexdigest() != digest:
                    return None
                lines.append(_identity(name, st))
        if not _dirs_ok(d):
            return None
    except (OSError, ValueError):
        return None
    return "\n".join(lines) + "\n"


def stamped(d: str) -> bool:
    """Whether every file of `d` is still the very file a full check verified (the stamp
    `<d>/.stamp` it left): a start then costs a stat per file, not a sha256 of each."""
    try:
        fd = os.open(os.path.join(d, STAMP), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "r") as f:
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or st.st_mode & 0o022 or not stat.S_ISREG(st.st_mode):
                return False
            recorded = f.read()
        lines = []
        for name in sorted(FILES):
            st = os.lstat(os.path.join(d, name))
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
                return False
            lines.append(_identity(name, st))
        return recorded == "\n".join(lines) + "\n" and _dirs_ok(d)
    except (OSError, ValueError):
        return False


def _write_stamp(d: str, text: str) -> None:
    """Leave `<d>/.stamp` for the next start; losing it only costs one full check. It
    lives in the copy, so a repair, which replaces the copy, drops it too."""
    tmp = os.path.join(d, f"{STAMP}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(d, STAMP))
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass


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
        if verified(d) is not None:  # another start repaired it meanwhile
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
    if stamped(d):
        return d
    stamp = verified(d)
    if stamp is None and _repair(pyz, d) is not None:
        stamp = verified(d)  # the fresh copy, read back as the next starts will see it
    if stamp is None:
        return None
    _write_stamp(d, stamp)
    return d


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
    from device_agent.__main__ import QUICK, command_of, main

    code = main()
    if command_of(sys.argv[1:]) in QUICK:
        # these run no threads and leave nothing open: the interpreter's teardown of its
        # modules (~5 ms here) would only delay the exit status the host waits for
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            os._exit(120)  # what Python exits with when it cannot flush stdout
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
