/* The page's behaviour: fill the language pairs from GET v1/models, call POST v1/attention, show the
   translation, the heatmap (a table) and the alignment (an SVG of weighted lines), and API errors in words.
   Plain browser JavaScript: no framework, no build step, no request beyond this service (relative URLs). */
"use strict";

(function () {
  const WORD_START = "\u2581"; // SentencePiece's word-start mark
  const SPECIAL_TOKENS = new Set(["</s>", "<s>", "<unk>", "<pad>"]);
  const MAX_LABEL_CHARS = 24;
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
  };
  let models = []; // GET v1/models .models
  let current = null; // the last attention response, for the hover read-outs
  let busy = false;
  let pinned = null; // {side, index}: a clicked word keeps its lines highlighted until clicked again

  // ---- tokens and colours ------------------------------------------------------------------------

  function tokenLabel(piece) {
    if (SPECIAL_TOKENS.has(piece)) return piece;
    if (piece.startsWith(WORD_START)) return piece.slice(WORD_START.length) || "\u2423";
    return "\u00b7" + piece; // a piece glued to the previous one
  }

  function shortLabel(label) {
    return label.length <= MAX_LABEL_CHARS ? label : label.slice(0, MAX_LABEL_CHARS - 1) + "\u2026";
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
  async function callApi(path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const key = ui.apiKey.value.trim();
    if (key) headers["X-API-Key"] = key;
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

  function setBusy(value) {
    busy = value;
    ui.button.disabled = value;
    ui.form.setAttribute("aria-busy", String(value));
    if (value) {
      ui.status.textContent = "Translating\u2026";
      document.body.dataset.state = "busy";
    }
  }

  function clearResults() {
    current = null;
    for (const section of [ui.result, ui.heatmapSection, ui.alignmentSection]) section.hidden = true;
  }

  async function translate(event) {
    event.preventDefault();
    if (busy) return;
    const model = selectedModel();
    // The text goes as typed: the service is the judge of what it accepts, and its answer is shown.
    const body = { text: ui.text.value, beam_size: Number(ui.beam.value) };
    if (model) {
      body.source = model.source_language;
      body.target = model.target_language;
    }
    const withAttention = !model || model.attention !== "none";
    setBusy(true);
    hideError();
    const started = performance.now();
    try {
      const data = await callApi(withAttention ? "v1/attention" : "v1/translate", body);
      const elapsedMs = Math.round(performance.now() - started);
      if (withAttention) {
        showTranslation(data.translation, data.model, model, body.beam_size, elapsedMs, data.truncated);
        current = data;
        renderHeatmap(data);
        renderAlignment(data);
        ui.moses.textContent = data.moses || "(none)";
      } else {
        clearResults();
        const translation = data.translations[0];
        showTranslation(translation.text, data.model, model, body.beam_size, elapsedMs, translation.truncated);
        ui.modelInfo.textContent += " \u00b7 this model has no attention to show";
      }
      ui.status.textContent = `Done in ${elapsedMs} ms.`;
      document.body.dataset.state = "done";
    } catch (err) {
      clearResults();
      ui.status.textContent = "";
      showError(err, body.text);
    } finally {
      setBusy(false);
    }
  }

  function showTranslation(text, modelRef, model, beamSize, elapsedMs, truncated) {
    ui.translation.textContent = text;
    ui.translation.lang = model ? model.target_language : "";
    const search = beamSize > 1 ? `beam search (${beamSize})` : "greedy search";
    // The service stopped a sentence at its length limit while the model would have gone on.
    const cut = truncated ? " \u00b7 cut short at its length limit" : "";
    ui.modelInfo.textContent = `${modelRef.name} v${modelRef.version} \u00b7 ${search} \u00b7 ${elapsedMs} ms${cut}`;
    ui.result.hidden = false;
  }

  // ---- heatmap: a table, target tokens as rows, source tokens as columns ---------------------------

  function renderHeatmap(data) {
    const sources = data.source_tokens.map((raw) => shortLabel(tokenLabel(raw)));
    const targets = data.target_tokens.map((raw) => shortLabel(tokenLabel(raw)));
    const caption = html(
      "caption",
      { class: "sr-only" },
      `Attention weights: ${targets.length} target tokens as rows, ${sources.length} source tokens as columns.`,
    );
    const head = html("tr");
    const corner = html("th", { scope: "col", class: "corner" });
    corner.append(html("span", { class: "sr-only" }, "Target token / source token"));
    head.append(corner);
    data.source_tokens.forEach((raw, s) => {
      const th = html("th", { scope: "col", class: "col-label", title: raw, "data-s": String(s) });
      th.append(html("span", {}, sources[s]));
      head.append(th);
    });
    const body = html("tbody");
    data.weights.forEach((row, t) => {
      const tr = html("tr");
      tr.append(
        html("th", { scope: "row", class: "row-label", title: data.target_tokens[t], "data-t": String(t) }, targets[t]),
      );
      row.forEach((weight, s) => {
        const td = html("td", {
          class: "cell",
          title: `${targets[t]} \u2190 ${sources[s]}: ${weight.toFixed(3)}`,
          "data-t": String(t),
          "data-s": String(s),
          "data-weight": String(weight),
        });
        td.style.backgroundColor = weightColour(weight);
        td.append(html("span", { class: "sr-only" }, weight.toFixed(2)));
        tr.append(td);
      });
      body.append(tr);
    });
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

  function renderAlignment(data) {
    const sources = data.source_tokens.map((raw) => shortLabel(tokenLabel(raw)));
    const targets = data.target_tokens.map((raw) => shortLabel(tokenLabel(raw)));
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
    data.weights.forEach((row, t) => {
      row.forEach((weight, s) => {
        if (!(weight >= MIN_LINE_WEIGHT)) return;
        const line = svg("line", {
          x1: target.centres[t].toFixed(1),
          y1: String(yTop),
          x2: source.centres[s].toFixed(1),
          y2: String(yBottom),
          "stroke-width": (0.6 + 7 * weight).toFixed(2),
          "stroke-opacity": (0.12 + 0.88 * weight).toFixed(3),
          "data-t": String(t),
          "data-s": String(s),
        });
        line.style.setProperty("--w", weight.toFixed(3));
        line.append(svg("title", {}, `${targets[t]} \u2190 ${sources[s]}: ${weight.toFixed(3)}`));
        lines.append(line);
      });
    });
    root.append(lines);
    root.append(tokenRow("target", targets, data.target_tokens, target, yTargetText));
    root.append(tokenRow("source", sources, data.source_tokens, source, ySourceText));
    ui.alignmentReadout.textContent = "\u00a0";
    pinned = null;
  }

  function tokenRow(side, labels, raws, layout, yText) {
    const group = svg("g", { class: `tokens ${side}` });
    labels.forEach((label, i) => {
      const token = svg("g", {
        class: "token",
        tabindex: "0",
        role: "button",
        "aria-pressed": "false",
        "data-side": side,
        "data-index": String(i),
        "aria-label": `${side} token ${i + 1} of ${labels.length}: ${raws[i]}`,
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

  function focusToken(side, index) {
    clearHighlights();
    if (!current) return;
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
    const tokens = side === "target" ? current.source_tokens : current.target_tokens;
    const pairs = tokens
      .map((raw, j) => [raw, side === "target" ? current.weights[index][j] : current.weights[j][index]])
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
  ui.heatmap.addEventListener("mouseover", onHeatmapHover);
  ui.heatmap.addEventListener("mouseleave", restoreHighlights);
  ui.alignment.addEventListener("mouseover", onTokenEvent);
  ui.alignment.addEventListener("mouseout", onTokenLeave);
  ui.alignment.addEventListener("focusin", onTokenEvent);
  ui.alignment.addEventListener("focusout", onTokenLeave);
  ui.alignment.addEventListener("click", (event) => {
    const token = event.target.closest(".token");
    if (token) togglePin(token);
  });
  ui.alignment.addEventListener("keydown", (event) => {
    const token = event.target.closest(".token");
    if (token && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      togglePin(token);
      return;
    }
    // Arrow keys walk along a row of tokens, so the view works without a mouse.
    if (!token || (event.key !== "ArrowLeft" && event.key !== "ArrowRight")) return;
    const step = event.key === "ArrowLeft" ? -1 : 1;
    const next = ui.alignment.querySelector(
      `.token[data-side="${token.dataset.side}"][data-index="${Number(token.dataset.index) + step}"]`,
    );
    if (next) {
      event.preventDefault();
      next.focus();
    }
  });

  document.body.dataset.state = "loading";
  loadModels().then(() => {
    if (document.body.dataset.state === "loading") document.body.dataset.state = "idle";
  });
})();
