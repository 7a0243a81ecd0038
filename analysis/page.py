"""The report's page: HTML and CSS around the figures, plotly.js embedded once.

Each figure is written without its own copy of plotly.js (~4.6 MB); one script tag in the
head serves them all, so the page opens offline and stays a few MB whatever the figure count.
"""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from analysis.figures import STATUS_COLORS
from results_folder.display import format_value

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
# The digit pictures fill their figure to its top edge, where plotly would draw its mode bar
# over the first row of digits. They get none: their hovering is off, and zooming or panning a
# grid of 28x28 digits shows nothing the page does not.
PICTURE_CONFIG = {**PLOT_CONFIG, "displayModeBar": False}
PICTURES = ("outliers", "reconstructions", "prior-samples")  # the image_grid figures
SECTIONS = (
    "test-set",
    "outliers",
    "leaderboard",
    "loss-curves",
    "parallel-coordinates",
    "importance",
    "reconstructions",
    "prior-samples",
    "tsne",
)  # the ids a reader (or test) can find

STYLE = """
body{margin:0;background:#f5f6f8;color:#1d2330;
 font:14px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:22px 28px 60px}
h1{font-size:24px;margin:0 0 2px}
h2{font-size:17px;margin:0 0 2px}
h3{font-size:14px;margin:4px 0 6px;color:#3a4252}
.meta,.note{color:#5b6475;font-size:13px;margin:0 0 10px}
code{font-size:12px;background:#eef0f3;padding:1px 4px;border-radius:3px;word-break:break-all}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(165px,1fr));gap:12px;
 margin:16px 0}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:10px 14px}
.card .k{color:#5b6475;font-size:11px;text-transform:uppercase;letter-spacing:.05em}
.card .v{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .s{color:#5b6475;font-size:12px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:16px 20px;
 margin:16px 0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:4px 12px;text-align:right;border-bottom:1px solid #eef0f3;white-space:nowrap}
th{background:#fafbfc;position:sticky;top:0;font-weight:600}
th.l,td.l{text-align:left}
tr.best td{background:#eaf6ea;font-weight:600}
.scroll{max-height:440px;overflow:auto;border:1px solid #eef0f3;border-radius:6px}
.scroll table{width:100%}
.badge{display:inline-block;padding:0 8px;border-radius:9px;font-size:12px;color:#fff}
.two{display:grid;grid-template-columns:1fr 1fr;gap:24px;align-items:start}
@media (max-width:900px){.two{grid-template-columns:1fr}}
"""


def render_page(
    *,
    title: str,
    meta: list[str],
    cards: list[tuple[str, str, str]],
    best_table: list,
    test_table: list,
    outlier_table: list[tuple[int, int, str]],
    leaderboard: pd.DataFrame,
    best_id: str,
    figures: dict[str, go.Figure | None],
    notes: dict[str, str],
) -> str:
    """The page's HTML. `figures` maps section ids to figures (None: the section says why);
    `outlier_table` holds (test index, digit, negative ELBO) of the listed outlier images."""
    test_set = (
        '<div class="two"><div><h3>Configuration</h3>'
        + _kv(best_table)
        + "</div><div><h3>Test set</h3>"
        + _kv(test_table)
        + "</div></div>"
    )
    board = '<div class="scroll">' + _leaderboard(leaderboard, best_id) + "</div>"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        *[f'<p class="meta">{line}</p>' for line in meta],
        '<div class="cards">' + "".join(_card(*c) for c in cards) + "</div>",
        _section("test-set", "Best trial and its test-set numbers", notes, test_set),
        _section(
            "outliers",
            "Test images beyond the outlier fence",
            notes,
            _outliers(figures.get("outliers"), outlier_table),
        ),
        _section("leaderboard", "Leaderboard", notes, board),
        *[
            _section(sid, heading, notes, _figure(figures.get(sid), sid))
            for sid, heading in (
                ("loss-curves", "Validation loss per epoch"),
                ("parallel-coordinates", "Hyperparameters against the best metric"),
                ("importance", "Hyperparameter importance"),
            )
        ],
        _drawings(figures, notes),
        _section(
            "tsne",
            "t-SNE map of the test-set latent means",
            notes,
            _figure(figures.get("tsne"), "tsne"),
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        "<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};"
        f'</script><script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _outliers(fig: go.Figure | None, table: list[tuple[int, int, str]]) -> str:
    """The outlier images' figure beside their table; nothing when there are none (the note
    says so)."""
    if not table:
        return ""
    return (
        f'<div class="two"><div>{_figure(fig, "outliers")}</div>'
        '<div class="scroll"><table><thead><tr><th>test index</th><th>digit</th>'
        "<th>negative ELBO</th></tr></thead><tbody>"
        + "".join(
            f"<tr><td>{index}</td><td>{digit}</td><td>{html.escape(value)}</td></tr>"
            for index, digit, value in table
        )
        + "</tbody></table></div></div>"
    )


def _drawings(figures: dict[str, go.Figure | None], notes: dict[str, str]) -> str:
    """Reconstructions and prior samples side by side, in one section."""
    pair = "".join(
        f'<div id="{sid}"><h3>{heading}</h3><p class="note">'
        f"{html.escape(notes.get(sid, ''))}</p>{_figure(figures.get(sid), sid)}</div>"
        for sid, heading in (
            ("reconstructions", "Reconstructions of test digits"),
            ("prior-samples", "Samples from the prior"),
        )
    )
    return f'<section><h2>What the best model draws</h2><div class="two">{pair}</div></section>'


def _section(sid: str, heading: str, notes: dict[str, str], content: str) -> str:
    note = f'<p class="note">{html.escape(notes[sid])}</p>' if notes.get(sid) else ""
    return f'<section id="{sid}"><h2>{html.escape(heading)}</h2>{note}{content}</section>'


def _figure(fig: go.Figure | None, sid: str) -> str:
    if fig is None:
        return '<p class="note"><em>Not available for this sweep (see above).</em></p>'
    config = PICTURE_CONFIG if sid in PICTURES else PLOT_CONFIG
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{sid}", config=config)


def _card(key: str, value: str, sub: str) -> str:
    return (
        f'<div class="card"><div class="k">{html.escape(key)}</div>'
        f'<div class="v">{html.escape(value)}</div><div class="s">{html.escape(sub)}</div>'
        "</div>"
    )


def _kv(rows: list[tuple[str, object]]) -> str:
    cells = "".join(
        f'<tr><td class="l">{html.escape(k)}</td><td class="l">{_cell(v)}</td></tr>'
        for k, v in rows
    )
    return f"<table>{cells}</table>"


def _leaderboard(table: pd.DataFrame, best_id: str) -> str:
    left = {"trial_id", "status", "device"}
    head = "".join(
        f'<th class="{"l" if c in left else ""}">{html.escape(c)}</th>' for c in table.columns
    )
    rows = []
    for _, row in table.iterrows():
        cells = []
        for c in table.columns:
            value = row[c]
            if c == "status":
                color = STATUS_COLORS.get(value, "#7f7f7f")
                text = (
                    f'<span class="badge" style="background:{color}">'
                    f"{html.escape(str(value).replace('_', ' '))}</span>"
                )
            else:
                text = _cell(value)
            cells.append(f'<td class="{"l" if c in left else ""}">{text}</td>')
        css = ' class="best"' if row["trial_id"] == best_id else ""
        rows.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    return html.escape(format_value(value))
