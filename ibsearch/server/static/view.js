// What the page shows: the status line, the target chips, the terms, the file choices and the results.

export const $ = (id) => document.getElementById(id);
const LABELS = { vision: "images & video", audio: "sounds", text: "notes", depth: "depth", thermal: "thermal", imu: "motion" };
export const ORDER = ["vision", "text", "audio", "depth", "thermal", "imu"];

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

export function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

export function explain(error) {
  if (error.status === 401) return "This server needs a token: open the sign-in link that 'ibsearch serve' printed.";
  if (error.status === 413) return `That file is too large for this server: ${error.message}.`;
  if (error.status === 422) return `That query cannot be used: ${error.message}`;
  return error.message;
}

export function drawTargets(present, targets, toggle) {
  $("targets").replaceChildren(...present.map((modality) => el("button", {
    type: "button", class: "chip", "data-modality": modality,
    "aria-pressed": String(!targets.size || targets.has(modality)),
    text: LABELS[modality] || modality,
    onclick: () => toggle(modality),
  })));
}

// The choice of what a file is: guessed from its type, or one of the API's upload inputs.
export function drawChoices(uploads) {
  $("as").replaceChildren(el("option", { value: "", text: "any file" }),
    ...uploads.map((input) => el("option", { value: input.name, text: input.label })));
}

export function drawTerms(terms, { changed, removed }) {
  $("terms").replaceChildren(...terms.map((term, index) => {
    const output = el("output", { text: term.weight.toFixed(2) });
    const slider = el("input", { type: "range", min: "-2", max: "2", step: "0.25", value: String(term.weight),
      "aria-label": `weight of ${term.label}` });
    slider.addEventListener("input", () => {
      term.weight = Number(slider.value);
      output.textContent = term.weight ? term.weight.toFixed(2) : "off";
      output.classList.toggle("negative", term.weight < 0);
    });
    slider.addEventListener("change", changed);
    output.classList.toggle("negative", term.weight < 0);
    return el("li", { class: "term", "data-kind": term.kind },
      el("span", { class: "kind", text: term.kind }),
      el("span", { class: "what", title: term.label, text: term.label }),
      slider, output,
      el("button", { type: "button", class: "remove", title: "Remove this term", text: "×",
        onclick: () => removed(index) }));
  }));
}

// A time as m:ss, or m:ss.s for spans shorter than a few seconds (a 0.3 s sound is not "0:00–0:00").
export function clock(seconds, tenths = false) {
  const value = Math.max(0, seconds);
  const whole = tenths ? Math.floor(value) : Math.round(value);
  const rest = tenths ? `.${Math.floor((value - whole) * 10 + 1e-6)}` : "";
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}${rest}`;
}

export function spanText(start, end) {
  const stop = end ?? start;
  const fine = stop - start < 3 && [start, stop].some((t) => Math.abs(t - Math.round(t)) >= 0.05);
  return `${clock(start, fine)}–${clock(stop, fine)}`;
}

export function mediaUrl(hit) {
  if (hit.start === null || hit.start === undefined) return hit.media;
  return `${hit.media}#t=${hit.start}` + (hit.end !== null ? `,${hit.end}` : "");
}

// Where a hit is in the URL (view=...): its item, and which of its moments or passages matched.
export function hitKey(hit) {
  if (hit.start !== null && hit.start !== undefined) return `${hit.id}@${hit.start}`;
  return hit.passage ? `${hit.id}@p${hit.passage.char_start}` : String(hit.id);
}

// The passage of a note that matched: its text, highlighted, and where it lies (the viewer shows it
// within the whole text).
function passage({ text, char_start: start, char_end: end, page }) {
  const where = `characters ${start}–${end}` + (page !== null && page !== undefined ? `, page ${page}` : "");
  return el("blockquote", { class: "note passage", title: where },
    el("mark", { text }), el("small", { class: "where", text: where }));
}

// The beginning of a note, read from the file itself.
export function noteText(hit, bytes = 2047) {
  return fetch(hit.media, { credentials: "same-origin", headers: { Range: `bytes=0-${bytes}` } })
    .then((r) => (r.ok ? r.text() : "")).catch(() => "");
}

function visual(hit, open) {
  const name = hit.path.split("/").pop();
  const picture = (alt) => el("img", { src: hit.thumbnail, alt, loading: "lazy", onclick: open });
  if (hit.kind === "audio") {
    const player = el("audio", { controls: "", preload: "metadata", src: mediaUrl(hit) });
    return [el("div", { class: "visual" }, picture(`waveform of ${name}`)), player];
  }
  if (hit.kind === "text" && hit.passage) return [passage(hit.passage)];
  if (hit.kind === "text") {
    const note = el("blockquote", { class: "note", text: "…" });
    noteText(hit).then((text) => { note.textContent = text.slice(0, 600) || name; });
    return [note];
  }
  const box = el("div", { class: "visual" }, picture(name));
  if (hit.kind === "video") {
    box.append(el("button", { type: "button", class: "play", text: hit.start !== null ? `▶ ${clock(hit.start)}` : "▶ play",
      onclick: () => box.replaceChildren(el("video", { controls: "", autoplay: "", src: mediaUrl(hit) })) }));
  }
  return [box];
}

