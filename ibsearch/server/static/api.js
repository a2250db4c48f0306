// The calls to the JSON API. A new search cancels the one still under way, so that a slow answer
// to an old query never replaces the answer to the new one.

export async function api(path, options = {}) {
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

let running = null;

// The answer of a search, or null when a newer search cancelled it.
export async function search(request) {
  if (running) running.abort();
  const mine = running = new AbortController();
  try {
    return await api("/api/search", { method: "POST", ...request, signal: mine.signal });
  } catch (error) {
    if (mine.signal.aborted) return null;
    throw error;
  } finally {
    if (running === mine) running = null;
  }
}

export async function signIn(token) {
  await api("/-/sign-in", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }) });
}

export const info = async () => (await api("/api/info")).body;
export const inputs = async () => (await api("/api/inputs")).body;
export const item = async (id) => (await api(`/api/items/${encodeURIComponent(id)}`)).body;
