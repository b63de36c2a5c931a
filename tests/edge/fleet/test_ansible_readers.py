"""Ansible import through both readers: Ansible's own `ansible-inventory --list` (the real
one, from this venv) and the built-in reader. group_vars/ and host_vars/, ProxyJump in the
ssh args, vault, a plugin inventory, the --list JSON, warnings for what is not applied,
and a real connection through the bastion of the sshd fleet to an imported device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.fleet.ansible import read_builtin
from edge.fleet.ansible_import import ansible_inventory_command, import_inventory
from edge.fleet.inventory import FleetError, Inventory, device_to_dict
from edge.transport.ssh import SSHTransport

VENV_BIN = Path(sys.executable).parent
PASSWORD = "jetson-vault-pw\n"

# What Ansible's precedence makes of the lab below (inventory group vars < group_vars/all
# < group_vars/GROUP < inventory host vars < host_vars/HOST; child groups over parents).
EXPECTED = {
    "nano1": dict(
        host="10.0.0.11",
        user="hv-nano1",
        port=2212,
        python="/usr/bin/python3",
        jump=None,
        tags=["jetsons", "nanos"],
    ),
    "nano2": dict(
        host="10.0.0.12",
        user="gv-nanos",
        port=2200,
        python="/usr/bin/python3",
        jump="bastion",
        tags=["jetsons", "nanos"],
    ),
    "orin1": dict(
        host="10.0.0.21",
        user="orin-user",
        port=2300,
        python="/opt/orin/python3",
        jump="ops@gw2:2200",
        tags=["jetsons", "orins"],
    ),
    "orin2": dict(
        host="orin2",
        user="orin-user",
        port=2300,
        python="/opt/orin/python3",
        jump="admin@gw3",
        tags=["jetsons", "orins"],
    ),
}


@pytest.fixture(autouse=True)
def ansible_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real ansible-inventory of this venv (fails, never skips, without it); its
    state dir under tmp_path, not ~/.ansible."""
    command = VENV_BIN / "ansible-inventory"
    if not command.is_file():
        pytest.fail(
            f"{command} is missing: .venv/bin/pip install 'ansible-core>=2.17,<2.20'",
            pytrace=False,
        )
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "ansible-home"))
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "ansible-home" / "tmp"))
    assert ansible_inventory_command() == str(command)
    return command


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_lab(base: Path) -> Path:
    """An INI inventory with vars on every level of Ansible's precedence."""
    inv = write(
        base / "inventory.ini",
        "[nanos]\n"
        "nano1 ansible_host=10.0.0.11 ansible_port=2211 ansible_user=inv-host\n"
        "nano2 ansible_host=10.0.0.12 ansible_ssh_common_args='-o ProxyJump=bastion'\n"
        "[orins]\n"
        "orin1 ansible_host=10.0.0.21 "
        "ansible_ssh_common_args='-J ops@gw2:2200 -o StrictHostKeyChecking=no'\n"
        "orin2 ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p -q admin@gw3\"'\n"
        "[jetsons:children]\nnanos\norins\n"
        "[nanos:vars]\nansible_user=inv-nanos\nansible_port=2200\n"
        "[jetsons:vars]\nansible_python_interpreter=/usr/bin/python3\n",
    )
    write(
        base / "group_vars" / "all.yml",
        "ansible_user: all-user\nansible_become: true\napp_dir: /data/models\n",
    )
    write(base / "group_vars" / "nanos.yml", "ansible_user: gv-nanos\n")
    orins = base / "group_vars" / "orins"
    write(orins / "10-conn.yml", "ansible_user: orin-user\n")
    write(orins / "20-port.yaml", "ansible_port: 2300\n")
    write(orins / "python", "ansible_python_interpreter: /opt/orin/python3\n")  # no extension
    write(orins / ".hidden.yml", "ansible_port: 9999\n")  # hidden: Ansible skips it
    write(orins / "notes.txt", "ansible_port: 9998\n")  # not a vars extension: skipped
    write(base / "host_vars" / "nano1.yml", "ansible_user: hv-nano1\nansible_port: 2212\n")
    return inv


def summary(devices: list) -> dict[str, dict]:
    keys = ("host", "user", "port", "python", "jump", "tags")
    return {d.name: {k: getattr(d, k) for k in keys} for d in devices}


