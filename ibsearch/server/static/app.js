// The ibsearch page: everything it shows comes from the JSON API (/api/info, /api/search, /api/items).
// No build step, no library, no network beyond this server: it works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const LABELS = { vision: "images & video", audio: "sounds", text: "notes", depth: "depth", thermal: "thermal", imu: "motion" };
const FILE_KINDS = ["image", "audio", "video"];
const ORDER = ["vision", "text", "audio", "depth", "thermal", "imu"];

const state = {
  terms: [],          // {kind: "text"|"like"|"image"|"audio"|"video", value, weight, label, file?}
  present: [],        // modalities the library holds
  targets: new Set(), // modalities to search (empty: all present)
  ready: null,        // resolves once the library's info is known
};

function el(tag, attrs = {}, ...children) {
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

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || `the server answered ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return { body, response };
}

// ------------------------------------------------------------------ sign-in and library facts

async function signIn() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return;
  history.replaceState(history.state, "", location.pathname + location.search);
  try {
    await api("/-/sign-in", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: decodeURIComponent(match[1]) }) });
  } catch (error) {
    say(`Sign-in failed: ${error.message}`, true);
  }
}

async function loadInfo() {
  const { body } = await api("/api/info");
  state.present = ORDER.filter((modality) => body.vectors[modality]);
  drawTargets();
  if (!body.files) say("This library is empty: add files with 'ibsearch ingest PATH', then reload this page.");
  return body;
}

function drawTargets() {
  const box = $("targets");
  box.replaceChildren(...state.present.map((modality) => el("button", {
    type: "button", class: "chip", "data-modality": modality,
    "aria-pressed": String(!state.targets.size || state.targets.has(modality)),
    text: LABELS[modality] || modality,
    onclick: () => toggleTarget(modality),
  })));
}

function toggleTarget(modality) {
  const chosen = state.targets.size ? new Set(state.targets) : new Set(state.present);
  if (chosen.has(modality)) chosen.delete(modality); else chosen.add(modality);
  state.targets = chosen.size === state.present.length ? new Set() : chosen;
  drawTargets();
  if (hasQuery()) search();
}

// ------------------------------------------------------------------ terms

function addTerm(term) {
  state.terms.push({ weight: 1, ...term });
  drawTerms();
}

function drawTerms() {
  $("terms").replaceChildren(...state.terms.map((term, index) => {
    const output = el("output", { text: term.weight.toFixed(2) });
    const slider = el("input", { type: "range", min: "-2", max: "2", step: "0.25", value: String(term.weight),
      "aria-label": `weight of ${term.label}` });
    slider.addEventListener("input", () => {
      term.weight = Number(slider.value);
      output.textContent = term.weight ? term.weight.toFixed(2) : "off";
      output.classList.toggle("negative", term.weight < 0);
    });
    slider.addEventListener("change", () => hasQuery() && search());
    output.classList.toggle("negative", term.weight < 0);
    return el("li", { class: "term", "data-kind": term.kind },
      el("span", { class: "kind", text: term.kind === "like" ? "like" : term.kind }),
      el("span", { class: "what", title: term.label, text: term.label }),
      slider, output,
      el("button", { type: "button", class: "remove", title: "Remove this term", text: "×",
        onclick: () => { state.terms.splice(index, 1); drawTerms(); if (hasQuery()) search(); } }));
  }));
}

function fileKind(file) {
  const family = (file.type || "").split("/")[0];
  if (FILE_KINDS.includes(family)) return family;
  const ext = (file.name.split(".").pop() || "").toLowerCase();
  if (["jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "avif"].includes(ext)) return "image";
  if (["wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "aiff"].includes(ext)) return "audio";
  if (["mp4", "mov", "m4v", "mkv", "webm", "avi"].includes(ext)) return "video";
  return null;
}

function addFiles(files) {
  let added = 0;
  for (const file of files) {
    const kind = fileKind(file);
    if (!kind) { say(`${file.name}: not an image, a sound or a video`, true); continue; }
    addTerm({ kind, value: file, label: file.name, file });
    added += 1;
  }
  if (added) search();
}

function hasQuery() {
  return $("q").value.trim() !== "" || state.terms.some((t) => t.weight !== 0);
}

// ------------------------------------------------------------------ the query and the URL

function queryParams() {
  const params = new URLSearchParams();
  const text = $("q").value.trim();
  if (text) params.append("q", text);
  for (const term of state.terms) {
    if (term.kind === "text" || term.kind === "like") params.append(term.kind, `${term.weight}=${term.value}`);
  }
  for (const target of state.targets) params.append("target", target);
  for (const [name, id] of [["prefix", "prefix"], ["min", "min"], ["max", "max"]]) {
    if ($(id).value.trim()) params.set(name, $(id).value.trim());
  }
  if ($("segments").checked) params.set("segments", "1");
  if ($("k").value && $("k").value !== "24") params.set("k", $("k").value);
  return params;
}

function restore(params) {
  $("q").value = params.get("q") || "";
  state.terms = state.terms.filter((t) => t.file);  // uploads stay: a link cannot carry them
  for (const kind of ["text", "like"]) {
    for (const raw of params.getAll(kind)) {
      const match = raw.match(/^(-?[\d.]+)=(.*)$/s);
      const weight = match ? Number(match[1]) : 1;
      const value = match ? match[2] : raw;
      state.terms.push({ kind, value, weight, label: kind === "like" ? `item ${value}` : value });
    }
  }
  state.terms.filter((t) => t.kind === "like").forEach(labelLike);
  state.targets = new Set(params.getAll("target"));
  $("prefix").value = params.get("prefix") || "";
  $("min").value = params.get("min") || "";
  $("max").value = params.get("max") || "";
  $("segments").checked = params.get("segments") === "1";
  $("k").value = params.get("k") || "24";
  if ($("prefix").value || $("min").value || $("max").value || $("segments").checked) $("filters").open = true;
  drawTerms();
  drawTargets();
}

async function labelLike(term) {
  try {
    const { body } = await api(`/api/items/${encodeURIComponent(term.value)}`);
    term.label = body.path.split("/").pop();
    drawTerms();
  } catch (_) { /* the search reports an unknown item */ }
}

function requestBody() {
  const text = $("q").value.trim();
  const terms = state.terms.filter((t) => t.weight !== 0);
  const fields = {
    text: (text ? [text] : []).concat(terms.filter((t) => t.kind === "text").map((t) => `${t.weight}=${t.value}`)),
    like: terms.filter((t) => t.kind === "like").map((t) => `${t.weight}=${t.value}`),
    target: [...state.targets],
    k: Number($("k").value) || 24,
    segments: $("segments").checked,
  };
  if ($("prefix").value.trim()) fields.path_prefix = $("prefix").value.trim();
  if ($("min").value) fields.min_duration = Number($("min").value);
  if ($("max").value) fields.max_duration = Number($("max").value);
  const files = terms.filter((t) => t.file);
  if (!files.length) return { headers: { "Content-Type": "application/json" }, body: JSON.stringify(fields) };
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    for (const item of Array.isArray(value) ? value : [value]) form.append(name, String(item));
  }
  for (const term of files) {
    form.append(term.kind, term.file, term.file.name);
    form.append(`${term.kind}_weight`, String(term.weight));
  }
  return { body: form };
}

let running = 0;

async function search({ push = true } = {}) {
  if (!hasQuery()) { say("Type something, or drop a file, to search."); return; }
  const params = queryParams();
  const url = `${location.pathname}?${params}`;
  if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
  const mine = ++running;
  say("Searching…");
  try {
    await state.ready;
    const started = performance.now();
    const { body, response } = await api("/api/search", { method: "POST", ...requestBody() });
    if (mine !== running) return;
    draw(body.results);
    const timing = response.headers.get("Server-Timing") || "";
    const took = Math.round(performance.now() - started);
    say(body.results.length ? `${body.results.length} results in ${took} ms` + (timing ? ` (${timing.replace(/;dur=/g, " ")} ms)` : "")
      : "No results. Try other words, fewer filters, or more of the kinds above.");
  } catch (error) {
    if (mine !== running) return;
    $("results").replaceChildren();
    say(explain(error), true);
  }
}

function explain(error) {
  if (error.status === 401) return "This server needs a token: open the sign-in link that 'ibsearch serve' printed.";
  if (error.status === 413) return `That file is too large for this server: ${error.message}.`;
  if (error.status === 422) return `That query cannot be used: ${error.message}`;
  return error.message;
}

// ------------------------------------------------------------------ results

function clock(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function mediaUrl(hit) {
  if (hit.start === null || hit.start === undefined) return hit.media;
  return `${hit.media}#t=${hit.start}` + (hit.end !== null ? `,${hit.end}` : "");
}

