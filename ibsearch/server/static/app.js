// The ibsearch page: everything it shows comes from the JSON API (/api/inputs, /api/info,
// /api/search, /api/items). No build step, no library, no network beyond this server: it works
// offline. Its ES modules: state.js (the query), api.js (the calls), view.js (what is shown), and
// this one, which wires them to the page.
import * as api from "./api.js";
import { photograph, record } from "./capture.js";
import { FIELDS, fromParams, hasQuery, inputGiven, state, toParams, toRequest, uploads } from "./state.js";
import { $, ORDER, drawChoices, drawResults, drawTargets, drawTerms, explain, say } from "./view.js";
import * as viewer from "./viewer.js";

const TYPED = { image: ["jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "avif"],
  audio: ["wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "aiff"], video: ["mp4", "mov", "m4v", "mkv", "webm", "avi"] };

function redrawTargets() {
  drawTargets(state.present, state.targets, toggleTarget);
}

function redrawTerms() {
  drawTerms(state.terms, {
    changed: () => hasQuery() && search(),
    removed: (index) => { state.terms.splice(index, 1); redrawTerms(); if (hasQuery()) search(); },
  });
}

function toggleTarget(modality) {
  const chosen = state.targets.size ? new Set(state.targets) : new Set(state.present);
  if (chosen.has(modality)) chosen.delete(modality); else chosen.add(modality);
  state.targets = chosen.size === state.present.length ? new Set() : chosen;
  redrawTargets();
  if (hasQuery()) search();
}

function addTerm(term) {
  state.terms.push({ weight: 1, ...term });
  redrawTerms();
}

// The upload input a file is given as: the one chosen beside the file button, else the one of the
// file's type (an image, a sound or a video).
function fileInput(file) {
  if ($("as").value) return uploads().find((input) => input.name === $("as").value);
  let media = (file.type || "").split("/")[0];
  if (!TYPED[media]) {
    const ext = (file.name.split(".").pop() || "").toLowerCase();
    media = Object.keys(TYPED).find((kind) => TYPED[kind].includes(ext));
  }
  return uploads().find((input) => input.media === media);
}

function addFiles(files) {
  let added = 0;
  for (const file of files) {
    const input = fileInput(file);
    if (!input) { say(`${file.name}: not an image, a sound or a video (choose what it is beside File…)`, true); continue; }
    addTerm({ kind: input.name, value: file, label: file.name, file });
    added += 1;
  }
  if (added) search();
}

const plural = (count) => `${count} result${count === 1 ? "" : "s"}`;
const handlers = { moreLike: (hit) => moreLike(hit), open: (hit) => viewer.open(state.hits, state.hits.indexOf(hit)) };

// A search, or (more) its next page: the hits after those shown, appended.
async function search({ push = true, more = false } = {}) {
  if (!hasQuery()) { say("Type something, or drop a file, to search."); return; }
  if (!more) {
    viewer.close();
    const url = `${location.pathname}?${toParams()}`;
    if (push && url !== location.pathname + location.search) history.pushState(null, "", url);
  }
  say(more ? "Looking for more…" : "Searching…");
  try {
    await state.ready;
    const started = performance.now();
    const from = more ? state.hits.length : 0;
    const answer = await api.search(toRequest(from));
    if (!answer) return;  // a newer search cancelled this one
    const { body, response } = answer;
    state.hits = (more ? state.hits : []).concat(body.results);
    state.searchId = body.search_id || (more ? state.searchId : null);
    state.more = body.results.length >= Number($("k").value || 24);
    drawResults(body.results, handlers, from);
    $("more").hidden = !state.more;
    const timing = response.headers.get("Server-Timing") || "";
    const took = Math.round(performance.now() - started);
    say(state.hits.length ? `${plural(state.hits.length)} in ${took} ms` + (timing ? ` (${timing.replace(/;dur=/g, " ")} ms)` : "")
      : "No results. Try other words, fewer filters, or more of the kinds above.");
  } catch (error) {
    if (!more) { $("results").replaceChildren(); state.hits = []; $("more").hidden = true; }
    say(explain(error), true);
  }
}

function moreLike(hit) {
  $("q").value = "";
  state.terms = [{ kind: inputGiven("stored").name, value: String(hit.id), weight: 1, label: hit.path.split("/").pop() }];
  redrawTerms();
  window.scrollTo(0, 0);
  search();
}

async function labelStored(term) {
  try {
    term.label = (await api.item(term.value)).path.split("/").pop();
    redrawTerms();
  } catch (_) { /* the search reports an unknown item */ }
}

function restore(params) {
  fromParams(params);
  const stored = inputGiven("stored");
  state.terms.filter((t) => stored && t.kind === stored.name && !t.file).forEach(labelStored);
  redrawTerms();
  redrawTargets();
}

async function loadInfo() {
  const body = await api.info();
  state.present = ORDER.filter((modality) => body.vectors[modality]);
  redrawTargets();
  if (!body.files) say("This library is empty: add files with 'ibsearch ingest PATH', then reload this page.");
  return body;
}

async function signIn() {
  const match = location.hash.match(/^#token=(.+)$/);
  if (!match) return;
  history.replaceState(history.state, "", location.pathname + location.search);
  try {
    await api.signIn(decodeURIComponent(match[1]));
  } catch (error) {
    say(`Sign-in failed: ${error.message}`, true);
  }
}

function wire() {
  $("query").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("add").addEventListener("click", () => {
    const text = $("q").value.trim();
    if (!text) return;
    addTerm({ kind: inputGiven("text").name, value: text, label: text });
    $("q").value = "";
    $("q").focus();
  });
  $("file").addEventListener("change", () => { addFiles($("file").files); $("file").value = ""; });
  $("as").addEventListener("change", () => { $("file").accept = $("as").value ? "" : "image/*,audio/*,video/*"; });
  for (const field of FIELDS) $(field.id).addEventListener("change", () => hasQuery() && search());
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
  $("more").addEventListener("click", () => search({ more: true }));
  const captured = (media) => (file) => {
    addTerm({ kind: uploads().find((input) => input.media === media).name, value: file, label: file.name, file });
    search();
  };
  $("mic").addEventListener("click", () => record($("mic"), { done: captured("audio"), say }));
  $("camera").addEventListener("click", () => photograph({ done: captured("image"), say }));
  viewer.wireViewer(moreLike);
}

async function start() {
  wire();
  await signIn();
  try {
    state.inputs = await api.inputs();
    drawChoices(uploads());
  } catch (error) {
    say(explain(error), true);
  }
  restore(new URLSearchParams(location.search));
  state.ready = loadInfo().catch((error) => say(explain(error), true));
  await state.ready;
  const view = new URLSearchParams(location.search).get("view");
  if (hasQuery()) {
    await search({ push: false });
    if (view) viewer.restore(state.hits, view);
  } else if (view) {
    viewer.restore([], view);
  } else {
    $("q").focus();
  }
}

start();
