"""The two renderers of a `Report` (model.reports.blocks): PDF with fpdf2, embedding matplotlib's bundled DejaVu
Sans so any printable name renders, and a self-contained HTML file (figures as data URIs, every text escaped, a
content-security policy that forbids loading anything). Text from a file or a record is shown literally: never
read as Markdown or HTML, control characters (a NUL included) and characters the font cannot draw written as
[U+XXXX]. `render(report, fmt)` is the entry point.
"""
from __future__ import annotations

import base64
import html
import io
from functools import lru_cache
from pathlib import Path

import matplotlib
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from PIL import Image

from model.reports.blocks import (FOOTER, Bars, Beside, Bullets, Figures, Heading, KeyValues, Lead, Notice,
                                  Paragraph, Report, Table, literal)

FORMATS = ("pdf", "html")
FIGURE_GAP = 5.0  # mm between figures side by side


def render(report: Report, fmt: str = "pdf") -> bytes:
    """The report as PDF or HTML bytes; ValueError for another format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return _render_pdf(report) if fmt == "pdf" else _render_html(report)


# ====================================================================== PDF (fpdf2)
@lru_cache(maxsize=1)
def _font_files() -> dict[str, Path]:
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {"": ttf / "DejaVuSans.ttf", "B": ttf / "DejaVuSans-Bold.ttf"}


@lru_cache(maxsize=1)
def _drawable() -> frozenset[int]:
    """Code points DejaVu Sans has glyphs for."""
    return frozenset(TTFont(_font_files()[""])["cmap"].getBestCmap())


def pdf_text(text) -> str:
    """`literal` text, with characters the embedded font cannot draw (CJK, emoji, ...) as [U+XXXX]."""
    drawable = _drawable()
    return "".join(ch if ord(ch) in drawable or ch == "\n" else f"[U+{ord(ch):04X}]" for ch in literal(text))


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


class _PdfWriter:
    """Draws blocks onto an A4 fpdf2 document, one method per kind of block. Every text goes through `pdf_text`."""

    def __init__(self, title: str):
        class PDF(FPDF):
            def footer(self):
                self.set_y(-11)
                self.set_font("DejaVu", "", 7)
                self.set_text_color(110)
                self.cell(0, 4, f"{FOOTER} · page {self.page_no()} of {{nb}}", align="C")
                self.set_text_color(0)

        self.pdf = pdf = PDF(format="A4", unit="mm")
        for style, path in _font_files().items():
            pdf.add_font("DejaVu", style, str(path))
        pdf.set_margins(15, 14, 15)
        pdf.set_auto_page_break(True, margin=16)
        pdf.set_title(pdf_text(title))
        pdf.set_creator("Alzheimer MRI staging research dashboard (model.reports.documents)")
        pdf.add_page()
        self.text(title, 15, "B", 7)
        pdf.ln(1.5)

    def text(self, body: str, size: float = 9, style: str = "", h: float = 4.6, **kw) -> None:
        self.pdf.set_font("DejaVu", style, size)
        self.pdf.multi_cell(kw.pop("w", 0), h, pdf_text(body), new_x=XPos.LMARGIN, new_y=YPos.NEXT,
                            align=kw.pop("align", "L"), **kw)

    def room(self, needed: float) -> None:
        if self.pdf.get_y() + needed > self.pdf.page_break_trigger:
            self.pdf.add_page()

    def draw(self, block, following=None) -> None:
        """Draw one block; `following` is the block after it (a heading keeps with it)."""
        method = getattr(self, f"_{type(block).__name__.lower()}")
        method(block, following) if isinstance(block, Heading) else method(block)

    def _heading(self, block: Heading, following=None) -> None:
        # never a heading alone at the foot of a page: keep it with the start of what follows
        self.room(12 + (self._figures_size(following)[1] + 8 if isinstance(following, Figures) else 12))
        self.pdf.ln(1.5)
        self.text(block.text, 11.5, "B", 6)

    def _paragraph(self, block: Paragraph) -> None:
        self.text(block.text, 7.5 if block.small else 9, h=3.8 if block.small else 4.6)
        self.pdf.ln(1)

    def _lead(self, block: Lead) -> None:
        self.text(block.text, 13, "B", 6.5)

    def _notice(self, block: Notice) -> None:
        pdf = self.pdf
        pdf.set_fill_color(253, 236, 234)
        pdf.set_draw_color(200, 60, 50)
        self.text(block.text, 9, "B", 5, border=1, fill=True, padding=1.5)
        pdf.set_draw_color(0)
        pdf.set_fill_color(255)
        pdf.ln(2)

    def _bullets(self, block: Bullets) -> None:
        pdf = self.pdf
        for item in block.items:  # a hanging indent: the bullet, then the item in a column of its own
            pdf.set_font("DejaVu", "", 8.5)
            pdf.set_x(pdf.l_margin + 1.5)
            pdf.cell(3.5, 4.2, "•")
            pdf.multi_cell(pdf.epw - 5, 4.2, pdf_text(item), align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def _table(self, block) -> None:
        pdf = self.pdf
        header = block.header if isinstance(block, Table) else None
        pdf.set_font("DejaVu", "", 7.5)
        with pdf.table(col_widths=block.widths if header else (1.15, 3.5), first_row_as_headings=header is not None,
                       line_height=3.6, text_align="LEFT", padding=(0.8, 1.2), width=pdf.epw,
                       cell_fill_color=(246, 248, 250), cell_fill_mode="ROWS",
                       headings_style=FontFace(emphasis="BOLD", fill_color=(228, 235, 242)),
                       borders_layout="HORIZONTAL_LINES" if header else "NONE") as table:
            if header:
                table.row([pdf_text(c) for c in header])
            for row in block.rows:
                cells = table.row()
                for i, cell in enumerate(row):
                    cells.cell(pdf_text(cell), style=FontFace(emphasis="BOLD") if header is None and i == 0 else None)
        pdf.ln(2)

    _keyvalues = _table

    def _figures_size(self, block: Figures) -> tuple[float, float]:
        """(width of each figure, height of the row) in mm, captions left out."""
        n = len(block.items)
        w = (self.pdf.epw * block.width - FIGURE_GAP * (n - 1)) / n
        return w, max(w * hh / ww for ww, hh in (Image.open(io.BytesIO(png)).size for png, _ in block.items))

    def _figures(self, block: Figures) -> float:
        """Draws the row of figures with their captions; returns the row's top."""
        pdf, gap = self.pdf, FIGURE_GAP
        total = pdf.epw * block.width
        (w, h), sizes = self._figures_size(block), [Image.open(io.BytesIO(png)).size for png, _ in block.items]
        self.room(h + 10)
        x0 = pdf.l_margin + (0 if block.left else (pdf.epw - total) / 2)
        y0 = bottom = pdf.get_y()
        for k, ((png, caption), (ww, hh)) in enumerate(zip(block.items, sizes)):
            x = x0 + k * (w + gap)
            pdf.image(io.BytesIO(png), x=x, y=y0, w=w, h=w * hh / ww)
            pdf.set_xy(x, y0 + h + 1)
            pdf.set_font("DejaVu", "", 7.5)
            pdf.multi_cell(w, 3.6, pdf_text(caption), align="C")
            bottom = max(bottom, pdf.get_y())
        pdf.set_xy(pdf.l_margin, bottom + 2)
        return y0

    def _bars(self, block: Bars) -> None:
        pdf, h = self.pdf, 5.2
        label_w, value_w = min(40.0, pdf.epw * 0.42), 15.0
        bar_w = min(90.0, pdf.epw - label_w - value_w - 4)
        for label, value, color in block.items:
            y = pdf.get_y()
            pdf.set_font("DejaVu", "", 8.5)
            pdf.cell(label_w, h, pdf_text(label))
            pdf.cell(value_w, h, f"{value:.1%}", align="R")
            x = pdf.get_x() + 3
            pdf.set_draw_color(200)
            pdf.rect(x, y + 1, bar_w, h - 2)
            pdf.set_fill_color(*_hex(color))
            if value > 0:
                pdf.rect(x, y + 1, bar_w * min(1.0, value), h - 2, style="F")
            pdf.set_draw_color(0)
            pdf.set_fill_color(255)
            pdf.set_xy(pdf.l_margin, y + h)
        pdf.ln(2)

    def _beside(self, block: Beside) -> None:
        """Figures on the left, other blocks in the column to their right; then on below both."""
        pdf = self.pdf
        margin, column = pdf.l_margin, pdf.l_margin + pdf.epw * block.left.width + 6
        top = self._figures(block.left)  # moves to a new page first when the figures do not fit
        below = pdf.get_y()
        pdf.set_left_margin(column)
        pdf.set_xy(column, top)
        for item in block.right:
            self.draw(item)
        pdf.set_left_margin(margin)
        pdf.set_xy(margin, max(below, pdf.get_y()))

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def _render_pdf(report: Report) -> bytes:
    writer = _PdfWriter(report.title)
    for block, following in zip(report.blocks, [*report.blocks[1:], None]):
        writer.draw(block, following)
    return writer.output()


