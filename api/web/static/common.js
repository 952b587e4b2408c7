"use strict";
// Shared by every page: the session's CSRF token, calls to the JSON API, its problems in plain words.
// Text from the server or from files is only ever inserted with textContent, never as markup.
const Desk = (() => {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";
  const words = new Map();
  const terms = document.querySelectorAll("#problem-words dt");
  for (const term of terms) words.set(term.textContent, term.nextElementSibling.textContent);

  /** A problem of the API (or of the network) said in plain words. */
  class Problem extends Error {
    constructor(code, detail) {
      super(words.get(code) || words.get("BAD_REQUEST"));
      this.code = code;
      this.detail = detail || "";
    }
    get sentence() {
      return this.detail ? `${this.message} (${this.detail})` : this.message;
    }
  }

  /** The Problem of a failed response's body (problem+json), whatever the body is. */
  function problemOf(status, text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.code === "string") return new Problem(body.code, typeof body.detail === "string" ? body.detail : "");
    } catch (_) { /* not JSON: a proxy's error page */ }
    return new Problem(status >= 500 ? "UNAVAILABLE" : "BAD_REQUEST", `HTTP ${status}`);
  }

  /** Call the JSON API with the session cookie and CSRF token; resolve to the parsed body or throw a Problem. */
  async function api(method, path, body) {
    const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (_) {
      throw new Problem("NETWORK");
    }
    const text = await response.text();
    if (!response.ok) throw problemOf(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  /** Show ``problem`` (a Problem or any error) in the element ``target``. */
  function show(target, problem) {
    target.textContent = problem instanceof Problem ? problem.sentence : String((problem && problem.message) || problem);
    target.hidden = false;
  }

  return { csrf, words, Problem, problemOf, api, show };
})();
