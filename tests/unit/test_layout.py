"""The architecture the folders promise: pure packages never import mitmproxy (nor the mitmproxy-facing
packages), and `addons/hooks/` holds addon classes only."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PURE = ["addons/core", "addons/pages", "addons/store", "addons/translate", "auth"]
MITM_FACING = ("mitmproxy", "cliproxy.addons.hooks", "cliproxy.addons.mitm")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", PURE)
def test_pure_packages_import_no_mitmproxy(folder):
    for path in sorted((REPO / folder).rglob("*.py")):
        bad = {n for n in imports(path) if n.startswith(MITM_FACING)}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_hooks_folder_holds_addon_classes_only():
    for path in sorted((REPO / "addons" / "hooks").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        addons = [
            n
            for n in tree.body
            if isinstance(n, ast.ClassDef)
            and any(isinstance(s, ast.Assign) and any(getattr(t, "id", "") == "name" for t in s.targets) for s in n.body)
        ]
        assert addons, f"{path.name} defines no addon class (a class with a `name`); pure code belongs in addons/core or addons/translate"


def test_installed_names_are_namespaced():
    import cliproxy.addons.core.routes as routes

    assert routes.__name__ == "cliproxy.addons.core.routes"