# ====================================================================== HTML (self-contained)
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
.notice{border:1px solid #c83c32;background:#fdeceb;padding:.6rem .8rem;font-weight:600}
.small{font-size:.85em;color:#555}.lead{font-size:1.25rem;font-weight:700;margin:.3rem 0}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9em}
th,td{text-align:left;padding:.25rem .6rem;border-bottom:1px solid #e2e2e2;vertical-align:top;white-space:pre-line}
th{background:#ebf0f5}table.kv td:first-child{font-weight:600;white-space:nowrap}table.kv td:last-child{overflow-wrap:anywhere}
.figures{display:flex;gap:1rem;flex-wrap:wrap;justify-content:center;margin:0 auto}
figure{margin:.5rem 0;flex:1 1 0;min-width:16rem;text-align:center}figure img{max-width:100%}
figcaption{font-size:.85em;color:#555}
.bar{display:inline-block;height:.8em;background:#eee;width:14rem;vertical-align:middle}
.bar span{display:block;height:100%}
"""


def _esc(text) -> str:
    """The one rule for every text in an HTML report: `literal`, then escaped."""
    return html.escape(literal(text))


def _html_block(block) -> str:
    if isinstance(block, Heading):
        return f"<h2>{_esc(block.text)}</h2>"
    if isinstance(block, (Paragraph, Notice, Lead)):
        kind = "notice" if isinstance(block, Notice) else "lead" if isinstance(block, Lead) else \
            "small" if block.small else "text"
        return f'<p class="{kind}">{_esc(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return ("<table><thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in block.header) + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in block.rows)
                + "</tbody></table>")
    if isinstance(block, KeyValues):
        return ('<table class="kv"><tbody>' + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>"
                                                      for k, v in block.rows) + "</tbody></table>")
    if isinstance(block, Figures):
        return (f'<div class="figures" style="max-width:{100 * block.width:.0f}%">' + "".join(
            f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>" for png, caption in block.items) + "</div>")
    if isinstance(block, Bars):
        return ("<table><tbody>" + "".join(
            f'<tr><td>{_esc(label)}</td><td>{value:.1%}</td><td><span class="bar"><span style="width:'
            f'{100 * min(1.0, value):.1f}%;background:{color}"></span></span></td></tr>'
            for label, value, color in block.items) + "</tbody></table>")
    if isinstance(block, Beside):
        return "\n".join(_html_block(b) for b in (block.left, *block.right))
    raise TypeError(f"no HTML for {type(block).__name__}")


def _render_html(report: Report) -> bytes:
    head = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
            # nothing in the file may load or run anything, even if a text slipped through unescaped
            ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
             "style-src 'unsafe-inline'\">"),
            f"<title>{_esc(report.title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{_esc(report.title)}</h1>"]
    body = [_html_block(b) for b in report.blocks]
    return "\n".join([*head, *body, f'<p class="small">{_esc(FOOTER)}</p></body></html>']).encode("utf-8")
