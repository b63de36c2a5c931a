"""An import-linter contract type: the listed modules import only the standard library
and each other (`make lint` checks device_agent's shared part with it; see pyproject.toml).

A forbidden contract can only name what may not be imported; this one names what may be,
so a new third-party import (numpy, yaml, ...) in a shared module fails without anyone
having listed it. Function-level imports count too: the host imports these modules and
must not pull in anything its own environment lacks.
"""

from __future__ import annotations

import sys
from typing import Any, cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class StdlibOnlyContract(Contract):
    """Options: `modules`, the module names (not packages: a package's submodules are
    not included), and an optional `broken_contract_guidance`."""

    type_name = "stdlib_only"

    modules = fields.ListField(subfield=fields.StringField())
    broken_contract_guidance = fields.TextField(required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        allowed = set(cast("list[str]", self.modules))  # the class's Field, parsed on init
        missing = sorted(m for m in allowed if m not in graph.modules)
        if missing:
            raise ValueError(f"stdlib_only: no module {', '.join(missing)} in the graph")
        roots = {m.split(".")[0] for m in allowed}
        bad: list[dict[str, Any]] = []
        for importer in sorted(allowed):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                top = imported.split(".")[0]
                ok = imported in allowed if top in roots else top in sys.stdlib_module_names
                if ok:
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                lines = sorted({d["line_number"] for d in details})
                bad.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not bad, metadata={"bad": bad})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["bad"]:
            where = ", ".join(f"l.{n}" for n in item["lines"])
            output.print_error(
                f"{item['importer']} imports {item['imported']} ({where}): "
                "neither the standard library nor one of these modules"
            )
            output.new_line()
        if self.broken_contract_guidance:
            output.print(str(self.broken_contract_guidance))
