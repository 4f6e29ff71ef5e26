"""service/api/html_text.py: which text of an HTML fragment is translated, and the markup put back as it was."""

from __future__ import annotations

import pytest

from service.api.html_text import HtmlDocument
from service.api.markup_transfer import atom_placeholder


def test_text_nodes_are_translated_and_the_markup_kept() -> None:
    source = ('<!DOCTYPE html><p class="intro" data-x=\'1\'>Hello <b>big</b>\n   world!</p><!-- note -->'
              '<img src="a.png" alt="A cat"/><br>')
    document = HtmlDocument(source)
    assert document.texts == ["Hello", "big", "world!"]  # whitespace collapsed; attributes are not text
    assert document.render(document.texts) == source  # the identity translation gives the fragment back
    assert document.render(["Hallo", "große", "Welt!"]) == (
        '<!DOCTYPE html><p class="intro" data-x=\'1\'>Hallo <b>große</b>\n   Welt!</p><!-- note -->'
        '<img src="a.png" alt="A cat"/><br>')


def test_code_scripts_and_styles_are_not_translated() -> None:
    source = ("<p>Run <code>ls -l</code> first.</p><pre>keep  this\n as is</pre>"
              "<script>if (a < b) { x = '&amp;'; }</script><style>p > b { color: red }</style>")
    document = HtmlDocument(source)
    assert document.texts == ["Run", "first."]
    assert document.render(["Führe", "zuerst aus."]) == source.replace("Run", "Führe").replace("first.", "zuerst aus.")


def test_text_the_page_marks_untranslatable_is_kept() -> None:
    # HTML's translate attribute, inherited until a translate="yes"; Google's notranslate class
    source = ('<p>Open <span translate="no">LibreOffice <b>Calc</b></span> now.</p>'
              '<div translate="NO">Keep <em translate="yes">Translate me</em> this</div>'
              '<p class="brand notranslate">Writer</p><p>Last <br> line<img src="x.png"> here</p>')
    document = HtmlDocument(source)
    assert document.texts == ["Open", "now.", "Translate me", "Last", "line", "here"]
    assert document.render(document.texts) == source


def test_code_stays_code_whatever_its_content_says() -> None:
    source = ('<pre><span translate="yes">Open the file.\n  Close it.</span></pre>'
              '<textarea><b translate="yes">Open</b></textarea><code><i translate>x = 1</i></code>')
    assert HtmlDocument(source).texts == []


def test_the_translate_attribute_as_html_reads_it() -> None:
    # "/>" closes no span: what follows is inside it; " no " is no valid value, so it inherits
    source = '<p><span translate="no"/>Save As</p><p translate=" no ">Open it.</p><p translate="">Go.</p>'
    assert HtmlDocument(source).texts == ["Open it.", "Go."]


def test_unclosed_elements_do_not_leak_their_state() -> None:
    # <li> and <p> end where the next one starts or their parent ends; a stray end tag closes nothing
    source = '<ul translate="no"><li>one<li>two</ul><p>three</span></p><pre>code</pre><p>four'
    document = HtmlDocument(source)
    assert document.texts == ["three", "four"]


def test_entities_are_decoded_for_translation_and_the_translation_escaped() -> None:
    document = HtmlDocument("<p>Tom &amp; Jerry &lt;3 &#169;</p>")
    assert document.texts == ["Tom & Jerry <3 \u00a9"]
    assert document.render(["Tom & Jerry <3 \u00a9"]) == "<p>Tom &amp; Jerry &lt;3 \u00a9</p>"
    assert document.render(["<b>injected</b>"]) == "<p>&lt;b&gt;injected&lt;/b&gt;</p>"  # text stays text


def test_plain_text_and_markup_without_text() -> None:
    assert HtmlDocument("just words").texts == ["just words"]
    empty = HtmlDocument("<br/><hr>  \n")
    assert empty.texts == [] and empty.render([]) == "<br/><hr>  \n"
    with pytest.raises(ValueError, match="1 translations for 0 text nodes"):
        empty.render(["x"])


