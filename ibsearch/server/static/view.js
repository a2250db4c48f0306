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

function clock(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function mediaUrl(hit) {
  if (hit.start === null || hit.start === undefined) return hit.media;
  return `${hit.media}#t=${hit.start}` + (hit.end !== null ? `,${hit.end}` : "");
}

// The passage of a note that matched: its text, highlighted, and where it lies (a later viewer shows
// it within the whole text).
function passage({ text, char_start: start, char_end: end, page }) {
  const where = `characters ${start}–${end}` + (page !== null && page !== undefined ? `, page ${page}` : "");
  return el("blockquote", { class: "note passage", title: where },
    el("mark", { text }), el("small", { class: "where", text: where }));
}

function visual(hit) {
  const name = hit.path.split("/").pop();
  if (hit.kind === "audio") {
    const player = el("audio", { controls: "", preload: "metadata", src: mediaUrl(hit) });
    return [el("div", { class: "visual" }, el("img", { src: hit.thumbnail, alt: `waveform of ${name}`, loading: "lazy" })), player];
  }
  if (hit.kind === "text" && hit.passage) return [passage(hit.passage)];
  if (hit.kind === "text") {
    const note = el("blockquote", { class: "note", text: "…" });
    fetch(hit.media, { credentials: "same-origin", headers: { Range: "bytes=0-2047" } }).then((r) => (r.ok ? r.text() : "")).then((text) => {
      note.textContent = text.slice(0, 600) || name;
    }).catch(() => { note.textContent = name; });
    return [note];
  }
  const box = el("div", { class: "visual" }, el("img", { src: hit.thumbnail, alt: name, loading: "lazy" }));
  if (hit.kind === "video") {
    box.append(el("button", { type: "button", class: "play", text: hit.start !== null ? `▶ ${clock(hit.start)}` : "▶ play",
      onclick: () => box.replaceChildren(el("video", { controls: "", autoplay: "", src: mediaUrl(hit) })) }));
  } else {
    box.firstChild.addEventListener("click", () => window.open(hit.media, "_blank", "noopener"));
  }
  return [box];
}

function facts(hit) {
  const meta = hit.metadata || {};
  const parts = [];
  if (hit.kind === "video") parts.push(hit.modality === "audio" ? "its sound" : "its picture");
  if (meta.width && meta.height) parts.push(`${meta.width}×${meta.height}`);
  if (typeof meta.duration === "number") parts.push(`${meta.duration.toFixed(1)} s`);
  return parts.join(" · ");
}

function card(hit, moreLike) {
  const slash = hit.path.lastIndexOf("/");
  const folder = hit.path.slice(0, slash + 1);
  const span = hit.start !== null ? el("span", { class: "span", text: `${clock(hit.start)}–${clock(hit.end ?? hit.start)}` }) : "";
  return el("article", { class: `hit kind-${hit.kind}`, "data-id": String(hit.id), "data-path": hit.path },
    ...visual(hit),
    el("div", { class: "info" },
      el("div", { class: "line" }, el("span", { class: "score", text: hit.score.toFixed(3) }), span,
        el("span", { class: "facts", text: facts(hit) })),
      el("div", { class: "name", title: hit.path, text: hit.path.slice(slash + 1) }),
      el("div", { class: "path", title: hit.path, text: folder.length > 40 ? "…" + folder.slice(-39) : folder }),
      el("button", { type: "button", class: "like", text: "More like this",
        onclick: () => moreLike(hit) })));
}

export function drawResults(results, moreLike) {
  $("results").replaceChildren(...results.map((hit) => card(hit, moreLike)));
}
