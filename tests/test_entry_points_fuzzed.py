"""docs/ARCHITECTURE.md rule: a new entry point (a CLI subcommand or a node id) joins the fuzz
suite in the same change. Static (no server, no subprocess): every subcommand of
``emo_core.cli.main.COMMANDS`` is run by a case of the CLI fuzz modules, and every ``node_id`` the
pack defines has hostile cases listed in ``NODE_FUZZ_CASES`` that exist in the node fuzz modules.
"""

from __future__ import annotations

import re
from pathlib import Path

from emo_core.cli.main import COMMANDS

REPO = Path(__file__).resolve().parents[1]
# Every CLI fuzz module: the shared rounds and each converter's own (convert-hallo, convert-echomimic).
CLI_FUZZ = tuple(sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_fuzz_*.py")
                        if "nodes" not in p.name))


def _pack_node_ids() -> set[str]:
    ids = set()
    for path in (REPO / "nodes").glob("*.py"):
        ids.update(re.findall(r'node_id="([^"]+)"', path.read_text(encoding="utf-8")))
    return ids


def test_every_cli_subcommand_has_fuzz_cases():
    text = "".join((REPO / name).read_text(encoding="utf-8") for name in CLI_FUZZ)
    # a case's argv starts with the command: ["demo", ...] / ["convert-hallo", ...]
    missing = [c for c in COMMANDS if not re.search(rf'\[\s*"{re.escape(c)}"', text)]
    assert not missing, f"add fuzz cases for {missing} to tests/test_fuzz_cli_round2.py"


def test_every_node_id_has_fuzz_cases():
    from tests import test_fuzz_nodes, test_fuzz_nodes_round2

    ids = _pack_node_ids()
    assert len(ids) >= 7
    cases = set(test_fuzz_nodes.CASES) | set(test_fuzz_nodes_round2.CASES)
    listed = test_fuzz_nodes_round2.NODE_FUZZ_CASES
    assert ids <= set(listed), f"add hostile cases for {ids - set(listed)}"
    for node_id, keys in listed.items():
        assert keys and set(keys) <= cases, (node_id, set(keys) - cases)
