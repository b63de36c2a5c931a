"""Fleet inventory: file format, location, target resolution, Ansible import and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Tuple

import pytest
import yaml
from typer.testing import CliRunner

from edge.cli import fleet as cli
from edge.core.errors import DeviceError, EdgeError
from edge.core.paths import config_dir
from edge.fleet import ansible as A
from edge.fleet import inventory as F
from edge.fleet.devices import LOCAL, Device, local_device, resolve_targets

ANSIBLE = Path(__file__).resolve().parents[2] / "data" / "ansible"
ROOT = Path(__file__).resolve().parents[3]

EXPECTED = {  # the fleet that both sample Ansible inventories describe
    "gateway.example.com": dict(
        host="gateway.example.com",
        port=None,
        user="ops",
        key=None,
        python="/usr/bin/python3",
        tags=[],
    ),
    "nano01": dict(
        host="nano01",
        port=None,
        user="jetson",
        key="~/.ssh/jetson_ed25519",
        python="/usr/bin/python3.8",
        tags=["jetsons", "lab", "nanos"],
    ),
    "nano02": dict(
        host="nano02",
        port=None,
        user="jetson",
        key="~/.ssh/jetson_ed25519",
        python="/usr/bin/python3.8",
        tags=["jetsons", "nanos"],
    ),
    "nano03": dict(
        host="nano03",
        port=None,
        user="jetson",
        key="~/.ssh/jetson_ed25519",
        python="/usr/bin/python3.8",
        tags=["jetsons", "nanos"],
    ),
    "orin-agx": dict(
        host="10.0.0.30",
        port=None,
        user="admin",
        key="~/.ssh/jetson_ed25519",
        python="/opt/lab/python3",
        tags=["jetsons", "lab", "orins"],
    ),
    "orin-nano": dict(
        host="10.0.0.31",
        port=2222,
        user="jetson",
        key="~/.ssh/jetson_ed25519",
        python="/usr/bin/python3",
        tags=["jetsons", "orins"],
    ),
    "xavier-nx": dict(
        host="10.0.0.40",
        port=2201,
        user="jetson",
        key="~/.ssh/jetson_ed25519",
        python="/usr/bin/python3",
        tags=["jetsons", "xaviers"],
    ),
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGE_FLEET from the caller, and a cwd without a fleet.yaml."""
    monkeypatch.delenv("EDGE_FLEET", raising=False)
    monkeypatch.delenv("EDGE_KNOWN_HOSTS", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def dev(name: str, host: str = "10.0.0.1", **kw: Any) -> Device:
    return Device(name=name, host=host, **kw)


def fleet(*devices: Device) -> F.Inventory:
    inv = F.Inventory.load()
    for d in devices:
        inv.add(d)
    inv.save()
    return inv


# --------------------------------------------------------------------------- location


def test_inventory_location_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert F.inventory_path() == config_dir() / "fleet.yaml"
    here = Path.cwd() / "fleet.yaml"
    here.write_text("version: 1\ndevices: {}\n")
    assert F.inventory_path() == here
    explicit = tmp_path / "elsewhere" / "my-fleet.yaml"
    monkeypatch.setenv("EDGE_FLEET", str(explicit))
    assert F.inventory_path() == explicit  # explicit wins over ./fleet.yaml
    monkeypatch.setenv("EDGE_FLEET", "~/fleet-x.yaml")
    assert F.inventory_path() == Path.home() / "fleet-x.yaml"


def test_known_hosts_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert F.known_hosts_path() == config_dir() / "known_hosts"
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(tmp_path / "kh"))
    assert F.known_hosts_path() == tmp_path / "kh"


def test_load_uses_the_resolved_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (Path.cwd() / "fleet.yaml").write_text("version: 1\ndevices:\n  here: {host: h1}\n")
    assert [d.name for d in F.Inventory.load().devices()] == ["here"]
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "env.yaml"))
    inv = F.Inventory.load()
    assert inv.devices() == [] and inv.path == tmp_path / "env.yaml"  # missing file: empty


