"""The system's components never import `batch`; only the CLI and the demo, which drive both."""

import ast
from pathlib import Path

import streaming

SOURCE = Path(streaming.__file__).parent
DEMO = SOURCE / "demo"
ALLOWED = {SOURCE / "cli.py", *DEMO.rglob("*.py")}


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def _imports_batch(path: Path) -> bool:
    return any(name == "batch" or name.startswith("batch.") for name in _imported_modules(path))


def test_the_exceptions_name_the_cli_module_and_the_demo_package() -> None:
    assert (SOURCE / "cli.py").is_file()
    assert (DEMO / "__init__.py").is_file()


def test_no_component_imports_batch() -> None:
    components = sorted(set(SOURCE.rglob("*.py")) - ALLOWED)
    assert len(components) > 20  # the walk found the package
    offenders = [
        str(path.relative_to(SOURCE.parent)) for path in components if _imports_batch(path)
    ]
    assert offenders == [], f"components that import batch: {offenders}"


def test_the_check_sees_imports_anywhere_in_a_module(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("def run():\n    from batch.commands import run_batch\n")
    assert _imports_batch(module)
    module.write_text("import batch\n")
    assert _imports_batch(module)
    module.write_text("from streaming import batching\nimport batchelor\n")
    assert not _imports_batch(module)
