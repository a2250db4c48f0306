// The viewer: a hit opened in the page, large, with what is known of its file, and the hits before
// and after it a key away. A native <dialog>: Esc closes it and focus stays inside while it is open.
// Arrows move, and the URL (view=...) names the open hit, so a reload or a link opens it again.
import * as api from "./api.js";
import { $, clock, el, hitKey, mediaUrl, noteText, relevance, spanText } from "./view.js";

const viewer = { hits: [], index: -1, moreLike: null };

function setView(key) {
  const params = new URLSearchParams(location.search);
  if (key === null) params.delete("view"); else params.set("view", key);
  const query = params.toString();
  history.replaceState(history.state, "", location.pathname + (query ? `?${query}` : ""));
}

function bytes(size) {
  if (size < 1024) return `${size} bytes`;
  const [value, unit] = size < 1048576 ? [size / 1024, "KB"] : [size / 1048576, "MB"];
  return `${value.toFixed(1)} ${unit}`;
}

// A bar under a player with the matched stretch marked, as a share of the whole duration.
function timeline(hit) {
  const duration = (hit.metadata || {}).duration;
  if (hit.start === null || hit.start === undefined || !duration) return "";
  const left = (100 * hit.start) / duration;
  const width = Math.max(0.5, (100 * ((hit.end ?? hit.start) - hit.start)) / duration);
  const mark = el("span", { class: "mark" });
  mark.style.left = `${left}%`;
  mark.style.width = `${width}%`;
  return el("div", { class: "timeline", title: `matched ${spanText(hit.start, hit.end)} of ${clock(duration)}` }, mark);
}

// A note's whole text (its first 64 KB), with the matched passage highlighted and scrolled to.
function wholeText(hit) {
  const box = el("pre", { class: "text", text: "…" });
  noteText(hit, 65535).then((text) => {
    const span = hit.passage;
    if (!span || text.slice(span.char_start, span.char_end) !== span.text) {
      box.replaceChildren(...(span ? [el("mark", { text: span.text }), "\n\n"] : []), text || hit.path);
      return;
    }
    const mark = el("mark", { text: span.text });
    box.replaceChildren(text.slice(0, span.char_start), mark, text.slice(span.char_end));
    mark.scrollIntoView({ block: "center" });
  });
  return box;
}

function stage(hit) {
  const name = hit.path.split("/").pop();
  if (hit.kind === "image") {
    const picture = el("img", { src: hit.media, alt: name });
    picture.addEventListener("error", () => { if (picture.src !== hit.thumbnail) picture.src = hit.thumbnail; }, { once: true });
    return [picture];
  }
  if (hit.kind === "video") return [el("video", { controls: "", autoplay: "", muted: "", src: mediaUrl(hit) }), timeline(hit)];
  if (hit.kind === "audio") {
    return [el("img", { class: "wave", src: hit.thumbnail, alt: `waveform of ${name}` }),
      el("audio", { controls: "", autoplay: "", src: mediaUrl(hit) }), timeline(hit)];
  }
  if (hit.kind === "text") return [wholeText(hit)];
  return [el("img", { src: hit.thumbnail, alt: name })];
}