# --------------------------------------------------------------------------- the file


def test_round_trip_omits_none_and_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fleet.yaml"
    inv = F.Inventory(path)
    inv.add(
        dev(
            "orin",
            "10.0.0.5",
            port=2222,
            user="jetson",
            key="~/.ssh/id_orin",
            python="/usr/bin/python3.8",
            root="/data/edge",
            tags=["orin", "lab"],
        )
    )
    inv.add(dev("nano", "nano.local"))
    inv.save()
    data = yaml.safe_load(path.read_text())
    assert data == {
        "version": 1,
        "devices": {
            "nano": {"host": "nano.local", "python": "python3", "root": "~/.edge"},
            "orin": {
                "host": "10.0.0.5",
                "port": 2222,
                "user": "jetson",
                "key": "~/.ssh/id_orin",
                "python": "/usr/bin/python3.8",
                "root": "/data/edge",
                "tags": ["orin", "lab"],
            },
        },
    }
    assert list(data["devices"]) == ["nano", "orin"]
    assert [p.name for p in path.parent.iterdir()] == ["fleet.yaml"]  # no temp file left
    again = F.Inventory.load(path)
    assert again.devices() == inv.devices()
    assert again.get("orin").key == "~/.ssh/id_orin"  # stored as given, not expanded


def test_save_replaces_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("version: 1\ndevices:\n  a: {host: h}\n")
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda s, d: (calls.append((s, d)), real(s, d)))
    inv = F.Inventory.load(path)
    inv.remove("a")
    inv.save()
    assert [Path(d) for _, d in calls if Path(d).name == path.name] == [path]
    assert F.Inventory.load(path).devices() == []


@pytest.mark.parametrize(
    "text, where",
    [
        ("version: 1\ndevices:\n  nano1: {host: h, port: abc}\n", "devices.nano1.port"),
        ("version: 1\ndevices:\n  nano1: {host: h, port: 70000}\n", "devices.nano1.port"),
        ("version: 1\ndevices:\n  nano1: {port: 22}\n", "devices.nano1.host"),
        ("version: 1\ndevices:\n  nano1: {host: h, hostname: x}\n", "devices.nano1.hostname"),
        ("version: 1\ndevices:\n  nano1: {host: h, tags: lab}\n", "devices.nano1.tags"),
        ("version: 1\ndevices:\n  nano1: {host: -oProxyCommand=x}\n", "devices.nano1.host"),
        ("version: 1\ndevices:\n  local: {host: h}\n", "devices.local.name"),
        ("version: 1\ndevices:\n  nano1: [h]\n", "devices.nano1"),
        ("version: 2\ndevices: {}\n", "version"),
        ("devices: [a, b]\n", "devices"),
        ("version: 1\ndevices:\n  nano1: {host: h\n", "line"),
    ],
)
def test_malformed_inventory_names_file_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(F.FleetError) as info:
        F.Inventory.load(path)
    assert str(path) in info.value.message and where in info.value.message
    assert isinstance(info.value, EdgeError) and info.value.hint


