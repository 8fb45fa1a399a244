"""One self-contained HTML report from sections (Jinja2 templates, figures inline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

__all__ = ["Section", "render_report"]


@dataclass
class Section:
    """One report section: a template block plus its data and inline figures.

    Attributes:
        key: identifier, also the template name ``sections/<key>.html.j2``.
        title: heading.
        data: numbers for the template and the JSON results.
        figures: name -> ``data:`` URI.
        seconds: time spent computing the section.
    """

    key: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("advlab.reporting", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _pct(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def render_report(title: str, sections: list[Section], meta: dict[str, Any]) -> str:
    """Render the report to an HTML string."""
    env = _env()
    env.filters["pct"] = _pct
    return env.get_template("report.html.j2").render(title=title, sections=sections, meta=meta)
