"""Unit tests of the standalone SVG heatmap (service.api.attention_svg): valid XML, one cell per
(target, source) pair, escaping, labels and colours. Pure Python, no server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.attention_svg import render_heatmap_svg, token_label, weight_colour

SVG = "{http://www.w3.org/2000/svg}"
SOURCE = ["▁three", "▁hundred", "▁and", "▁forty", "-", "two", "</s>"]
TARGET = ["▁drei", "hundert", "zwei", "und", "vierzig", "</s>"]


def uniform(rows: int, columns: int) -> list[list[float]]:
    return [[1.0 / columns] * columns for _ in range(rows)]


def parse(document: str) -> ET.Element:
    return ET.fromstring(document.encode("utf-8"))  # bytes: the XML declaration names the encoding


def cells(root: ET.Element) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == "cell"]


def texts(root: ET.Element, css_class: str) -> list[str]:
    """Visible text of <text class=...> elements (their <title> child excluded)."""
    found = []
    for node in root.iter(f"{SVG}text"):
        if node.get("class") == css_class:
            title = node.find(f"{SVG}title")
            found.append((node.text or "") + (title.tail if title is not None and title.tail else ""))
    return found


def test_is_a_standalone_svg_document_with_one_cell_per_target_source_pair() -> None:
    document = render_heatmap_svg(SOURCE, TARGET, uniform(len(TARGET), len(SOURCE)))
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = parse(document)
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width", "0")) > 0 and float(root.get("height", "0")) > 0
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    grid = cells(root)
    assert len(grid) == len(TARGET) * len(SOURCE)
    positions = {(int(rect.get("data-target", -1)), int(rect.get("data-source", -1))) for rect in grid}
    assert positions == {(t, s) for t in range(len(TARGET)) for s in range(len(SOURCE))}
    # Rows go down with the target index, columns right with the source index.
    by_position = {(int(r.get("data-target", -1)), int(r.get("data-source", -1))): r for r in grid}
    assert float(by_position[(1, 0)].get("y", 0)) > float(by_position[(0, 0)].get("y", 0))
    assert float(by_position[(0, 1)].get("x", 0)) > float(by_position[(0, 0)].get("x", 0))


def test_axes_and_every_token_are_labelled_and_the_document_has_a_title() -> None:
    root = parse(render_heatmap_svg(SOURCE, TARGET, uniform(len(TARGET), len(SOURCE))))
    assert texts(root, "source-label") == [token_label(token) for token in SOURCE]
    assert texts(root, "target-label") == [token_label(token) for token in TARGET]
    axis_titles = texts(root, "axis-title")
    assert any("source" in title for title in axis_titles) and any("target" in title for title in axis_titles)
    title = root.find(f"{SVG}title")
    assert title is not None and f"{len(TARGET)} target tokens" in (title.text or "")
    assert root.get("role") == "img"


def test_each_cell_has_its_weight_as_tooltip_and_darker_means_more() -> None:
    weights = [[0.9, 0.1], [0.0, 1.0]]
    root = parse(render_heatmap_svg(["▁a", "</s>"], ["▁x", "</s>"], weights))
    grid = {(int(r.get("data-target", -1)), int(r.get("data-source", -1))): r for r in cells(root)}
    tooltip = grid[(0, 0)].find(f"{SVG}title")
    assert tooltip is not None and tooltip.text == "x ← a: 0.900"

    def brightness(rect: ET.Element) -> int:
        colour = rect.get("fill", "")
        return sum(int(colour[i : i + 2], 16) for i in (1, 3, 5))

    assert brightness(grid[(1, 1)]) < brightness(grid[(0, 0)]) < brightness(grid[(0, 1)]) < brightness(grid[(1, 0)])
    assert grid[(1, 0)].get("fill") == weight_colour(0.0) == "#f7fbff"
    values = [node.text for node in root.iter(f"{SVG}text") if node.get("class") == "value"]
    assert values == [".90", ".10", "1"]  # zero cells print nothing


@pytest.mark.parametrize("nasty", ['<svg onload="x">', "a&b", '"quoted"', "x > y < z", "&amp;", "it's"])
def test_token_text_is_xml_escaped_and_round_trips(nasty: str) -> None:
    source = ["▁" + nasty, nasty, "</s>"]
    target = [nasty, "</s>"]
    document = render_heatmap_svg(source, target, uniform(2, 3))
    root = parse(document)  # would raise on a bare < or & or a broken attribute
    assert len(list(root.iter(f"{SVG}svg"))) == 1
    assert texts(root, "source-label")[:2] == [token_label(source[0]), token_label(source[1])]
    assert texts(root, "target-label")[0] == token_label(nasty)
    tooltips = [title.text for rect in cells(root) for title in rect.iter(f"{SVG}title")]
    assert f"{token_label(nasty)} ← {token_label(source[0])}: 0.333" in tooltips
    if any(char in nasty for char in '<>"') or nasty == "a&b":
        assert nasty not in document  # only its escaped form is there


def test_characters_that_xml_forbids_are_replaced_not_emitted() -> None:
    root = parse(render_heatmap_svg(["▁a\x00b\x1f", "</s>"], ["\ud800x", "</s>"], uniform(2, 2)))
    assert texts(root, "source-label")[0] == "a\ufffdb\ufffd"
    assert texts(root, "target-label")[0] == "·\ufffdx"


def test_long_labels_are_shortened_and_keep_the_full_token_in_their_title() -> None:
    long_token = "▁" + "x" * 80
    root = parse(render_heatmap_svg([long_token, "</s>"], ["▁y", "</s>"], uniform(2, 2)))
    label = next(node for node in root.iter(f"{SVG}text") if node.get("class") == "source-label")
    assert texts(root, "source-label")[0] == "x" * 23 + "…"
    title = label.find(f"{SVG}title")
    assert title is not None and title.text == long_token


def test_piece_labels_drop_the_word_start_mark_and_mark_continuations() -> None:
    assert [token_label(piece) for piece in ["▁drei", "hundert", "</s>", "<unk>", "▁"]] == [
        "drei",
        "·hundert",
        "</s>",
        "<unk>",
        "␣",
    ]


def test_a_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="2x3"):
        render_heatmap_svg(["a", "b", "c"], ["x", "y"], [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="target x source"):
        render_heatmap_svg(["a", "b", "c"], ["x", "y"], [[1.0, 0.0], [0.0, 1.0]])


def test_out_of_range_and_nan_weights_still_draw() -> None:
    root = parse(render_heatmap_svg(["a", "b"], ["x"], [[float("nan"), 7.0]]))
    fills = [rect.get("fill") for rect in cells(root)]
    assert fills == [weight_colour(0.0), weight_colour(1.0)]


def test_no_tokens_gives_an_empty_but_valid_heatmap() -> None:
    root = parse(render_heatmap_svg([], [], []))
    assert cells(root) == []


@settings(max_examples=60, deadline=None)
@given(
    source=st.lists(st.text(max_size=12), min_size=1, max_size=6),
    target=st.lists(st.text(max_size=12), min_size=1, max_size=6),
    data=st.data(),
)
def test_any_tokens_give_parseable_svg_with_the_right_cell_count(
    source: list[str], target: list[str], data: st.DataObject
) -> None:
    weight = st.floats(min_value=0.0, max_value=1.0)
    weights = data.draw(
        st.lists(
            st.lists(weight, min_size=len(source), max_size=len(source)), min_size=len(target), max_size=len(target)
        )
    )
    root = parse(render_heatmap_svg(source, target, weights))
    assert len(cells(root)) == len(source) * len(target)
