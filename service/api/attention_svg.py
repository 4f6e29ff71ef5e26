"""The attention heatmap as a standalone SVG document: target tokens as rows, source tokens as columns.

A pure function of tokens and weights (stdlib only), mirrored by the web page's own heatmap
(service/static/app.js). Must not import fastapi, onnxruntime or the engine.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from itertools import pairwise
from xml.sax.saxutils import escape

CELL_PX = 30
FONT_PX = 12
CHAR_PX = 7.0  # rough advance of a 12 px sans-serif glyph: margins are sized from it, nothing overlaps
PAD_PX = 10
TITLE_PX = 22
AXIS_TITLE_PX = 18
LEGEND_PX = 34
LABEL_ANGLE_DEG = 45
TARGET_AXIS_TITLE = "target tokens ↓"
MAX_LABEL_CHARS = 24
MIN_VALUE_SHOWN = 0.005  # cells below this print no number, so near-zero rows stay quiet

WORD_START = "\u2581"  # SentencePiece's word-start mark
SPECIAL_TOKENS = frozenset({"</s>", "<s>", "<unk>", "<pad>"})
# ColorBrewer "Blues": white for no attention, so the few strong cells stand out.
PALETTE = (
    (0.0, (247, 251, 255)),
    (0.25, (198, 219, 239)),
    (0.5, (107, 174, 214)),
    (0.75, (33, 113, 181)),
    (1.0, (8, 48, 107)),
)
# Characters XML 1.0 forbids even when escaped (controls, lone surrogates, U+FFFE/FFFF).
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def token_label(piece: str) -> str:
    """How a piece is shown: word-start pieces without their mark, continuation pieces after a `·`."""
    if piece in SPECIAL_TOKENS:
        return piece
    if piece.startswith(WORD_START):
        return piece[len(WORD_START) :] or "␣"
    return "·" + piece


def weight_colour(weight: float) -> str:
    """`#rrggbb` on the palette for a weight clamped to [0, 1]; NaN counts as 0."""
    value = 0.0 if math.isnan(weight) else min(1.0, max(0.0, weight))
    for (low, low_rgb), (high, high_rgb) in pairwise(PALETTE):
        if value <= high:
            share = (value - low) / (high - low)
            return "#" + "".join(f"{round(a + (b - a) * share):02x}" for a, b in zip(low_rgb, high_rgb, strict=True))
    return "#" + "".join(f"{channel:02x}" for channel in PALETTE[-1][1])


def _xml(text: str) -> str:
    """Escaped for both element text and double-quoted attributes; illegal characters become U+FFFD."""
    return escape(_NOT_XML.sub("\ufffd", text), {'"': "&quot;"})


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _value_text(weight: float) -> str:
    return "1" if weight >= 0.995 else f"{weight:.2f}".lstrip("0")


def render_heatmap_svg(
    source_tokens: Sequence[str], target_tokens: Sequence[str], weights: Sequence[Sequence[float]]
) -> str:
    """A standalone SVG document: one `<rect class="cell">` per (target, source) pair, coloured by weight,
    with the value printed in the cell and in its `<title>` (a tooltip), labelled axes and a colour legend.

    `weights[t][s]` is the attention of target token t on source token s; a shape that does not match
    the tokens is a ValueError. Token text is XML-escaped and may be anything.
    """
    rows, columns = len(target_tokens), len(source_tokens)
    if len(weights) != rows or any(len(row) != columns for row in weights):
        shape = f"{len(weights)}x{sorted({len(row) for row in weights})}"
        raise ValueError(f"weights must be {rows}x{columns} (target x source), got {shape}")
    source_labels = [_short(token_label(token)) for token in source_tokens]
    target_labels = [_short(token_label(token)) for token in target_tokens]

    angle = math.radians(LABEL_ANGLE_DEG)
    longest_source_px = max((len(label) for label in source_labels), default=0) * CHAR_PX
    column_labels_px = longest_source_px * math.sin(angle) + FONT_PX
    overhang_px = longest_source_px * math.cos(angle)  # rotated labels lean right, past the last column
    longest_target = max((len(label) for label in target_labels), default=0)
    # The rows' axis title sits above the row labels, in the corner the leaning column labels leave free.
    row_labels_px = max(longest_target, len(TARGET_AXIS_TITLE)) * CHAR_PX + PAD_PX
    grid_x = PAD_PX + row_labels_px
    grid_y = PAD_PX + TITLE_PX + AXIS_TITLE_PX + column_labels_px
    grid_w, grid_h = columns * CELL_PX, rows * CELL_PX
    width = math.ceil(max(grid_x + grid_w + overhang_px, grid_x + 160) + PAD_PX)
    height = math.ceil(grid_y + grid_h + LEGEND_PX + PAD_PX)

    title = f"Attention weights: {rows} target tokens (rows) x {columns} source tokens (columns)"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="title desc" '
        f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="{FONT_PX}">',
        f'<title id="title">{_xml(title)}</title>',
        '<desc id="desc">Each cell is how much the model attended to a source token (column) while '
        "writing a target token (row); darker is more, each row sums to 1.</desc>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{PAD_PX}" y="{PAD_PX + 14}" font-size="14" font-weight="bold">Attention</text>',
        f'<text class="axis-title" x="{grid_x}" y="{PAD_PX + TITLE_PX + 12}" fill="#444444">source tokens →</text>',
        f'<text class="axis-title" x="{grid_x - 6:.1f}" y="{grid_y - 8:.1f}" fill="#444444" text-anchor="end">'
        f"{TARGET_AXIS_TITLE}</text>",
    ]
    for column, (token, label) in enumerate(zip(source_tokens, source_labels, strict=True)):
        x = grid_x + column * CELL_PX + CELL_PX / 2
        y = grid_y - 6
        parts.append(
            f'<text class="source-label" x="{x:.1f}" y="{y:.1f}" '
            f'transform="rotate(-{LABEL_ANGLE_DEG} {x:.1f} {y:.1f})"><title>{_xml(token)}</title>'
            f"{_xml(label)}</text>"
        )
    for row, (token, label) in enumerate(zip(target_tokens, target_labels, strict=True)):
        y = grid_y + row * CELL_PX
        parts.append(
            f'<text class="target-label" x="{grid_x - 6:.1f}" y="{y + CELL_PX / 2 + FONT_PX * 0.35:.1f}" '
            f'text-anchor="end"><title>{_xml(token)}</title>{_xml(label)}</text>'
        )
        for column, raw in enumerate(weights[row]):
            weight = float(raw)
            x = grid_x + column * CELL_PX
            tip = f"{target_labels[row]} ← {source_labels[column]}: {weight:.3f}"
            parts.append(
                f'<rect class="cell" x="{x:.1f}" y="{y:.1f}" width="{CELL_PX}" height="{CELL_PX}" '
                f'fill="{weight_colour(weight)}" stroke="#ffffff" stroke-width="1" '
                f'data-target="{row}" data-source="{column}"><title>{_xml(tip)}</title></rect>'
            )
            if weight >= MIN_VALUE_SHOWN:
                ink = "#ffffff" if weight > 0.55 else "#1f2937"
                parts.append(
                    f'<text class="value" x="{x + CELL_PX / 2:.1f}" y="{y + CELL_PX / 2 + 3.5:.1f}" '
                    f'font-size="10" text-anchor="middle" fill="{ink}" pointer-events="none">'
                    f"{_value_text(weight)}</text>"
                )
    legend_y = round(grid_y + grid_h + 14, 1)
    parts += [
        '<defs><linearGradient id="scale">',
        *(f'<stop offset="{stop:g}" stop-color="{weight_colour(stop)}"/>' for stop, _ in PALETTE),
        "</linearGradient></defs>",
        f'<text class="legend" x="{grid_x - 6}" y="{legend_y + 10}" text-anchor="end">0</text>',
        f'<rect class="legend" x="{grid_x}" y="{legend_y}" width="120" height="12" fill="url(#scale)" '
        'stroke="#999999" stroke-width="0.5"/>',
        f'<text class="legend" x="{grid_x + 126}" y="{legend_y + 10}">1</text>',
        "</svg>\n",
    ]
    return "".join(parts)
