"""The one table format every benchmark prints."""

from __future__ import annotations


def render(rows: list[dict[str, object]]) -> str:
    width = max(len(str(r["bench"])) for r in rows)
    lines = [f"{'benchmark':<{width}}  {'value':>12}  {'unit':<9} target", "-" * (width + 40)]
    for r in rows:
        value = r["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        lines.append(f"{r['bench']!s:<{width}}  {shown:>12}  {r['unit']!s:<9} {r['target']}")
    return "\n".join(lines)