def test_empty_file_is_an_empty_inventory(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text("# nothing yet\n")
    assert F.Inventory.load(tmp_path / "fleet.yaml").devices() == []


# --------------------------------------------------------------------------- add / rm


def test_add_defaults_and_validation() -> None:
    inv = F.Inventory.load()
    added = inv.add(Device(name="nx", host="10.0.0.9", python="", root="", tags=["a", "a"]))
    assert (added.python, added.root, added.tags, added.port) == ("python3", "~/.edge", ["a"], None)
    with pytest.raises(F.FleetError, match="already in the fleet") as info:
        inv.add(dev("nx"))
    assert "--replace" in (info.value.hint or "")
    assert inv.add(dev("nx", "10.0.0.10"), replace=True).host == "10.0.0.10"
    for bad, field in [
        (dev("local"), "reserved"),
        (dev("all"), "reserved"),
        (dev("-x"), "name"),
        (dev("a b"), "name"),
        (dev("x", port=0), "port"),
        (dev("x", port=65536), "port"),
        (dev("x", port=True), "port"),
        (Device(name="x"), "host"),
        (dev("x", "a@b"), "host"),
        (dev("x", user="-l"), "user"),
        (dev("x", tags=["a,b"]), "tags"),
        (dev("x", tags="lab"), "tags"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(F.FleetError, match=field):
            inv.add(bad)
    assert inv.add(dev("ok", port=65535, key="~/keys/none-yet")).key == "~/keys/none-yet"
    assert [d.name for d in inv.devices()] == ["nx", "ok"]


def test_remove_and_get() -> None:
    inv = fleet(dev("a"), dev("b"))
    assert inv.remove("a").name == "a" and "a" not in inv and len(inv) == 1
    with pytest.raises(DeviceError, match="'a'"):
        inv.remove("a")
    with pytest.raises(F.FleetError, match="built in"):
        inv.remove(LOCAL)
    assert inv.get("b").host == "10.0.0.1"
    assert inv.get(LOCAL) == local_device()


# --------------------------------------------------------------------------- resolution


def test_resolve_names_tags_all_local_dedup() -> None:
    fleet(
        dev("nano1", tags=["nano", "lab"]),
        dev("nano2", tags=["nano"]),
        dev("orin1", tags=["orin", "lab"]),
    )
    inv = F.Inventory.load()

    def names(targets: str) -> list[str]:
        return [d.name for d in inv.resolve(targets)]

    assert names("orin1") == ["orin1"]
    assert names("orin1, nano2 ,orin1") == ["orin1", "nano2"]
    assert names("tag:nano") == ["nano1", "nano2"]
    assert names("tag:lab,tag:nano") == ["nano1", "orin1", "nano2"]
    assert names("all") == ["nano1", "nano2", "orin1"]  # not local
    assert names("local,all,nano1") == ["local", "nano1", "nano2", "orin1"]
    assert inv.resolve("local") == [local_device()]
    assert [d.name for d in resolve_targets("orin1,local")] == ["orin1", "local"]
    assert resolve_targets("tag:orin")[0].host == "10.0.0.1"


def test_resolve_errors_have_hints() -> None:
    fleet(dev("nano1", tags=["nano"]), dev("orin1", tags=["orin"]))
    inv = F.Inventory.load()
    with pytest.raises(DeviceError) as info:
        inv.resolve("nano1,jetson-42")
    assert "jetson-42" in info.value.message
    hint = info.value.hint or ""
    assert "edge fleet add NAME --host HOST" in hint and "nano1, orin1" in hint
    with pytest.raises(DeviceError) as info:
        inv.resolve("tag:xavier")
    assert "xavier" in info.value.message and "nano, orin" in (info.value.hint or "")
    with pytest.raises(DeviceError, match="No target"):
        inv.resolve(" , ")


def test_all_with_an_empty_inventory() -> None:
    with pytest.raises(DeviceError) as info:
        F.Inventory.load().resolve("all")
    assert "edge fleet add" in (info.value.hint or "")
    with pytest.raises(DeviceError) as info:
        resolve_targets("jetson-42")
    assert "jetson-42" in info.value.message and "edge fleet add" in (info.value.hint or "")
    with pytest.raises(DeviceError, match="tag"):
        resolve_targets("tag:nano")


def test_local_alone_does_not_read_the_inventory() -> None:
    (Path.cwd() / "fleet.yaml").write_text("devices: [broken\n")
    assert resolve_targets("local") == [local_device()]
    with pytest.raises(F.FleetError, match="fleet.yaml"):
        resolve_targets("local,nano1")


# --------------------------------------------------------------------------- Ansible


@pytest.mark.parametrize("name", ["inventory.yml", "inventory.ini"])
def test_import_ansible_sample(name: str) -> None:
    devices = A.import_ansible(ANSIBLE / name)
    got = {
        d.name: {k: getattr(d, k) for k in ("host", "port", "user", "key", "python", "tags")}
        for d in devices
    }
    assert got == EXPECTED
    assert all(d.root == "~/.edge" for d in devices)


def test_import_yaml_and_ini_agree() -> None:
    def key(d: Device) -> str:
        return d.name

    assert sorted(A.import_ansible(ANSIBLE / "inventory.yml"), key=key) == sorted(
        A.import_ansible(ANSIBLE / "inventory.ini"), key=key
    )


def test_import_ini_details(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(
        "jet[8:10:2] ansible_user=u\n"
        "[edge]\n"
        "cam-[a:b] ansible_host=cams.example ansible_python_interpreter=auto_silent\n"
        "[site:children]\n"
        "edge\n"
        "[region:children]\n"
        "site\n"
        "[region:vars]\n"
        "ansible_user = regional\n"
        "ansible_port=2022\n"
        "[site:vars]\n"
        "ansible_user='site-user'\n"
    )
    devices = {d.name: d for d in A.import_ansible(path)}
    assert sorted(devices) == ["cam-a", "cam-b", "jet10", "jet8"]
    cam = devices["cam-a"]
    assert cam.tags == ["edge", "region", "site"]  # transitively, sorted
    assert (cam.host, cam.user, cam.port, cam.python) == (
        "cams.example",
        "site-user",
        2022,
        "python3",
    )
    assert devices["jet8"].tags == [] and devices["jet8"].user == "u"


def test_import_yaml_details(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "fleet": {
                            "vars": {"ansible_user": "parent", "ansible_port": 22},
                            "children": {
                                "jp5": {
                                    "vars": {"ansible_user": "child"},
                                    "hosts": {"b[1:2]": None},
                                }
                            },
                        }
                    }
                },
                "extra": {"hosts": {"solo": {"ansible_port": 2200}}},
            }
        )
    )
    devices = {d.name: d for d in A.import_ansible(path)}
    assert devices["b1"].user == "child" and devices["b1"].port == 22
    assert devices["b1"].tags == ["fleet", "jp5"]
    assert devices["solo"].tags == ["extra"] and devices["solo"].port == 2200


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[g]\nh1 ansible_port=notaport\n", "port"),
        ("[g]\nh1 stray\n", "key=value"),
        ("[g:weird]\nh1\n", "section"),
        ('[g]\nh1 ansible_user=\'{{ lookup("env", "USER") }}\'\n', "Jinja"),
        ("[a:children]\nb\n[b:children]\na\n[b]\nh1\n", "cycle"),
        ("# only comments\n", "no hosts"),
    ],
)
def test_import_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    with pytest.raises(F.FleetError, match=needle) as info:
        A.import_ansible(path)
    assert str(path) in info.value.message
    with pytest.raises(F.FleetError, match="cannot read"):
        A.import_ansible(tmp_path / "missing.ini")