@pytest.mark.parametrize("source", [
    "<![CDATA[x]]><p>Hi</p>",  # was rebuilt as <![CDATA[x]> (one bracket lost)
    "<P>Hi</P ><A HREF=x>there</A >",  # end tags were rebuilt lower-case, their spacing dropped
    "<!><! foo>Hi",  # odd declarations were rebuilt as comments
    "</>Hi</>there",  # constructs the parser skips without a callback
    "<code>a &amp;&#32;b</code>Hi",  # entities in untranslated text as written, not re-escaped
])
def test_markup_comes_back_byte_for_byte(source: str) -> None:
    document = HtmlDocument(source)
    assert document.render(document.texts) == source
    assert document.render([text.upper() for text in document.texts]) == source.replace("Hi", "HI").replace(
        "there", "THERE")


def test_a_stray_less_than_sign_is_text_of_its_node() -> None:
    document = HtmlDocument("<p>if a < b then</p>")
    assert document.texts == ["if a < b then"]  # one node, not three ("if a", "<", "b then")
    assert document.render(["wenn a < b dann"]) == "<p>wenn a &lt; b dann</p>"


def _runs(source: str) -> list[tuple[str, list[tuple[str, str]], list[int]]]:
    """Each run's text, its elements (open tag, the text they hold) and its text nodes."""
    return [(run.text, [(e.open_tag, run.text[e.start:e.end]) for e in run.elements], run.nodes)
            for run in HtmlDocument(source).runs]


def test_text_nodes_joined_by_inline_elements_form_a_run() -> None:
    assert _runs('<p>Click <b>Save</b>\n  to <a href="/k?a=1&amp;b">keep</a> your changes.</p><p>Next</p>') == [
        ("Click Save to keep your changes.", [("<b>", "Save"), ('<a href="/k?a=1&amp;b">', "keep")], [0, 1, 2, 3, 4])]
    # an element at the run's edge, nested ones in document order (outer first), entities decoded
    assert _runs("<li><b>all <i>print</i></b> options &amp; more</li>") == [
        ("all print options & more", [("<b>", "all print"), ("<i>", "print")], [0, 1, 2])]
    assert _runs("<b>a</b> <i>b</i>") == [("a b", [("<b>", "a"), ("<i>", "b")], [0, 1])]


@pytest.mark.parametrize("source", [
    "<p>one node only, <b></b></p>",  # a single text node: translated as before
    "<p>Run</p><pre>ls</pre><p>now</p>",  # block code is not inline
    "<p>Line one<br>line two</p>",  # a void element ends it
    '<div translate="no">Hello <b>big</b> world</div>',  # nothing translated: no run
    "<p>Hello <!-- x --> world</p>",  # so does a comment
    "x <b>y <i>z</b></i> w",  # misnested: not carried
    "<p>Hello</p><p>world</p>",  # block elements are not inline
])
def test_no_run_where_a_sentence_does_not_run_through_inline_elements(source: str) -> None:
    assert _runs(source) == []


def test_a_carried_run_is_put_back_whole_with_its_whitespace_edges() -> None:
    source = "<p>\n  Click <b>Save</b> now.\n</p><p>Ok <i>then</i></p><p>Alone</p>"
    document = HtmlDocument(source)
    assert [run.text for run in document.runs] == ["Click Save now.", "Ok then"]
    rendered = document.render([None, None, None, "Gut", "dann", "Allein"],
                               {0: "Klicken Sie jetzt auf <b>Speichern</b>."})
    assert rendered == "<p>\n  Klicken Sie jetzt auf <b>Speichern</b>.\n</p><p>Gut <i>dann</i></p><p>Allein</p>"
    with pytest.raises(ValueError, match="no translation for text node 3"):
        document.render([None, None, None, None, "dann", "Allein"], {0: "x"})


