"""LibreTranslate's `"format": "html"`: the text of HTML fragments translated and put back in their
markup (service.api.html_text), a sentence that runs through inline elements translated whole and
its elements carried into the translation by attention (service.api.markup_transfer), or, where
that cannot be done, text node by text node. HTTP edge only: must not import onnxruntime.
"""

from __future__ import annotations

import html

from starlette.requests import Request

from service.api.deps import ServiceState
from service.api.errors import PayloadTooLarge
from service.api.html_text import HtmlDocument, Run
from service.api.markup_transfer import carry_markup, put_atoms
from service.api.source_text import Options, client_terms, normalised, source_pieces, split_texts
from service.api.target_text import Attended
from service.api.translation import attend_all, check_limits
from service.models import LoadedModel


async def translate_html(
    state: ServiceState, request: Request, documents: list[str], options: Options
) -> tuple[LoadedModel, list[str]]:
    """Translations of HTML fragments: the text nodes of all of them are translated together, as the
    texts of one request, and put back into their markup; text nodes joined by inline elements (a
    run) are translated as one text and the elements carried into it, or, where that fails, node by
    node (translator_html_runs_total). The limits on texts apply to the fragments as sent; those on
    sentences and rows to the texts translated."""
    loaded = check_limits(state, documents, options)
    parsed = [HtmlDocument(document) for document in documents]
    if loaded.manifest.attention == "none":  # nothing to carry markup with: node by node
        for document in parsed:
            document.runs.clear()
    runs = sum(len(document.runs) for document in parsed)
    for document in parsed:  # a run too large as one text: node by node, as its text nodes fit
        document.runs[:] = [run for run in document.runs if _run_fits(state, loaded, run, options)]
    too_large = runs - sum(len(document.runs) for document in parsed)
    units, texts, names = _html_units(parsed)
    model, translated = await attend_all(state, request, loaded, texts, options, names)
    node_translations: list[list[str | None]] = [[None] * len(document.texts) for document in parsed]
    carried: list[dict[int, str]] = [{} for _ in parsed]
    uncarried: list[tuple[int, int]] = []  # (document, run index)
    for (position, run_index, node), result in zip(units, translated, strict=True):
        if run_index is None:
            node_translations[position][node] = result.translation
        elif (markup := _carried(parsed[position].runs[run_index], result)) is None:
            uncarried.append((position, run_index))
        else:
            carried[position][run_index] = markup
    state.metrics.observe_markup(carried=sum(map(len, carried)), uncarried=len(uncarried) + too_large)
    if uncarried:  # node by node after all
        nodes = [(position, node) for position, run_index in uncarried
                 for node in parsed[position].runs[run_index].nodes]
        again = await _node_by_node(state, request, model, [parsed[p].texts[n] for p, n in nodes], options,
                                    [f"text {p}'s text node {n}" for p, n in nodes])
        for (position, node), translation in zip(nodes, again, strict=True):
            node_translations[position][node] = translation
    return model, [document.render(translations, runs)
                   for document, translations, runs in zip(parsed, node_translations, carried, strict=True)]


async def _node_by_node(state: ServiceState, request: Request, model: LoadedModel, texts: list[str],
                        options: Options, names: list[str]) -> list[str]:
    """Translations of the text nodes of runs whose markup could not be carried, in parts that fit the
    request's limits: their text was accepted as runs (fewer sentences), and is not refused now."""
    try:
        _, results = await attend_all(state, request, model, texts, options, names)
    except PayloadTooLarge:
        if len(texts) == 1:
            raise
        half = len(texts) // 2
        return (await _node_by_node(state, request, model, texts[:half], options, names[:half])
                + await _node_by_node(state, request, model, texts[half:], options, names[half:]))
    return [result.translation for result in results]


def _carried(run: Run, result: Attended) -> str | None:
    """The run's translation as HTML with its elements and atoms in it, or None (node by node)."""
    markup = carry_markup(run.text, run.elements, result.translation, result.word_weights) \
        if run.elements else html.escape(result.translation, quote=False)
    return None if markup is None else put_atoms(markup, run.atoms)


def _run_fits(state: ServiceState, loaded: LoadedModel, run: Run, options: Options) -> bool:
    """Whether `run` is within the limits on one text (its sentences, their tokens) as one text; one
    that is not is translated node by node (a sentence of 300 tokens split by a <b> fits as its nodes)."""
    try:
        (sentences,) = split_texts(state, [normalised(run.text)], options)
        source_pieces(state, loaded, "", sentences, client_terms(options))
    except PayloadTooLarge:
        return False
    return True


def _html_units(parsed: list[HtmlDocument]) -> tuple[list[tuple[int, int | None, int]], list[str], list[str]]:
    """What to translate in `parsed`: every run, and every text node outside one, as (document, run
    index or None, text node), their texts, and the names a refusal gives them (the client's text)."""
    units: list[tuple[int, int | None, int]] = []
    texts, names = [], []
    for position, document in enumerate(parsed):
        for index, run in enumerate(document.runs):
            units.append((position, index, run.nodes[0]))
            texts.append(run.text)
            names.append(f"text {position}'s text nodes {run.nodes[0]}-{run.nodes[-1]}")
        inside = {node for run in document.runs for node in run.nodes}
        for node, text in enumerate(document.texts):
            if node not in inside:
                units.append((position, None, node))
                texts.append(text)
                names.append(f"text {position}'s text node {node}")
    return units, texts, names
