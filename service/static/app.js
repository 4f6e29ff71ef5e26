/* The page's behaviour: fill the language pairs from GET v1/models, call POST v1/attention, show the
   translation, the heatmap (a table) and the alignment (an SVG of weighted lines), and API errors in words.
   A text of several sentences is shown one sentence at a time (its weights are a block diagonal), and no
   sentence draws more than MAX_DRAWN_CELLS cells. Model and user text only ever goes in as text (textContent,
   attributes), never as markup.
   Plain browser JavaScript: no framework, no build step, no request beyond this service (relative URLs). */
"use strict";

(function () {
  const WORD_START = "\u2581"; // SentencePiece's word-start mark
  const EOS = "</s>"; // every sentence's source and target tokens end with their own
  const SPECIAL_TOKENS = new Set([EOS, "<s>", "<unk>", "<pad>"]);
  const SPOKEN_SPECIAL_TOKENS = { [EOS]: "end of sentence", "<s>": "start of sentence", "<unk>": "unknown word",
    "<pad>": "padding" };
  const MAX_LABEL_CHARS = 24;
  const MAX_SENTENCE_LABEL_CHARS = 60;
  // A sentence with more attention weights than this is described in words instead of drawn (a table cell and
  // up to one SVG line each): the same limit as the service's SVG heatmap (MAX_SVG_CELLS).
  const MAX_DRAWN_CELLS = 20000;
  // Lines under this weight would be invisible anyway; skipping them keeps long sentences light.
  const MIN_LINE_WEIGHT = 0.01;
  // ColorBrewer "Blues", the same stops as service/api/attention_svg.py.
  const PALETTE = [
    [0.0, [247, 251, 255]],
    [0.25, [198, 219, 239]],
    [0.5, [107, 174, 214]],
    [0.75, [33, 113, 181]],
    [1.0, [8, 48, 107]],
  ];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const LABEL_FONT = '14px system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif';
  const LABEL_GAP_PX = 14; // between neighbouring word labels, so they never touch
  const MIN_SLOT_PX = 30;
  const MAX_SPREAD_SLOT_PX = 120;
  const SIDE_LABELS_PX = 64; // left margin of the alignment view for its "wrote" / "read" row labels
  const ALIGNMENT_HEIGHT_PX = 240;

  const HEADLINES = {
    0: "The translation service cannot be reached.",
    400: "The request was not understood.",
    401: "The service needs an API key.",
    413: "The text is too long for the service.",
    415: "The request was sent in a format the service does not accept.",
    422: "The service could not use this input.",
    429: "The service is busy right now.",
    500: "The service failed while translating this text.",
    503: "The service is not ready (it is starting or shutting down).",
    504: "The translation took too long and was stopped.",
  };

  const byId = (id) => document.getElementById(id);
  const ui = {
    form: byId("translate-form"),
    text: byId("source-text"),
    pair: byId("language-pair"),
    beam: byId("beam-size"),
    apiKey: byId("api-key"),
    button: byId("translate-button"),
    status: byId("status"),
    error: byId("error"),
    result: byId("result"),
    translation: byId("translation"),
    modelInfo: byId("model-info"),
    heatmapSection: byId("heatmap-section"),
    heatmap: byId("heatmap"),
    heatmapReadout: byId("heatmap-readout"),
    alignmentSection: byId("alignment-section"),
    alignment: byId("alignment"),
    alignmentReadout: byId("alignment-readout"),
    moses: byId("moses"),
    sentencePicker: byId("sentence-picker"),
    sentenceSelect: byId("sentence-select"),
    sentencePrevious: byId("sentence-previous"),
    sentenceNext: byId("sentence-next"),
    sentencePosition: byId("sentence-position"),
    heatmapScroll: byId("heatmap-scroll"),
    heatmapTooLarge: byId("heatmap-too-large"),
    alignmentScroll: byId("alignment-scroll"),
    alignmentTooLarge: byId("alignment-too-large"),
  };
  let models = []; // GET v1/models .models
  let current = null; // the last attention response, for the hover read-outs
  let sentences = []; // its sentences: [{rows: [start, end), columns: [start, end), text}]
  let shown = null; // the sentence drawn now (one of `sentences`), or null
  let busy = false; // a request is in flight
  let inFlight = null; // the submission being answered ({body, path, apiKey, key})
  let pending = null; // the newest submission made meanwhile: sent when the one in flight ends
  let pinned = null; // {side, index}: a clicked word keeps its lines highlighted until clicked again

  // ---- tokens and colours ------------------------------------------------------------------------

  function tokenLabel(piece) {
    if (SPECIAL_TOKENS.has(piece)) return piece;
    if (piece.startsWith(WORD_START)) return piece.slice(WORD_START.length) || "\u2423";
    return "\u00b7" + piece; // a piece glued to the previous one
  }

  function shortLabel(label, most = MAX_LABEL_CHARS) {
    return label.length <= most ? label : label.slice(0, most - 1) + "\u2026";
  }

  /** A token as a screen reader or a tooltip should present it: its text without SentencePiece's marks. */
  function tokenName(piece) {
    if (SPECIAL_TOKENS.has(piece)) return SPOKEN_SPECIAL_TOKENS[piece];
    if (piece.startsWith(WORD_START)) return piece.slice(WORD_START.length) || "a space";
    return `${piece}, joined to the token before`;
  }

  function range(start, end) {
    return Array.from({ length: end - start }, (_, i) => start + i);
  }

  // ---- sentences ---------------------------------------------------------------------------------

  /** The sentences of an attention answer. Each sentence's source and target tokens end with its own </s>, and
      its target rows attend only over its own source: the weights are a block diagonal, and each block can be
      drawn alone. An answer that does not look like that is one block. */
  function splitSentences(data) {
    const ends = (tokens) => tokens.flatMap((token, i) => (token === EOS ? [i + 1] : []));
    const rowEnds = ends(data.target_tokens);
    const columnEnds = ends(data.source_tokens);
    const whole = [{ rows: [0, data.target_tokens.length], columns: [0, data.source_tokens.length] }];
    const complete =
      rowEnds.length > 1 &&
      rowEnds.length === columnEnds.length &&
      rowEnds[rowEnds.length - 1] === data.target_tokens.length &&
      columnEnds[columnEnds.length - 1] === data.source_tokens.length;
    let blocks = whole;
    if (complete) {
      blocks = rowEnds.map((rowEnd, i) => ({
        rows: [i ? rowEnds[i - 1] : 0, rowEnd],
        columns: [i ? columnEnds[i - 1] : 0, columnEnds[i]],
      }));
      // Each row's weight must lie inside its own block (the rows sum to 1); otherwise draw the text whole.
      const inside = blocks.every(({ rows, columns }) =>
        range(rows[0], rows[1]).every((t) => {
          let sum = 0;
          for (let s = columns[0]; s < columns[1]; s++) sum += data.weights[t][s];
          return sum > 0.99;
        }),
      );
      if (!inside) blocks = whole;
    }
    return blocks.map((block) => ({ ...block, text: sentenceText(data.source_tokens.slice(...block.columns)) }));
  }

  /** The source text of a sentence, put back together from its pieces. */
  function sentenceText(pieces) {
    return pieces
      .filter((piece) => piece !== EOS)
      .join("")
      .split(WORD_START)
      .join(" ")
      .trim();
  }

  function showSentencePicker() {
    const several = sentences.length > 1;
    ui.sentencePicker.hidden = !several;
    if (!several) {
      ui.sentenceSelect.replaceChildren();
      return;
    }
    ui.sentenceSelect.replaceChildren(
      ...sentences.map((sentence, i) =>
        html("option", { value: String(i) }, `${i + 1}. ${shortLabel(sentence.text, MAX_SENTENCE_LABEL_CHARS)}`),
      ),
    );
  }

  /** Draw sentence `index` of the current answer in the heatmap and the alignment. */
  function showSentence(index) {
    if (!current || index < 0 || index >= sentences.length) return;
    shown = sentences[index];
    pinned = null;
    clearHighlights();
    ui.sentenceSelect.value = String(index);
    ui.sentencePrevious.setAttribute("aria-disabled", String(index === 0));
    ui.sentenceNext.setAttribute("aria-disabled", String(index === sentences.length - 1));
    const rows = shown.rows[1] - shown.rows[0];
    const columns = shown.columns[1] - shown.columns[0];
    const sizes = `${rows} tokens written, ${columns} read.`;
    ui.sentencePosition.textContent =
      sentences.length > 1 ? `Sentence ${index + 1} of ${sentences.length}: ${sizes}` : sizes;
    const cells = rows * columns;
    const tooLarge = cells > MAX_DRAWN_CELLS;
    ui.heatmapScroll.hidden = tooLarge;
    ui.alignmentScroll.hidden = tooLarge;
    ui.heatmapTooLarge.hidden = !tooLarge;
    ui.alignmentTooLarge.hidden = !tooLarge;
    ui.heatmapSection.hidden = false;
    ui.alignmentSection.hidden = false;
    if (tooLarge) {
      const what = sentences.length > 1 ? "This sentence" : "This text";
      const words =
        `${what} has ${rows} \u00d7 ${columns} = ${cells.toLocaleString("en")} attention weights: too many to ` +
        `draw here (at most ${MAX_DRAWN_CELLS.toLocaleString("en")}). Its translation is above; POST ` +
        "v1/attention returns all its weights as JSON.";
      ui.heatmapTooLarge.textContent = words;
      ui.alignmentTooLarge.textContent = words;
      ui.heatmap.replaceChildren();
      ui.alignment.replaceChildren();
      ui.heatmapReadout.textContent = "\u00a0";
      ui.alignmentReadout.textContent = "\u00a0";
      return;
    }
    renderHeatmap(current, shown);
    renderAlignment(current, shown);
  }

  function stepSentence(step) {
    if (!shown) return;
    showSentence(sentences.indexOf(shown) + step);
  }

  function weightColour(weight) {
    const value = Number.isFinite(weight) ? Math.min(1, Math.max(0, weight)) : 0;
    for (let i = 1; i < PALETTE.length; i++) {
      const [high, highRgb] = PALETTE[i];
      if (value <= high) {
        const [low, lowRgb] = PALETTE[i - 1];
        const share = (value - low) / (high - low);
        const rgb = lowRgb.map((a, k) => Math.round(a + (highRgb[k] - a) * share));
        return `rgb(${rgb.join(", ")})`;
      }
    }
    return `rgb(${PALETTE[PALETTE.length - 1][1].join(", ")})`;
  }

  function languageName(code) {
    try {
      return new Intl.DisplayNames(["en"], { type: "language" }).of(code) || code;
    } catch {
      return code;
    }
  }

  function html(tag, attributes = {}, text = null) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== null) node.textContent = text;
    return node;
  }

  function svg(tag, attributes = {}, text = null) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== null) node.textContent = text;
    return node;
  }

  // ---- talking to the API ------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, retryAfterS = null) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfterS = retryAfterS;
    }
  }

  /** JSON in, JSON out; any failure becomes an ApiError carrying the service's own {error: {code, message}}. */
  async function callApi(path, body, apiKey = ui.apiKey.value.trim()) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey) headers["X-API-Key"] = apiKey;
    let response;
    try {
      response = await fetch(path, {
        method: body === undefined ? "GET" : "POST",
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, "network_error", `No answer from the service (${err.message}).`);
    }
    const raw = await response.text();
    let payload = null;
    try {
      payload = raw ? JSON.parse(raw) : null;
    } catch {
      payload = null; // a proxy's HTML error page, for example
    }
    if (!response.ok) {
      const detail = payload && payload.error ? payload.error : {};
      throw new ApiError(
        response.status,
        detail.code || `http_${response.status}`,
        detail.message || `HTTP ${response.status} ${response.statusText}`.trim(),
        response.headers.get("Retry-After"),
      );
    }
    if (payload === null) {
      throw new ApiError(response.status, "bad_response", "The service answered with something that is not JSON.");
    }
    return payload;
  }

  function showError(err, sentText) {
    const status = err instanceof ApiError ? err.status : -1;
    const headline = HEADLINES[status] || (status >= 500 ? HEADLINES[500] : "The request failed.");
    const hints = [];
    if (status === 422 && sentText !== undefined && !sentText.trim()) hints.push("Type some text to translate first.");
    if (status === 401) hints.push("Enter a key in the API key field.");
    if (status === 429 && err.retryAfterS) hints.push(`Try again in ${err.retryAfterS} s.`);
    const message = err instanceof ApiError ? err.message : String(err);
    const heading = html("p", { class: "error-headline" });
    heading.append(html("strong", {}, headline));
    if (err instanceof ApiError) {
      const where = status ? `HTTP ${status}, ${err.code}` : err.code;
      heading.append(" ", html("span", { class: "error-code" }, `(${where})`));
    }
    const parts = [heading, html("p", { class: "error-message" }, message)];
    if (hints.length) parts.push(html("p", { class: "error-hint" }, hints.join(" ")));
    ui.error.replaceChildren(...parts);
    ui.error.hidden = false;
    document.body.dataset.state = "error";
  }

  function hideError() {
    ui.error.hidden = true;
    ui.error.replaceChildren();
  }

  // ---- the form ------------------------------------------------------------------------------------

  async function loadModels() {
    try {
      models = (await callApi("v1/models")).models || [];
    } catch (err) {
      ui.pair.replaceChildren(html("option", { value: "" }, "Service default"));
      showError(err);
      return;
    }
    const options = [];
    const seen = new Set();
    for (const model of models) {
      const value = `${model.source_language}:${model.target_language}`;
      if (seen.has(value)) continue;
      seen.add(value);
      const extra = model.attention === "none" ? ", no attention" : "";
      const text =
        `${languageName(model.source_language)} \u2192 ${languageName(model.target_language)}` +
        ` (${model.name} v${model.version}${extra})`;
      const option = html("option", { value }, text);
      if (model.default) option.selected = true;
      options.push(option);
    }
    if (!options.length) options.push(html("option", { value: "" }, "No model loaded"));
    ui.pair.replaceChildren(...options);
  }

  function selectedModel() {
    const [source, target] = ui.pair.value.split(":");
    return models.find((m) => m.source_language === source && m.target_language === target) || null;
  }

  /** While a request is in flight the button stays enabled and focusable (a disabled button would drop the
      keyboard's focus to the page): a submission meanwhile waits for it, see translate(). */
  function setBusy(value) {
    busy = value;
    ui.form.setAttribute("aria-busy", String(value));
    if (value) {
      ui.status.textContent = "Translating\u2026";
      document.body.dataset.state = "busy";
    }
  }

  function clearResults() {
    current = null;
    sentences = [];
    shown = null;
    for (const section of [ui.result, ui.sentencePicker, ui.heatmapSection, ui.alignmentSection]) section.hidden = true;
  }

  /** What the form asks for now: the request it makes, and a key that tells two identical ones apart. */
  function submission() {
    const model = selectedModel();
    // The text goes as typed: the service is the judge of what it accepts, and its answer is shown.
    const body = { text: ui.text.value, beam_size: Number(ui.beam.value) };
    if (model) {
      body.source = model.source_language;
      body.target = model.target_language;
    }
    const withAttention = !model || model.attention !== "none";
    const path = withAttention ? "v1/attention" : "v1/translate";
    const apiKey = ui.apiKey.value.trim();
    return { model, body, withAttention, path, apiKey, key: JSON.stringify([path, body, apiKey]) };
  }

  /** Submit: sends the form now, or, while a request is in flight, once it ends. Only the newest submission
      waits (it replaces an older waiting one), and an answer that a newer submission has made stale is not
      shown, so an older answer never replaces a newer one. */
  function translate(event) {
    event.preventDefault();
    const wanted = submission();
    if (!busy) {
      send(wanted);
      return;
    }
    if (wanted.key === inFlight.key) {
      pending = null; // asked again for what is on its way: its answer will do
      ui.status.textContent = "Translating\u2026";
    } else {
      pending = wanted;
      ui.status.textContent = "Translating\u2026 The new text will be translated when this one is done.";
    }
  }

  async function send(request) {
    inFlight = request;
    setBusy(true);
    hideError();
    const started = performance.now();
    let data = null;
    let failure = null;
    try {
      data = await callApi(request.path, request.body, request.apiKey);
    } catch (err) {
      failure = err;
    }
    const requestMs = Math.round(performance.now() - started);
    if (pending) {
      // A newer text is waiting: this answer is stale, the newer one is sent now.
      const next = pending;
      pending = null;
      send(next);
      return;
    }
    inFlight = null;
    setBusy(false);
    if (failure) {
      clearResults();
      ui.status.textContent = "";
      showError(failure, request.body.text);
      return;
    }
    try {
      const drawStarted = performance.now();
      showAnswer(request, data, requestMs);
      const drawMs = Math.round(performance.now() - drawStarted);
      ui.status.textContent = `Done: the service answered in ${requestMs} ms; drawing took ${drawMs} ms.`;
      document.body.dataset.state = "done";
    } catch (err) {
      clearResults();
      ui.status.textContent = "";
      showError(err, request.body.text);
    }
  }

  function showAnswer(request, data, requestMs) {
    const { model, body } = request;
    clearResults();
    if (request.withAttention) {
      showTranslation(data.translation, data.model, model, body.beam_size, requestMs, data.truncated,
        data.confidence);
      current = data;
      sentences = splitSentences(data);
      showSentencePicker();
      showSentence(0); // the first sentence; the picker shows the others
      ui.moses.textContent = data.moses || "(none)";
    } else {
      const translation = data.translations[0];
      showTranslation(translation.text, data.model, model, body.beam_size, requestMs, translation.truncated,
        translation.confidence);
      ui.modelInfo.textContent += " \u00b7 this model has no attention to show";
    }
  }

  function showTranslation(text, modelRef, model, beamSize, requestMs, truncated, confidence) {
    ui.translation.textContent = text;
    ui.translation.lang = model ? model.target_language : "";
    const search = beamSize > 1 ? `beam search (${beamSize})` : "greedy search";
    // The service stopped a sentence at its length limit while the model would have gone on.
    const cut = truncated ? " \u00b7 cut short at its length limit" : "";
    // The geometric mean of the probabilities of the tokens it wrote (README "Confidence").
    const sure = typeof confidence === "number" ? ` \u00b7 confidence ${confidence.toFixed(2)}` : "";
    ui.modelInfo.textContent =
      `${modelRef.name} v${modelRef.version} \u00b7 ${search}${sure} \u00b7 answered in ${requestMs} ms${cut}`;
    ui.result.hidden = false;
  }

  // ---- heatmap: a table, target tokens as rows, source tokens as columns ---------------------------

  /** The heatmap of one sentence (`block`): data-t and data-s are indices into the whole answer's weights. */
  function renderHeatmap(data, block) {
    const targetIds = range(...block.rows);
    const sourceIds = range(...block.columns);
    const label = (raw) => shortLabel(tokenLabel(raw));
    const caption = html(
      "caption",
      { class: "sr-only" },
      `Attention weights: ${targetIds.length} target tokens as rows, ${sourceIds.length} source tokens as columns.`,
    );
    const head = html("tr");
    const corner = html("th", { scope: "col", class: "corner" });
    corner.append(html("span", { class: "sr-only" }, "Target token / source token"));
    head.append(corner);
    for (const s of sourceIds) {
      const raw = data.source_tokens[s];
      const th = html("th", { scope: "col", class: "col-label", title: tokenName(raw), "data-s": String(s) });
      th.append(html("span", {}, label(raw)));
      head.append(th);
    }
    const body = html("tbody");
    for (const t of targetIds) {
      const raw = data.target_tokens[t];
      const target = label(raw);
      const tr = html("tr");
      tr.append(html("th", { scope: "row", class: "row-label", title: tokenName(raw), "data-t": String(t) }, target));
      for (const s of sourceIds) {
        const weight = data.weights[t][s];
        const td = html("td", {
          class: "cell",
          title: `${target} \u2190 ${label(data.source_tokens[s])}: ${weight.toFixed(3)}`,
          "data-t": String(t),
          "data-s": String(s),
          "data-weight": String(weight),
        });
        td.style.backgroundColor = weightColour(weight);
        td.append(html("span", { class: "sr-only" }, weight.toFixed(2)));
        tr.append(td);
      }
      body.append(tr);
    }
    const thead = html("thead");
    thead.append(head);
    ui.heatmap.replaceChildren(caption, thead, body);
    ui.heatmapReadout.textContent = "\u00a0";
    ui.heatmapSection.hidden = false;
  }

  function onHeatmapHover(event) {
    const cell = event.target.closest("td.cell");
    clearHighlights();
    if (!cell || !current) return;
    const t = Number(cell.dataset.t);
    const s = Number(cell.dataset.s);
    cell.classList.add("hl");
    ui.heatmap.querySelector(`th.row-label[data-t="${t}"]`).classList.add("hl");
    ui.heatmap.querySelector(`th.col-label[data-s="${s}"]`).classList.add("hl");
    const line = ui.alignment.querySelector(`line[data-t="${t}"][data-s="${s}"]`);
    if (line) {
      ui.alignment.classList.add("focusing");
      line.classList.add("hl");
    }
    const weight = current.weights[t][s];
    ui.heatmapReadout.textContent =
      `Writing \u201c${tokenLabel(current.target_tokens[t])}\u201d, the model gave ` +
      `\u201c${tokenLabel(current.source_tokens[s])}\u201d a weight of ${weight.toFixed(3)}.`;
  }

  // ---- alignment: target tokens above, source tokens below, one line per weight --------------------

  let measureContext = null;
  function textWidthPx(text) {
    measureContext = measureContext || document.createElement("canvas").getContext("2d");
    measureContext.font = LABEL_FONT;
    return measureContext.measureText(text).width;
  }

  /** Centres of the row's labels: each gets its own width plus a gap, so labels never overlap;
      a row narrower than `totalPx` spreads out to fill it. */
  function layoutRow(labels, totalPx) {
    const slots = labels.map((label) => Math.max(MIN_SLOT_PX, textWidthPx(label) + LABEL_GAP_PX));
    const natural = slots.reduce((a, b) => a + b, 0);
    const extra = labels.length ? (totalPx - natural) / labels.length : 0;
    const centres = [];
    let x = SIDE_LABELS_PX;
    for (const slot of slots) {
      centres.push(x + (slot + extra) / 2);
      x += slot + extra;
    }
    return { centres, slots: slots.map((slot) => slot + extra), natural };
  }

  /** The alignment of one sentence (`block`); data-t, data-s and data-index index the whole answer. */
  function renderAlignment(data, block) {
    const targetIds = range(...block.rows);
    const sourceIds = range(...block.columns);
    const sources = sourceIds.map((s) => shortLabel(tokenLabel(data.source_tokens[s])));
    const targets = targetIds.map((t) => shortLabel(tokenLabel(data.target_tokens[t])));
    ui.alignmentSection.hidden = false; // shown before measuring: a hidden section is 0 px wide
    const naturalPx = Math.max(layoutRow(sources, 0).natural, layoutRow(targets, 0).natural);
    const availablePx = ui.alignmentSection.clientWidth - SIDE_LABELS_PX - 48;
    const most = Math.max(sources.length, targets.length);
    // Short sentences spread out (but not so far that lines lie flat); long ones keep their natural width.
    const rowPx = Math.max(naturalPx, Math.min(availablePx, most * MAX_SPREAD_SLOT_PX), 200);
    const source = layoutRow(sources, rowPx);
    const target = layoutRow(targets, rowPx);
    const width = Math.ceil(SIDE_LABELS_PX + rowPx + 8);
    const height = ALIGNMENT_HEIGHT_PX;
    const yTargetText = 28;
    const yTop = 42;
    const yBottom = height - 44;
    const ySourceText = height - 20;

    const root = ui.alignment;
    root.replaceChildren();
    root.setAttribute("width", String(width));
    root.setAttribute("height", String(height));
    root.setAttribute("viewBox", `0 0 ${width} ${height}`);
    root.dataset.minWeight = String(MIN_LINE_WEIGHT);
    root.classList.remove("focusing");
    root.append(
      svg("desc", {}, "Lines join each target token (top) to the source tokens (bottom) it attended to."),
      svg("text", { class: "side-label", x: "4", y: String(yTargetText) }, "wrote"),
      svg("text", { class: "side-label", x: "4", y: String(ySourceText) }, "read"),
    );

    const lines = svg("g", { class: "lines" });
    targetIds.forEach((t, i) => {
      sourceIds.forEach((s, j) => {
        const weight = data.weights[t][s];
        if (!(weight >= MIN_LINE_WEIGHT)) return;
        const line = svg("line", {
          x1: target.centres[i].toFixed(1),
          y1: String(yTop),
          x2: source.centres[j].toFixed(1),
          y2: String(yBottom),
          "stroke-width": (0.6 + 7 * weight).toFixed(2),
          "stroke-opacity": (0.12 + 0.88 * weight).toFixed(3),
          "data-t": String(t),
          "data-s": String(s),
        });
        line.style.setProperty("--w", weight.toFixed(3));
        line.append(svg("title", {}, `${targets[i]} \u2190 ${sources[j]}: ${weight.toFixed(3)}`));
        lines.append(line);
      });
    });
    root.append(lines);
    root.append(tokenRow("target", targets, targetIds, data.target_tokens, target, yTargetText));
    root.append(tokenRow("source", sources, sourceIds, data.source_tokens, source, ySourceText));
    ui.alignmentReadout.textContent = "\u00a0";
    pinned = null;
  }

  /** One row of tokens: a toolbar with a single Tab stop (roving tabindex: the row's current token has
      tabindex 0, the others -1; the arrow keys, Home and End move along it). */
  function tokenRow(side, labels, ids, raws, layout, yText) {
    const wrote = side === "target";
    const group = svg("g", {
      class: `tokens ${side}`,
      role: "toolbar",
      "aria-label": wrote ? "Tokens the model wrote" : "Source tokens the model read",
    });
    labels.forEach((label, i) => {
      const token = svg("g", {
        class: "token",
        tabindex: i === 0 ? "0" : "-1",
        role: "button",
        "aria-pressed": "false",
        "data-side": side,
        "data-index": String(ids[i]),
        "aria-label": `${side} token ${i + 1} of ${labels.length}: ${tokenName(raws[ids[i]])}`,
      });
      const centre = layout.centres[i];
      token.append(
        svg("rect", {
          class: "hit",
          x: (centre - layout.slots[i] / 2).toFixed(1),
          y: String(yText - 18),
          width: layout.slots[i].toFixed(1),
          height: "26",
          rx: "4",
        }),
        svg("text", { x: centre.toFixed(1), y: String(yText), "text-anchor": "middle" }, label),
      );
      group.append(token);
    });
    return group;
  }

  /** The row's one Tab stop moves to `token`. */
  function makeTabStop(token) {
    for (const other of token.parentNode.querySelectorAll('.token[tabindex="0"]')) {
      if (other !== token) other.setAttribute("tabindex", "-1");
    }
    token.setAttribute("tabindex", "0");
  }

  function focusToken(side, index) {
    clearHighlights();
    if (!current || !shown) return;
    const root = ui.alignment;
    const ownKey = side === "target" ? "t" : "s";
    const otherKey = side === "target" ? "s" : "t";
    const otherSide = side === "target" ? "source" : "target";
    root.classList.add("focusing");
    root.querySelector(`.token[data-side="${side}"][data-index="${index}"]`).classList.add("active");
    for (const line of root.querySelectorAll(`line[data-${ownKey}="${index}"]`)) {
      line.classList.add("hl");
      const other = root.querySelector(`.token[data-side="${otherSide}"][data-index="${line.dataset[otherKey]}"]`);
      if (other) other.classList.add("linked");
    }
    // The other side's tokens of the same sentence: a sentence attends only over its own.
    const others = side === "target" ? range(...shown.columns) : range(...shown.rows);
    const pairs = others
      .map((j) =>
        side === "target"
          ? [current.source_tokens[j], current.weights[index][j]]
          : [current.target_tokens[j], current.weights[j][index]],
      )
      .sort((a, b) => b[1] - a[1])
      .filter(([, w], rank) => rank === 0 || w >= MIN_LINE_WEIGHT)
      .slice(0, 3)
      .map(([raw, w]) => `\u201c${tokenLabel(raw)}\u201d ${w.toFixed(2)}`);
    const own = tokenLabel(side === "target" ? current.target_tokens[index] : current.source_tokens[index]);
    ui.alignmentReadout.textContent =
      side === "target"
        ? `Writing \u201c${own}\u201d, the model looked most at ${pairs.join(", ")}.`
        : `\u201c${own}\u201d was looked at most while writing ${pairs.join(", ")}.`;
  }

  function clearHighlights() {
    ui.alignment.classList.remove("focusing");
    for (const node of document.querySelectorAll(".hl, .active, .linked")) {
      node.classList.remove("hl", "active", "linked");
    }
  }

  /** Back to the pinned word's highlight, or to none. */
  function restoreHighlights() {
    if (pinned) focusToken(pinned.side, pinned.index);
    else clearHighlights();
  }

  function togglePin(token) {
    const side = token.dataset.side;
    const index = Number(token.dataset.index);
    const same = pinned !== null && pinned.side === side && pinned.index === index;
    for (const node of ui.alignment.querySelectorAll('.token[aria-pressed="true"]')) {
      node.setAttribute("aria-pressed", "false");
    }
    pinned = same ? null : { side, index };
    if (pinned) token.setAttribute("aria-pressed", "true");
    focusToken(side, index); // the pointer or focus is still on it
  }

  function onTokenEvent(event) {
    const token = event.target.closest(".token");
    if (token) focusToken(token.dataset.side, Number(token.dataset.index));
  }

  function onTokenLeave(event) {
    const token = event.target.closest(".token");
    const next = event.relatedTarget && event.relatedTarget.closest ? event.relatedTarget.closest(".token") : null;
    if (token && next !== token) restoreHighlights();
  }

  // ---- wiring ----------------------------------------------------------------------------------------

  ui.form.addEventListener("submit", translate);
  ui.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });
  ui.sentenceSelect.addEventListener("change", () => showSentence(Number(ui.sentenceSelect.value)));
  // aria-disabled at either end, never disabled: a disabled button would drop the keyboard's focus.
  ui.sentencePrevious.addEventListener("click", () => stepSentence(-1));
  ui.sentenceNext.addEventListener("click", () => stepSentence(1));
  ui.heatmap.addEventListener("mouseover", onHeatmapHover);
  ui.heatmap.addEventListener("mouseleave", restoreHighlights);
  ui.alignment.addEventListener("mouseover", onTokenEvent);
  ui.alignment.addEventListener("mouseout", onTokenLeave);
  // Focus listeners sit on the scroll box, not on the <svg>: Chromium makes an SVG element with focus listeners a
  // Tab stop of its own (a purposeless one: the tokens are the stops).
  ui.alignmentScroll.addEventListener("focusin", (event) => {
    const token = event.target.closest(".token");
    if (token) makeTabStop(token);
    onTokenEvent(event);
  });
  ui.alignmentScroll.addEventListener("focusout", onTokenLeave);
  ui.alignment.addEventListener("click", (event) => {
    const token = event.target.closest(".token");
    if (token) togglePin(token);
  });
  ui.alignment.addEventListener("keydown", (event) => {
    const token = event.target.closest(".token");
    if (!token) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      togglePin(token);
      return;
    }
    // Arrow keys, Home and End walk along the row of tokens, so the view works without a mouse.
    const row = [...token.parentNode.querySelectorAll(".token")];
    const at = row.indexOf(token);
    const to = { ArrowLeft: at - 1, ArrowRight: at + 1, Home: 0, End: row.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    const next = row[Math.min(row.length - 1, Math.max(0, to))];
    if (next !== token) next.focus();
  });

  document.body.dataset.state = "loading";
  loadModels().then(() => {
    if (document.body.dataset.state === "loading") document.body.dataset.state = "idle";
  });
})();