def test_inline_code_and_text_marked_not_to_translate_are_atoms_of_a_run() -> None:
    """Kept whole, as written, where the model copies the placeholder that stands for each."""
    document = HtmlDocument('<p>Press <kbd>Ctrl</kbd>+<kbd>P</kbd> to <b>print</b>.</p>'
                            '<p>Hello <span translate="no">Acme &amp;  <i>Co</i></span> world <code></code></p>')
    first, second = document.runs
    ctrl, p, acme, empty = (atom_placeholder(index) for index in (0, 1, 0, 1))
    assert first.text == f"Press {ctrl}+{p} to print."
    assert [(a.html, first.text[a.start:a.end]) for a in first.atoms] == [("<kbd>Ctrl</kbd>", ctrl),
                                                                          ("<kbd>P</kbd>", p)]
    assert [(e.open_tag, first.text[e.start:e.end]) for e in first.elements] == [("<b>", "print")]
    assert second.text == f"Hello {acme} world {empty}" and second.nodes == [5, 6]
    assert [a.html for a in second.atoms] == ['<span translate="no">Acme &amp;  <i>Co</i></span>', "<code></code>"]
    assert document.texts == ["Press", "+", "to", "print", ".", "Hello", "world"]  # node by node, the fallback
    # text to translate inside text kept as written: node by node
    assert HtmlDocument('<p>Choose <span translate="no">Tools <span translate="yes">Options</span></span> '
                        'to change the <b>settings</b>.</p>').runs == []
    # placeholder characters in the text itself: node by node
    assert HtmlDocument(f"<p>Press <kbd>x</kbd> or {ctrl} now</p>").runs == []


def test_an_empty_element_at_another_s_edge_goes_with_its_tags() -> None:
    (run,) = HtmlDocument('<a href="/dl">Download<i class="fa"></i></a> the <b><a name="s"></a>file</b> now').runs
    assert run.text == "Download the file now"
    assert [(e.open_tag, e.close_tag, run.text[e.start:e.end]) for e in run.elements] == [
        ('<a href="/dl">', '<i class="fa"></i></a>', "Download"), ('<b><a name="s"></a>', "</b>", "file")]


def test_layout_text_is_kept_and_empty_elements_at_a_run_s_edge_stay_outside_it() -> None:
    # a cell or paragraph of &nbsp; is layout, kept as written; between inline elements, a space
    document = HtmlDocument("<table><tr><td>&nbsp;</td><td>Name</td></tr></table><p>&nbsp;\u200b</p>"
                            "<p><b>Save</b>&nbsp;<i>Close</i> it</p>")
    assert document.texts == ["Name", "Save", "Close", "it"]
    assert document.render(["Namen", None, None, None], {0: "x"}) == \
        "<table><tr><td>&nbsp;</td><td>Namen</td></tr></table><p>&nbsp;\u200b</p><p>x</p>"
    assert [run.text for run in document.runs] == ["Save Close it"]
    # whitespace written as a character reference is whitespace at the text node's edge
    document = HtmlDocument("<p>Press <b>Save</b>&#32;now&#x20;</p>")
    assert document.runs[0].text == "Press Save now"
    assert document.render(["Drücke", "Sichern", "jetzt"]) == "<p>Drücke <b>Sichern</b> jetzt </p>"
    # an anchor or icon at the run's edge is kept where it is, outside the run
    document = HtmlDocument('<p><a name="x"></a>Getting <em>started</em> now.<span class="s"></span></p>')
    (run,) = document.runs
    assert run.text == "Getting started now." and [e.open_tag for e in run.elements] == ["<em>"]
    assert document.render([None, None, None], {0: "Los <em>geht's</em>."}) == \
        '<p><a name="x"></a>Los <em>geht\'s</em>.<span class="s"></span></p>'
