"use strict";
// The case page, live while the case runs: poll the rows with If-None-Match (304 while nothing
// changed, every 2 s as the API's Retry-After says), and sort and filter the rows in place.
(() => {
  const holder = document.getElementById("case-rows");
  const sort = document.getElementById("sort");
  const show = document.getElementById("show");
  const method = document.getElementById("method");
  const POLL_MS = 2000;
  let etag = holder.dataset.etag;

  const running = () => holder.querySelector(".case-status")?.dataset.running === "1";

  function arrange() {
    const body = holder.querySelector("tbody");
    if (!body) return;
    const rows = [...body.rows];
    const key = {
      position: (r) => Number(r.dataset.position),
      score: (r) => -Number(r.dataset.score),
      name: (r) => r.dataset.name.toLowerCase(),
    }[sort.value];
    rows.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : Number(a.dataset.position) - Number(b.dataset.position)));
    for (const row of rows) {
      const status = row.dataset.status;
      const visible =
        (show.value === "all" ||
          (show.value === "flagged" && Number(row.dataset.score) >= 50) ||
          (show.value === "failed" && status === "failed") ||
          (show.value === "pending" && !["completed", "failed"].includes(status))) &&
        (!method.value || row.dataset.methods.split(" ").includes(method.value));
      row.hidden = !visible;
      body.append(row);
    }
  }

  async function poll() {
    if (!running()) return;
    try {
      const response = await fetch(holder.dataset.rowsUrl, { headers: { "If-None-Match": etag }, cache: "no-store", credentials: "same-origin" });
      if (response.redirected) {  // the session ended: the server sent the sign-in form
        location.assign(`/sign-in?next=${encodeURIComponent(location.pathname)}`);
        return;
      }
      if (response.status === 200) {
        etag = response.headers.get("ETag") || etag;
        holder.innerHTML = await response.text();  // the server's own template: every file-borne text is escaped there
        arrange();
      }
    } catch (_) { /* a network blip: try again at the next tick */ }
    setTimeout(poll, POLL_MS);
  }

  for (const control of [sort, show, method]) control.addEventListener("change", arrange);
  arrange();
  setTimeout(poll, POLL_MS);
})();
