// The query's state: its terms, the modalities to search, and its settings. The settings are one
// table (FIELDS), from which the URL, the API request and the defaults all come; the terms are
// named by the server's table of query inputs (/api/inputs), so the page offers what the API takes.

const $ = (id) => document.getElementById(id);

// One row per setting: the element that holds it, its name in the URL and in the API request, and
// its value when left empty (null: not sent); what the API is sent after the value (suffix), and
// the flag without which it is not sent (needs).
export const FIELDS = [
  { id: "prefix", param: "prefix", api: "path_prefix", type: "text", empty: null },
  { id: "min", param: "min", api: "min_duration", type: "number", empty: null },
  { id: "max", param: "max", api: "max_duration", type: "number", empty: null },
  { id: "segments", param: "segments", api: "segments", type: "flag", empty: false },
  { id: "k", param: "k", api: "k", type: "number", empty: 24 },
  { id: "least", param: "relevance", api: "min_relevance", type: "text", empty: null },
  { id: "order", param: "sort", api: "sort", type: "text", empty: "relevance" },
  { id: "after", param: "after", api: "after", type: "text", empty: null },
  // A day "to" means the whole of it (the API's bare date is its first second).
  { id: "before", param: "before", api: "before", type: "text", empty: null, suffix: "T23:59:59" },
  // More than one moment of a file only means something with moments (the API refuses it without).
  { id: "moments", param: "moments", api: "per_file", type: "number", empty: null, needs: "segments" },
];

export const state = {
  inputs: [],         // the query inputs the API takes: {name, kind, given, label, media}
  terms: [],          // {kind: an input's name, value, weight, label, file?}
  present: [],        // modalities the library holds
  targets: new Set(), // modalities to search (empty: all present)
  ready: null,        // resolves once the library's info is known
  hits: [],           // the hits shown, pages of them one after another
  searchId: null,     // what the server keeps this search's uploads by (for the next page)
  more: false,        // whether the last page was full (there may be more)
};

// The inputs given in a way the URL and a JSON request can carry (text, stored items), and the
// one that a file is given as, by what it is.
export const carried = () => state.inputs.filter((input) => input.given !== "file");
export const uploads = () => state.inputs.filter((input) => input.given === "file");
export const inputGiven = (given) => state.inputs.find((input) => input.given === given);

function read(field) {
  const node = $(field.id);
  if (field.type === "flag") return node.checked;
  if (field.needs && !$(field.needs).checked) return field.empty;
  const raw = node.value.trim();
  if (raw === "") return field.empty;
  if (field.type !== "number") return raw;
  const number = Number(raw);
  return field.empty !== null && !number ? field.empty : number;
}

export function hasQuery() {
  return $("q").value.trim() !== "" || state.terms.some((t) => t.weight !== 0);
}

// The query as URL parameters (what a link, a reload and the back button bring back).
export function toParams() {
  const params = new URLSearchParams();
  const text = $("q").value.trim();
  if (text) params.append("q", text);
  const names = carried().map((input) => input.name);
  for (const term of state.terms) {
    if (names.includes(term.kind)) params.append(term.kind, `${term.weight}=${term.value}`);
  }
  for (const target of state.targets) params.append("target", target);
  for (const field of FIELDS) {
    if (field.type === "flag") {
      if (read(field)) params.set(field.param, "1");
    } else if ($(field.id).value.trim() && read(field) !== field.empty) {
      params.set(field.param, $(field.id).value.trim());
    }
  }
  return params;
}

// The state of URL parameters; uploads stay (a link cannot carry them).
export function fromParams(params) {
  $("q").value = params.get("q") || "";
  state.terms = state.terms.filter((t) => t.file);
  for (const input of carried()) {
    for (const raw of params.getAll(input.name)) {
      const match = raw.match(/^(-?[\d.]+)=(.*)$/s);
      const value = match ? match[2] : raw;
      const label = input.given === "stored" ? `item ${value}` : value;
      state.terms.push({ kind: input.name, value, weight: match ? Number(match[1]) : 1, label });
    }
  }
  state.targets = new Set(params.getAll("target"));
  for (const field of FIELDS) {
    const value = params.get(field.param);
    if (field.type === "flag") $(field.id).checked = value === "1";
    else $(field.id).value = value || (field.empty === null ? "" : String(field.empty));
    // A filter or an option set by the link is shown set (the number of results is no filter).
    if (value && (field.empty === null || field.type !== "number") && value !== String(field.empty)) {
      $(field.id).closest("details").open = true;
    }
  }
}

// The search request: JSON, or a multipart form when files are part of the query. A next page
// (offset > 0) of a search with files names that search's uploads (kept by the server) instead of
// sending them again, so that nothing is embedded twice.
export function toRequest(offset = 0) {
  const text = $("q").value.trim();
  const terms = state.terms.filter((t) => t.weight !== 0);
  const fields = { target: [...state.targets] };
  for (const input of carried()) {
    const typed = input.given === "text" && text ? [text] : [];
    fields[input.name] = typed.concat(terms.filter((t) => t.kind === input.name).map((t) => `${t.weight}=${t.value}`));
  }
  for (const field of FIELDS) {
    const value = read(field);
    if (value !== null) fields[field.api] = field.suffix ? `${value}${field.suffix}` : value;
  }
  if (offset) fields.offset = offset;
  let files = terms.filter((t) => t.file);
  if (files.length && offset && state.searchId) {
    fields.uploads_of = state.searchId;
    files = [];
  }
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