function visual(hit) {
  const name = hit.path.split("/").pop();
  if (hit.kind === "audio") {
    const player = el("audio", { controls: "", preload: "metadata", src: mediaUrl(hit) });
    return [el("div", { class: "visual" }, el("img", { src: hit.thumbnail, alt: `waveform of ${name}`, loading: "lazy" })), player];
  }
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

function card(hit) {
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

function draw(results) {
  $("results").replaceChildren(...results.map(card));
}

function moreLike(hit) {
  $("q").value = "";
  state.terms = [{ kind: "like", value: String(hit.id), weight: 1, label: hit.path.split("/").pop() }];
  drawTerms();
  window.scrollTo(0, 0);
  search();
}

// ------------------------------------------------------------------ wiring

function wire() {
  $("query").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("add").addEventListener("click", () => {
    const text = $("q").value.trim();
    if (!text) return;
    addTerm({ kind: "text", value: text, label: text });
    $("q").value = "";
    $("q").focus();
  });
  $("file").addEventListener("change", () => { addFiles($("file").files); $("file").value = ""; });
  for (const id of ["segments", "prefix", "min", "max", "k"]) $(id).addEventListener("change", () => hasQuery() && search());
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
    if (event.key === "/" && !typing) { event.preventDefault(); $("q").focus(); $("q").select(); }
  });
  let depth = 0;
  document.addEventListener("dragenter", (event) => { event.preventDefault(); depth += 1; $("drop").hidden = false; });
  document.addEventListener("dragleave", () => { depth -= 1; if (depth <= 0) { depth = 0; $("drop").hidden = true; } });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    $("drop").hidden = true;
    addFiles(event.dataTransfer.files);
  });
  window.addEventListener("popstate", () => { restore(new URLSearchParams(location.search)); search({ push: false }); });
}

async function start() {
  wire();
  await signIn();
  restore(new URLSearchParams(location.search));
  state.ready = loadInfo().catch((error) => say(explain(error), true));
  await state.ready;
  if (hasQuery()) search({ push: false });
  else $("q").focus();
}

start();