// When it was taken: the hit's ISO date, or the media info's Unix seconds (an item's).
function taken(value) {
  if (value === null || value === undefined || value === "") return "";
  const date = new Date(typeof value === "number" ? value * 1000 : value);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

function row(term, value) {
  return value ? [el("dt", { text: term }), el("dd", { text: String(value) })] : [];
}

// What is known of the hit's file: from the hit, and from its item (its size, when it was added).
function details(hit, item) {
  const meta = { ...(item ? item.metadata : {}), ...(hit.metadata || {}) };
  const size = item ? item.size : meta.size;
  return el("dl", { class: "meta" },
    ...row("Match", relevance(hit, viewer.index).textContent),
    ...row("Moment", hit.start !== null && hit.start !== undefined ? spanText(hit.start, hit.end) : ""),
    ...row("Kind", hit.kind === "video" && hit.modality ? `video (matched by ${hit.modality === "audio" ? "its sound" : "its picture"})` : hit.kind),
    ...row("Dimensions", meta.width && meta.height ? `${meta.width} × ${meta.height}` : ""),
    ...row("Duration", typeof meta.duration === "number" ? clock(meta.duration, meta.duration < 10) : ""),
    ...row("Size", typeof size === "number" ? bytes(size) : ""),
    ...row("Taken", taken(hit.taken ?? meta.taken)),
    ...row("Camera", meta.camera),
    ...row("Added", item ? new Date(item.added * 1000).toLocaleString() : ""),
    ...row("Path", hit.path),
    ...row("Similar", Array.isArray(hit.similar) ? hit.similar.map((other) => other.path).join("\n") : ""));
}

function draw() {
  const hit = viewer.hits[viewer.index];
  const dialog = $("viewer");
  dialog.dataset.id = String(hit.id);
  dialog.dataset.path = hit.path;
  $("viewer-title").textContent = hit.path.split("/").pop();
  $("viewer-position").textContent = viewer.hits.length > 1 ? `${viewer.index + 1} of ${viewer.hits.length}` : "";
  $("viewer-prev").disabled = viewer.index <= 0;
  $("viewer-next").disabled = viewer.index >= viewer.hits.length - 1;
  $("viewer-stage").replaceChildren(...stage(hit));
  const info = $("viewer-info");
  info.replaceChildren(details(hit, null),
    el("p", { class: "actions" },
      el("a", { class: "file button", href: hit.media, target: "_blank", rel: "noopener", text: "Open the file" }),
      el("button", { type: "button", class: "like", text: "More like this", onclick: () => { close(); viewer.moreLike(hit); } })));
  api.item(hit.id).then((item) => {
    if (viewer.hits[viewer.index] === hit) info.firstChild.replaceWith(details(hit, item));
  }).catch(() => { /* the hit's own facts stay */ });
  setView(hitKey(hit));
}

export function open(hits, index) {
  viewer.hits = hits;
  viewer.index = index;
  draw();
  if (!$("viewer").open) $("viewer").showModal();
}

export function move(step) {
  const next = viewer.index + step;
  if (!$("viewer").open || next < 0 || next >= viewer.hits.length) return;
  viewer.index = next;
  draw();
}

export function close() {
  if ($("viewer").open) $("viewer").close();
}

// Opens the hit the URL names (view=...): one of the results, else the item alone.
export async function restore(hits, key) {
  const index = hits.findIndex((hit) => hitKey(hit) === key);
  if (index >= 0) { open(hits, index); return; }
  const id = (key.match(/^\d+/) || [])[0];
  if (!id) return;
  try {
    const item = await api.item(id);
    open([{ ...item, score: 0, start: null, end: null }], 0);
  } catch (_) {
    setView(null);  // an item no longer in the library: the results alone
  }
}

export function wireViewer(moreLike) {
  viewer.moreLike = moreLike;
  const dialog = $("viewer");
  $("viewer-prev").addEventListener("click", () => move(-1));
  $("viewer-next").addEventListener("click", () => move(1));
  $("viewer-close").addEventListener("click", close);
  dialog.addEventListener("close", () => {
    $("viewer-stage").replaceChildren();  // stops a playing video or sound
    setView(null);
  });
  dialog.addEventListener("click", (event) => { if (event.target === dialog) close(); });  // the backdrop
  dialog.addEventListener("keydown", (event) => {
    if (["AUDIO", "VIDEO", "INPUT"].includes(event.target.tagName)) return;  // their own arrows seek
    if (event.key === "ArrowRight") { event.preventDefault(); move(1); }
    if (event.key === "ArrowLeft") { event.preventDefault(); move(-1); }
  });
}