def test_import_devices_added_and_skipped() -> None:
    inv = fleet(dev("nano01", "old-host"))
    devices = A.import_ansible(ANSIBLE / "inventory.ini")
    added, skipped = inv.import_devices(devices)
    assert skipped == ["nano01"] and "nano02" in added and len(added) == len(EXPECTED) - 1
    assert inv.get("nano01").host == "old-host"
    added, skipped = inv.import_devices(devices, replace=True)
    assert skipped == [] and len(added) == len(EXPECTED)
    assert inv.get("nano01").host == "nano01"


# --------------------------------------------------------------------------- CLI


def run(*args: str) -> Tuple[int, str]:
    """`edge fleet ARGS` with main()'s mapping: an EdgeError is exit 1, message, hint."""
    result = CliRunner().invoke(cli.app, list(args))
    output, code = result.output, result.exit_code
    if isinstance(result.exception, EdgeError):
        output += f"error: {result.exception.message}\nhint: {result.exception.hint}\n"
        code = 1
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return code, output


def test_cli_add_ls_rm() -> None:
    code, out = run(
        "add",
        "orin1",
        "--host",
        "10.0.0.5",
        "--port",
        "2222",
        "--user",
        "jetson",
        "--key",
        "~/.ssh/id_orin",
        "--tag",
        "orin",
        "--tag",
        "lab,agx",
        "--json",
    )
    assert code == 0, out
    assert json.loads(out) == {
        "name": "orin1",
        "host": "10.0.0.5",
        "port": 2222,
        "user": "jetson",
        "key": "~/.ssh/id_orin",
        "python": "python3",
        "root": "~/.edge",
        "tags": ["orin", "lab", "agx"],
        "jump": None,
    }
    code, out = run("add", "nano1", "--host", "nano1.local", "--python", "/usr/bin/python3.8")
    assert code == 0 and "added nano1" in out and str(config_dir()) in out
    code, out = run("add", "nano1", "--host", "x")
    assert code == 1 and "already" in out and "--replace" in out
    code, out = run("add", "nano1", "--host", "nano1.lan", "--replace")
    assert code == 0 and "replaced nano1" in out
    code, out = run("add", "bad", "--host", "h", "--port", "0")
    assert code == 1 and "port" in out

    code, out = run("ls", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["nano1", "orin1"]
    # --replace changed the host and kept the rest (the python given when it was added)
    assert rows[0]["host"] == "nano1.lan" and rows[0]["python"] == "/usr/bin/python3.8"
    code, out = run("ls", "--to", "tag:lab,local", "--json")
    assert [r["name"] for r in json.loads(out)] == ["orin1", "local"]
    code, out = run("ls")
    assert code == 0 and "orin1" in out and "10.0.0.5" in out and "nano1.lan" in out
    code, out = run("ls", "--to", "nope")
    assert code == 1 and "edge fleet add" in out

    code, out = run("rm", "orin1", "ghost")
    assert code == 1 and "ghost" in out
    assert len(F.Inventory.load()) == 2  # nothing removed when one name is unknown
    code, out = run("rm", "orin1", "nano1")
    assert code == 0 and "removed orin1" in out
    code, out = run("ls", "--json")
    assert json.loads(out) == []
    code, out = run("ls")
    assert code == 0 and "No devices" in out


def test_cli_import(tmp_path: Path) -> None:
    run("add", "nano01", "--host", "keep-me")
    code, out = run("import", str(ANSIBLE / "inventory.yml"), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["skipped"] == ["nano01"] and len(data["added"]) == len(EXPECTED) - 1
    assert data["inventory"] == str(config_dir() / "fleet.yaml")
    code, out = run("import", str(ANSIBLE / "inventory.ini"), "--replace")
    assert code == 0 and f"{len(EXPECTED)} added, 0 skipped" in out
    stored = {d.name: d for d in F.Inventory.load().devices()}
    assert stored["nano01"].host == "nano01" and stored["orin-nano"].port == 2222
    code, out = run("ls", "--to", "tag:xaviers", "--json")
    assert [r["name"] for r in json.loads(out)] == ["xavier-nx"]
    code, out = run("import", str(tmp_path / "missing.ini"))
    assert code == 1 and "cannot read" in out


def test_unknown_device_exits_1_through_the_real_entry_point(tmp_path: Path) -> None:
    """`edge convert MODEL --to unknown` in a fresh interpreter: exit 1 and the fleet hint."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"")
    inventory = tmp_path / "fleet.yaml"
    F.Inventory(inventory, [dev("nano1")]).save()
    env = {k: v for k, v in os.environ.items() if k != "EDGE_DEBUG"}
    env.update(EDGE_FLEET=str(inventory), PYTHONPATH=str(ROOT), COLUMNS="200")
    script = "import sys; from edge.cli.main import main; sys.argv[0] = 'edge'; main()"
    proc = subprocess.run(
        [sys.executable, "-c", script, "convert", str(model), "--to", "nano1,unknown-device"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "unknown-device" in proc.stderr and "edge fleet add" in proc.stderr
    assert "nano1" in proc.stderr and "Traceback" not in proc.stderr
