"""The import contracts in pyproject.toml have teeth: each one breaks when a copy of the
tree gets the import it forbids (lint-imports runs on that copy), and every device_agent
module is either in the shared part or forbidden to the host."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import device_agent

if sys.version_info >= (3, 11):
    import tomllib
else:  # 3.10: tomli comes with mypy (the test extra)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _contracts() -> dict[str, dict[str, Any]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def test_every_device_agent_module_is_shared_or_forbidden_to_the_host() -> None:
    contracts = _contracts()
    shared = set(contracts["shared-part-stdlib-only"]["modules"])
    device_only = set(contracts["host-imports-shared-part"]["forbidden_modules"])
    top = {"device_agent." + m.name for m in pkgutil.iter_modules(device_agent.__path__)}
    assert not shared & device_only
    assert top - {"device_agent"} <= shared | device_only, "classify the new module(s)"
    assert (shared | device_only) - {"device_agent"} <= top, "a listed module is gone"
    doc = device_agent.__doc__ or ""
    for name in sorted(shared - {"device_agent"}):  # the docstring states the shared part
        assert f"`{name.rsplit('.', 1)[1]}`" in doc, name


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what lint-imports reads: both packages, the config, the custom contract."""
    skip = shutil.ignore_patterns("__pycache__")
    for pkg in ("edge", "device_agent"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "tests").mkdir()
    shutil.copy(ROOT / "tests" / "stdlib_contract.py", tmp_path / "tests")
    return tmp_path


def _lint(tree: Path, contract: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--contract", contract],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _inject(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = tree / module.replace(".", "/") / "__init__.py"
    path.write_text(path.read_text() + f"\n\ndef _injected() -> None:\n    {line}\n")


@pytest.mark.parametrize(
    ("contract", "module", "line", "reported"),
    [
        (
            "host-imports-shared-part",
            "edge.core.errors",
            "import device_agent.convert",
            "edge.core.errors -> device_agent.convert",
        ),
        (
            "shared-part-stdlib-only",
            "device_agent.protocol",
            "import numpy",
            "device_agent.protocol imports numpy",
        ),
        (
            "shared-part-stdlib-only",
            "device_agent.errors",
            "import yaml",  # listed nowhere
            "device_agent.errors imports yaml",
        ),
        (
            "shared-part-stdlib-only",
            "device_agent.manifest",
            "from device_agent import calib",
            "device_agent.manifest imports device_agent.calib",
        ),
        (
            "agent-never-imports-host",
            "device_agent.jobs",
            "import edge.core.errors",
            "device_agent.jobs -> edge.core.errors",
        ),
        (
            "edge-layers",
            "edge.transport.base",
            "import edge.ops.push",
            "edge.transport.base -> edge.ops.push",
        ),
        (
            "edge-layers",
            "edge.core.errors",
            "import edge.cli.main",
            "edge.core.errors -> edge.cli.main",
        ),
        (
            "edge-layers",
            "edge.ops.convert",
            "import edge.views.tables",
            "edge.ops.convert -> edge.views.tables",
        ),
        (
            "edge-layers",
            "edge.history.store",
            "import edge.recipes.loader",  # one layer, apart
            "edge.history.store -> edge.recipes.loader",
        ),
    ],
)
def test_contract_breaks_on_the_import_it_forbids(
    tree: Path, contract: str, module: str, line: str, reported: str
) -> None:
    before = _lint(tree, contract)
    assert reported not in before.stdout, before.stdout
    _inject(tree, module, line)  # inside a function: lazy imports count too
    after = _lint(tree, contract)
    assert after.returncode != 0, after.stdout + after.stderr
    assert reported in after.stdout, after.stdout + after.stderr
