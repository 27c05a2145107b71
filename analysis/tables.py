"""Tables as CSV (every number), Markdown and LaTeX booktabs (numbers formatted for reading)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from study.store.format import write_text

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}

LATEX_SYMBOLS = {"-∞": r"$-\infty$", "∞": r"$\infty$", "<": r"$<$", ">": r"$>$", "–": "--"}


def number(value: object, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; integers as integers; NaN as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 10 ** digits:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def pvalue(p: float) -> str:
    """A p-value for reading: three decimals, ``<0.001`` below that, an en dash when missing."""
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def with_interval(est: float, lo: float, hi: float, digits: int = 3) -> str:
    """An estimate followed by its interval in brackets, each number formatted for reading."""
    return f"{number(est, digits)} [{number(lo, digits)}, {number(hi, digits)}]"


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of the frame's cells as text."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(number(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def latex(frame: pd.DataFrame, caption: str = "") -> str:
    """A booktabs ``tabular`` (numbers right-aligned, text left-aligned) with special characters escaped."""
    def esc(text: object) -> str:
        escaped = "".join(LATEX_SPECIAL.get(ch, ch) for ch in number(text))
        for plain, tex in LATEX_SYMBOLS.items():  # what pdflatex cannot typeset as text
            escaped = escaped.replace(plain, tex)
        return escaped

    align = "".join("r" if pd.api.types.is_numeric_dtype(frame[c]) else "l" for c in frame.columns)
    lines = []
    if caption:
        lines.append(f"% {caption}")
    lines += [f"\\begin{{tabular}}{{{align}}}", "\\toprule", " & ".join(esc(c) for c in frame.columns) + r" \\",
              "\\midrule"]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(esc(v) for v in row) + r" \\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def html_table(frame: pd.DataFrame) -> str:
    """An HTML table of the frame's cells as text (numbers formatted, everything escaped)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(number(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_table(folder: Path, name: str, data: pd.DataFrame, display: pd.DataFrame | None = None,
                caption: str = "") -> list[Path]:
    """``name.csv`` with every number, ``name.md`` and ``name.tex`` from the display frame."""
    display = data if display is None else display
    paths = [folder / f"{name}.csv", folder / f"{name}.md", folder / f"{name}.tex"]
    write_text(paths[0], data.to_csv(index=False))
    write_text(paths[1], markdown(display))
    write_text(paths[2], latex(display, caption))
    return paths