def warning_texts(result: object) -> set[str]:
    return {w.text for w in result.warnings}  # type: ignore[attr-defined]


@pytest.mark.parametrize("reader", ["built-in", "ansible"])
def test_group_vars_host_vars_and_proxyjump(tmp_path: Path, reader: str) -> None:
    result = import_inventory(make_lab(tmp_path / "lab"), reader)
    assert result.reader == ("ansible-inventory" if reader == "ansible" else "built-in")
    assert summary(result.devices) == EXPECTED
    texts = warning_texts(result)
    assert (
        "ansible_become: edge does not escalate privileges: the agent runs as the login "
        "user (hosts nano1, nano2, orin1, orin2)"
    ) in texts
    assert any("StrictHostKeyChecking=no" in t and "(host orin1)" in t for t in texts), texts
    assert any("app_dir" in t and "not used by edge" in t for t in texts), texts


def test_both_readers_agree_on_devices_and_warnings(tmp_path: Path) -> None:
    inv = make_lab(tmp_path / "lab")
    ours, theirs = import_inventory(inv, "built-in"), import_inventory(inv, "ansible")
    assert summary(ours.devices) == summary(theirs.devices)
    order = {w.variable: sorted(w.hosts) for w in ours.warnings}
    assert order == {w.variable: sorted(w.hosts) for w in theirs.warnings}


