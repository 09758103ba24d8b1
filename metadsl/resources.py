"""Where the grammar and the standard library live: inside the wheel, or the checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`grammar` or `stdlib`: the wheel ships them as metadsl/_data/NAME (force-include);
    an editable install reads them from the repository root."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name


def grammar_path() -> Path:
    return data_dir("grammar") / "metadsl.lark"


def stdlib_dir() -> Path:
    return data_dir("stdlib")


def runtime_modules() -> dict[str, str]:
    """Each runtime module's short name (what generated code and registry bindings call it:
    `rollout`, `families`) → its dotted package (`metadsl.runtime.execution`), read from the
    package's layout, without importing it (torch)."""
    root = _PACKAGE / "runtime"
    return {path.stem: f"metadsl.runtime.{path.parent.name}"
            for path in sorted(root.glob("*/*.py")) if path.stem != "__init__"}