export function facts(hit) {
  const meta = hit.metadata || {};
  const parts = [];
  if (hit.kind === "video") parts.push(hit.modality === "audio" ? "its sound" : "its picture");
  if (meta.width && meta.height) parts.push(`${meta.width}×${meta.height}`);
  if (typeof meta.duration === "number") parts.push(clock(meta.duration, meta.duration < 10));
  return parts.join(" · ");
}

// How good a hit is, as a person reads it: the calibrated level and relevance when the server gives
// them, else only the rank (a raw cosine such as -0.036 means nothing to a reader; it stays in the
// tooltip).
export function relevance(hit, rank) {
  const level = hit.level ? `${hit.level} match` : "";
  const percent = typeof hit.relevance === "number" ? `${Math.round(hit.relevance * 100)}%` : "";
  const text = [level, percent].filter(Boolean).join(" · ") || `#${rank + 1}`;
  return el("span", { class: `score${hit.level ? ` level-${hit.level}` : ""}`, text,
    title: `#${rank + 1}, similarity ${hit.score.toFixed(3)}` + (hit.sources && hit.sources.length ? `, found by ${hit.sources.join(" and ")}` : "") });
}

// The near-duplicates folded into a hit: "and N similar", opened to their names (links to their
// files, the full path in the tooltip) and their moments.
function similar(hit) {
  const folded = Array.isArray(hit.similar) ? hit.similar : [];
  const count = Array.isArray(hit.similar) ? folded.length : hit.similar;
  if (!count) return "";
  if (!folded.length) return el("span", { class: "similar", text: `and ${count} similar` });
  return el("details", { class: "similar" }, el("summary", { text: `and ${count} similar` }),
    el("ul", {}, ...folded.map((other) => el("li", {},
      el("a", { href: other.media, target: "_blank", rel: "noopener", title: other.path, text: other.path.split("/").pop() }),
      other.start !== null && other.start !== undefined ? ` ${spanText(other.start, other.end)}` : ""))));
}

// Another moment of a file already shown: a small picture of it (its frame, or its span on the
// waveform) and its span, in that file's card; it opens in the viewer.
function moment(hit, rank, { open } = {}) {
  const span = spanText(hit.start, hit.end);
  return el("button", { type: "button", class: "moment", title: `${relevance(hit, rank).textContent}: open ${span}`,
    onclick: () => open && open(hit) }, el("img", { src: hit.thumbnail, alt: "", loading: "lazy" }), el("span", { text: span }));
}

// The address of the page with a hit open in the viewer (a link that can be opened elsewhere).
function viewHref(hit) {
  const params = new URLSearchParams(location.search);
  params.set("view", hitKey(hit));
  return `?${params}`;
}

export function card(hit, rank, { moreLike, open } = {}) {
  const slash = hit.path.lastIndexOf("/");
  const folder = hit.path.slice(0, slash + 1);
  const span = hit.start !== null && hit.start !== undefined ? el("span", { class: "span", text: spanText(hit.start, hit.end) }) : "";
  const show = (event) => { event.preventDefault(); if (open) open(hit); };
  return el("article", { class: `hit kind-${hit.kind}`, "data-id": String(hit.id), "data-path": hit.path, "data-level": hit.level || "" },
    ...visual(hit, show),
    el("div", { class: "info" },
      el("div", { class: "line" }, relevance(hit, rank), span, el("span", { class: "facts", text: facts(hit) })),
      el("a", { class: "name open", href: viewHref(hit), title: `${hit.path} (open in the viewer)`,
        text: hit.path.slice(slash + 1), onclick: show }),
      el("div", { class: "path", title: hit.path, text: folder.length > 40 ? "…" + folder.slice(-39) : folder }),
      el("div", { class: "moments", "aria-label": "Other moments of this file" }),
      el("div", { class: "line" }, similar(hit),
        el("button", { type: "button", class: "like", text: "More like this", onclick: () => moreLike && moreLike(hit) }))));
}

// The hits as cards: all anew, or (from) appended after those shown. A later moment of a file
// already shown joins that file's card (several moments of one file: one card).
export function drawResults(results, handlers, from = 0) {
  const grid = $("results");
  if (!from) grid.replaceChildren();
  results.forEach((hit, index) => {
    const timed = hit.start !== null && hit.start !== undefined;
    const home = timed ? grid.querySelector(`article.hit[data-id="${Number(hit.id)}"] .moments`) : null;
    if (home) home.append(moment(hit, from + index, handlers));
    else grid.append(card(hit, from + index, handlers));
  });
}