def test_list_json_is_read_by_the_built_in_reader(tmp_path: Path, ansible_env: Path) -> None:
    inv = make_lab(tmp_path / "lab")
    listed = subprocess.run(
        [str(ansible_env), "-i", str(inv), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    json_file = write(tmp_path / "elsewhere" / "inventory.json", listed)
    result = read_builtin(json_file)
    assert summary(result.devices) == EXPECTED
    assert import_inventory(json_file).devices == result.devices  # auto: not Ansible's


def test_vault_encrypted_host_vars(tmp_path: Path) -> None:
    inv = make_lab(tmp_path / "lab")
    password = write(tmp_path / "vault-pass", PASSWORD)
    host_vars = tmp_path / "lab" / "host_vars" / "nano1.yml"
    host_vars.write_text("ansible_host: 10.7.7.7\nansible_user: sealed\n")
    subprocess.run(
        [str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password)]
        + [str(host_vars)],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert host_vars.read_text().startswith("$ANSIBLE_VAULT;")
    devices = {d.name: d for d in import_inventory(inv, "ansible", password).devices}
    assert (devices["nano1"].host, devices["nano1"].user) == ("10.7.7.7", "sealed")
    with pytest.raises(FleetError) as no_password:
        import_inventory(inv, "ansible")
    assert "vault" in no_password.value.message.lower()
    assert "--vault-password-file" in no_password.value.hint
    with pytest.raises(FleetError) as builtin:
        import_inventory(inv, "built-in")
    assert str(host_vars) in builtin.value.message and "vault" in builtin.value.message
    assert "ansible-core" in builtin.value.hint and "--vault-password-file" in builtin.value.hint


def test_inline_vault_value_is_a_warning_for_the_built_in_reader(tmp_path: Path) -> None:
    inv = make_lab(tmp_path / "lab")
    password = write(tmp_path / "vault-pass", PASSWORD)
    sealed = subprocess.run(
        [str(VENV_BIN / "ansible-vault"), "encrypt_string", "--vault-password-file"]
        + [str(password), "s3cret", "--name", "ansible_become_password"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    write(tmp_path / "lab" / "group_vars" / "orins" / "30-secret.yml", sealed)
    for reader in ("built-in", "ansible"):
        result = import_inventory(inv, reader, password if reader == "ansible" else None)
        assert summary(result.devices) == EXPECTED, reader
        sealed_warnings = [w for w in result.warnings if w.variable == "ansible_become_password"]
        assert [sorted(w.hosts) for w in sealed_warnings] == [["orin1", "orin2"]], reader
        assert "vault-encrypted" in sealed_warnings[0].message, reader


def test_plugin_inventory(tmp_path: Path) -> None:
    plugin = write(
        tmp_path / "lab" / "generated.yml",
        "plugin: ansible.builtin.generator\n"
        "hosts:\n"
        '  name: "{{ site }}-nano{{ n }}"\n'
        "  parents:\n"
        '    - name: "{{ site }}"\n'
        "      vars:\n"
        '        ansible_user: "{{ site }}-ops"\n'
        "    - name: jetsons\n"
        "layers:\n"
        "  site: [lab, prod]\n"
        '  n: ["1", "2"]\n',
    )
    got = summary(import_inventory(plugin).devices)
    assert sorted(got) == ["lab-nano1", "lab-nano2", "prod-nano1", "prod-nano2"]
    assert got["prod-nano2"]["user"] == "prod-ops"
    assert got["prod-nano2"]["tags"] == ["jetsons", "prod"]
    with pytest.raises(FleetError) as builtin:
        import_inventory(plugin, "built-in")
    assert "ansible.builtin.generator" in builtin.value.message
    assert "ansible-core" in builtin.value.hint


def edge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=180)


def test_cli_import_prints_and_returns_warnings(tmp_path: Path) -> None:
    inv = make_lab(tmp_path / "lab")
    env = dict(os.environ, EDGE_FLEET=str(tmp_path / "fleet.yaml"))
    proc = edge("fleet", "import", str(inv), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["reader"] == "ansible-inventory" and sorted(data["added"]) == sorted(EXPECTED)
    become = [w for w in data["warnings"] if w["variable"] == "ansible_become"]
    assert [sorted(w["hosts"]) for w in become] == [sorted(EXPECTED)]
    assert all(w["message"] for w in data["warnings"])
    stored = summary(Inventory.load(tmp_path / "fleet.yaml").devices())
    assert stored == EXPECTED  # the jumps too, through fleet.yaml
    proc = edge("fleet", "import", str(inv), "--replace", "--reader", "built-in", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "4 added, 0 skipped" in proc.stdout
    lines = proc.stderr.splitlines()
    assert any(ln.startswith("warning: ansible_become: ") and "nano1" in ln for ln in lines)
    assert any(ln.startswith("warning: ansible_ssh_common_args: ") for ln in lines), lines
    proc = edge("fleet", "ls", "--json", env=env)
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["orin1"]["jump"] == "ops@gw2:2200" and rows["nano1"]["jump"] is None


def test_imported_proxyjump_connects_through_the_bastion(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ansible_ssh_common_args='-o ProxyJump=bastion'` on a host only the bastion can
    reach: imported, stored, loaded, and a real SSH command runs on it."""
    dj = ssh_env["dj"]
    inv = write(
        tmp_path / "hosts.ini",
        "[lab]\n"
        f"behind ansible_host={dj.host} ansible_port={dj.port} ansible_user={dj.user} "
        f"ansible_ssh_private_key_file={ssh_env.client_key_path} "
        "ansible_ssh_common_args='-o ProxyJump=bastion'\n",
    )
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    fleet = Inventory.load()
    fleet.import_devices(import_inventory(inv, "ansible").devices)
    fleet.save()
    device = Inventory.load().get("behind")
    assert device_to_dict(device)["jump"] == "bastion"
    ep = device.endpoint()
    assert (ep.hostname, ep.port, ep.proxy_jump) == (dj.host, dj.port, ["bastion"])
    with SSHTransport(device.name, ep, ssh_env.known_hosts_path) as transport:
        assert transport.run(["echo", "jumped"], timeout=30).stdout == "jumped\n"


def test_without_ansible_auto_is_the_built_in_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An environment with no ansible-inventory (none beside this Python, none on PATH)."""
    inv = make_lab(tmp_path / "lab")
    empty = tmp_path / "no-ansible"
    empty.mkdir()
    monkeypatch.setattr(sys, "executable", str(empty / "python3"))
    monkeypatch.setenv("PATH", str(empty))
    assert ansible_inventory_command() is None
    result = import_inventory(inv)
    assert result.reader == "built-in" and summary(result.devices) == EXPECTED
    with pytest.raises(FleetError) as no_ansible:
        import_inventory(inv, "ansible")
    assert "not installed" in no_ansible.value.message and "ansible-core" in no_ansible.value.hint
    (tmp_path / "lab" / "group_vars" / "nanos.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n0a0b\n")
    with pytest.raises(FleetError, match="vault-encrypted") as sealed:
        import_inventory(inv)
    assert "ansible-core" in sealed.value.hint
