"""The README's tables of settings and components, generated from the one source
validation reads (the spec's own settings and the registered components):
`python -m jaxgd.front.docs` rewrites them in README.md; a test checks the committed README
equals the generated text."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from jaxgd.science import registry
from jaxgd.sweep import spec

SECTIONS = ("settings", "components")
NOTES = {  # what a component's declared properties mean for a user
    "labels_pm1": "needs or gives +-1 labels",
    "teacher_direction": "teacher is one direction w*",
    "one_dimensional": "needs data.d = 1",
    "fresh_samples": "draws fresh samples",
    "at_ntk_steps": "at measure.ntk_steps only",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for row in spec.settings_table(builtin_only=True):
        if row["kind"] != "component":
            allowed = f" ({row['allowed']})" if row["allowed"] else ""
            lines.append(f"| `{row['key']}` | {row['type']}, {row['kind']} | {spec.written(row['default'])} | "
                         f"{_cell(row['doc'] + allowed)} |")
    return "\n".join(lines)


def _notes(component: registry.Component) -> str:
    flags = [text for name, text in NOTES.items() if component.properties.get(name)]
    if component.kind == "activation":
        lipschitz = component.declared("lipschitz")
        flags.append("Lip = " + ("inf" if lipschitz is None else "depends on its settings" if callable(lipschitz)
                                 else f"{lipschitz:.4g}"))
    return f" ({'; '.join(flags)})" if flags else ""


def components_markdown() -> str:
    lines = ["| kind | name | settings | what |", "|---|---|---|---|"]
    for kind in registry.KINDS:
        for name in registry.names(kind):
            component = registry.get(kind, name)
            if not component.builtin:
                continue
            settings = ", ".join(f"`{s.key}`" for s in component.settings) or "none"
            lines.append(f"| {kind} | `{name}` | {settings} | {_cell(component.doc + _notes(component))} |")
    return "\n".join(lines)


def generated() -> dict[str, str]:
    return {"settings": settings_markdown(), "components": components_markdown()}


def _pattern(section: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {section} -->\n)(.*?)(<!-- end generated: {section} -->)", re.S)


def sections_of(readme: str) -> dict[str, str]:
    """The generated sections as committed in `readme`."""
    return {s: m.group(2).rstrip("\n") for s in SECTIONS if (m := _pattern(s).search(readme))}


def rewrite(readme: str) -> str:
    for section, text in generated().items():
        readme = _pattern(section).sub(lambda m: m.group(1) + text + "\n" + m.group(3), readme)
    return readme


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "README.md"
    path.write_text(rewrite(path.read_text()))
    print(f"rewrote the generated tables of {path}")
