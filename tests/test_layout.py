"""The house rules of the code base, as a newcomer reads them (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "api"
ROOMS = ("resources", "http", "server", "cli")
MAX_LINES = 400


def test_architecture_names_only_files_that_exist() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`((?:api|ledger|projections|tests|bench)/[\w/]*\.\w+)`", text))
    rows = re.findall(r"\| `(\w+/(?:\w+/)?)` \| ([^|]+)\|", text)
    short = {(folder, name) for folder, names in rows
             for name in re.findall(r"`([\w.]+\.py)`", names)}
    assert named, "ARCHITECTURE.md names no file"
    missing = [path for path in named if not (ROOT / path).exists()]
    missing += [folder + name for folder, name in short if not (ROOT / folder / name).exists()]
    assert missing == []


def test_api_is_in_rooms_of_one_kind() -> None:
    loose = sorted(path.name for path in API.glob("*.py")
                   if path.name not in ("__init__.py", "app.py"))
    assert loose == []
    assert sorted(path.name for path in API.iterdir() if path.is_dir()
                  and not path.name.startswith("__")) == sorted(
        room for room in ROOMS if (API / room).is_dir())


def test_no_api_module_is_over_400_lines() -> None:
    long = {str(path.relative_to(ROOT)): lines for path in API.rglob("*.py")
            if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_domain_imports_neither_falcon_nor_sqlalchemy() -> None:
    for path in (ROOT / "ledger").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] if isinstance(
                    node, ast.Import) else [node.module or ""]
                assert not any(name.split(".")[0] in ("falcon", "sqlalchemy", "api",
                                                      "projections") for name in names), path
