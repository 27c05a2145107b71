"""A report as a list of blocks, rendered to Markdown (figures linked) and to one self-contained HTML
file (figures embedded), so a reader can open the HTML alone."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.tables import html_table, markdown


@dataclass
class Table:
    """A table block: the frame shown, its caption and where its files are."""

    frame: pd.DataFrame
    caption: str
    files: str = ""  # where the CSV, Markdown and LaTeX versions are, relative to the report


@dataclass
class Figure:
    """A figure block: the PNG to link or embed and its caption."""

    path: Path  # the PNG; a PDF sits beside it
    caption: str


Block = str | Table | Figure


@dataclass
class Section:
    """A titled part of the report and its blocks, in order."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        """Append blocks; returns the section so calls chain."""
        self.blocks.extend(blocks)
        return self


@dataclass
class Report:
    """The whole report: a title and its sections, rendered by ``markdown`` and ``html``."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        """Start a new section at the end of the report and return it for blocks to be added."""
        self.sections.append(Section(title))
        return self.sections[-1]

    def markdown(self, base: Path) -> str:
        """Markdown with figure links relative to ``base`` (the report's folder)."""
        lines = [f"# {self.title}", ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                if isinstance(block, Table):
                    lines += [f"*{block.caption}*" + (f" ({block.files})" if block.files else ""), "",
                              markdown(block.frame)]
                elif isinstance(block, Figure):
                    rel = block.path.relative_to(base).as_posix()
                    pdf = Path(rel).with_suffix(".pdf").as_posix()
                    lines += [f"![{block.caption}]({rel})", "", f"*{block.caption}* ([PDF]({pdf}))", ""]
                else:
                    lines += [block, ""]
        return "\n".join(lines)

    def html(self) -> str:
        """One HTML file with styles inline and every figure embedded as a PNG data URI."""
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for section in self.sections:
            body.append(f"<h2>{html.escape(section.title)}</h2>")
            for block in section.blocks:
                if isinstance(block, Table):
                    body.append(f"<p class='caption'>{_inline(block.caption)}</p>{html_table(block.frame)}")
                elif isinstance(block, Figure):
                    data = base64.b64encode(block.path.read_bytes()).decode()
                    body.append(f"<figure><img alt='{html.escape(block.caption)}' src='data:image/png;base64,"
                                f"{data}'><figcaption>{_inline(block.caption)}</figcaption></figure>")
                else:
                    body.append(_paragraph(block))
        return HTML_PAGE.format(title=html.escape(self.title), body="\n".join(body))


def _inline(text: str) -> str:
    """Markdown's inline code and emphasis, the only markup the report's sentences use."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def _paragraph(text: str) -> str:
    lines = text.splitlines()
    if lines and all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"
    return f"<p>{_inline(' '.join(lines))}</p>"


HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
thead th {{ border-bottom: 2px solid #444; }}
figure {{ margin: 1em 0 2em; }} img {{ max-width: 100%; }}
figcaption, .caption {{ color: #555; font-style: italic; }}
code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style></head>
<body>
{body}
</body></html>
"""
