"use strict";
// The new-case page: collect files (chosen, dropped, folders, ZIP archives), upload each straight to
// its direct-upload slot with its own progress bar, then create the case from the slots and show at
// once which files the service refused and why.
(() => {
  const form = document.getElementById("new-case");
  const maxFiles = Number(form.dataset.maxFiles);
  const maxBytes = Number(form.dataset.maxBytes);
  const table = document.getElementById("file-list");
  const rows = table.querySelector("tbody");
  const summary = document.getElementById("summary");
  const submit = document.getElementById("submit");
  const clear = document.getElementById("clear");
  const formProblem = document.getElementById("form-problem");
  const done = document.getElementById("done");
  const zone = document.getElementById("drop-zone");
  const filesInput = document.getElementById("files");
  const folderInput = document.getElementById("folder");
  const UPLOADS_AT_ONCE = 4;
  let items = [];
  let busy = false;

  const isZip = (file) => /\.zip$/i.test(file.name) || file.type === "application/zip" || file.type === "application/x-zip-compressed";

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function sizeText(bytes) {
    for (const [unit, factor] of [["GB", 1e9], ["MB", 1e6], ["KB", 1e3]]) if (bytes >= factor) return `${(bytes / factor).toFixed(1)} ${unit}`;
    return `${bytes} bytes`;
  }

  /** One file to upload: ``load`` resolves to its bytes (a File, or an archive entry unpacked on demand). */
  function add(name, size, load, problem) {
    if (!problem && items.filter((i) => !i.problem).length >= maxFiles) problem = Desk.words.get("TOO_MANY_FILES");
    if (!problem && size > maxBytes) problem = Desk.words.get("FILE_TOO_LARGE");
    if (!problem && size === 0) problem = "The file is empty.";
    const row = rows.insertRow();
    cell(row, name, "file");
    cell(row, sizeText(size), "num");
    const bar = document.createElement("progress");
    bar.max = Math.max(size, 1);
    bar.value = 0;
    bar.setAttribute("aria-label", `Upload of ${name}`);
    cell(row, "").append(bar);
    const result = cell(row, problem || "Ready");
    const item = { name: name.slice(-500), size, load, problem: problem || "", bar, result, uploadId: null, used: false };
    if (problem) refuse(item, problem);
    items.push(item);
  }

  function refuse(item, why) {
    item.problem = why;
    item.result.textContent = why;
    item.result.className = "refused";
  }

  async function addFile(file, path) {
    const name = path || file.webkitRelativePath || file.name;
    if (!isZip(file)) {
      add(name, file.size, async () => file);
      return;
    }
    try {
      for (const entry of await Unzip.entries(file)) add(`${name}/${entry.name}`, entry.size, entry.read, entry.problem);
    } catch (error) {
      add(name, file.size, async () => file, `The archive cannot be unpacked: ${error.message}.`);
    }
  }

  function readEntries(reader) {
    return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
  }

  /** A dropped file or folder (FileSystemEntry), folders walked to the end. */
  async function walk(entry, prefix) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      await addFile(file, prefix + file.name);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  }

  function refresh() {
    const ready = items.filter((i) => !i.problem && !i.used).length;
    const refused = items.filter((i) => i.problem).length;
    table.hidden = items.length === 0;
    summary.textContent = items.length
      ? `${ready} file${ready === 1 ? "" : "s"} ready to upload${refused ? `, ${refused} refused` : ""}.`
      : "No file chosen.";
    submit.disabled = busy || ready === 0;
    clear.disabled = busy || items.length === 0;
  }

  async function take(task) {
    formProblem.hidden = true;
    await task;
    refresh();
  }

  filesInput.addEventListener("change", () => take((async () => {
    for (const file of filesInput.files) await addFile(file);
    filesInput.value = "";
  })()));
  folderInput.addEventListener("change", () => take((async () => {
    for (const file of folderInput.files) await addFile(file);
    folderInput.value = "";
  })()));
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    const files = [...event.dataTransfer.files];
    take((async () => {
      if (entries.length) for (const entry of entries) await walk(entry, "");
      else for (const file of files) await addFile(file);
    })());
  });
  zone.addEventListener("keydown", (event) => {
    if (event.target === zone && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); filesInput.click(); }
  });
  clear.addEventListener("click", () => {
    items = [];
    rows.replaceChildren();
    done.hidden = true;
    refresh();
  });

  /** Send one request with upload progress; resolve to the XMLHttpRequest, throw a Problem on failure. */
  function send(method, url, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (event) => onProgress(event.loaded);
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve(xhr) : reject(Desk.problemOf(xhr.status, xhr.responseText)));
      xhr.onerror = () => reject(new Desk.Problem("NETWORK"));
      xhr.send(body);
    });
  }

  const local = (url) => { const u = new URL(url, location.href); return u.origin === location.origin ? u.pathname + u.search : url; };

  /** Upload one item to its slot: a PUT to this API, a presigned POST, or a multipart upload's parts. */
  async function upload(item) {
    const slot = item.slot;
    item.result.textContent = "Uploading…";
    const blob = await item.load();
    const progress = (base) => (loaded) => { item.bar.value = base + loaded; };
    if (slot.method === "PUT") {
      await send("PUT", local(slot.url), blob, { "X-CSRF-Token": Desk.csrf, "Content-Type": "application/octet-stream" }, progress(0));
    } else if (slot.method === "POST") {
      const body = new FormData();
      for (const [name, value] of Object.entries(slot.fields)) body.append(name, value);
      body.append("file", blob, item.name.split("/").pop());
      await send("POST", slot.url, body, {}, progress(0));
    } else {
      const parts = [];
      let offset = 0;
      for (const part of slot.parts) {
        const xhr = await send("PUT", part.url, blob.slice(offset, offset + part.size), {}, progress(offset));
        parts.push({ part_number: part.part_number, etag: xhr.getResponseHeader("ETag") || "" });
        offset += part.size;
      }
      await Desk.api("POST", local(slot.complete_url), { parts });
    }
    item.bar.value = item.bar.max;
    item.uploadId = slot.upload_id;
    item.result.textContent = "Uploaded";
  }

  async function uploadAll(pending) {
    let next = 0;
    const worker = async () => {
      while (next < pending.length) {
        const item = pending[next++];
        try {
          await upload(item);
        } catch (problem) {
          refuse(item, problem instanceof Desk.Problem ? problem.sentence : `The file cannot be read: ${problem.message}.`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(UPLOADS_AT_ONCE, pending.length) }, worker));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    formProblem.hidden = true;
    done.hidden = true;
    refresh();
    try {
      const pending = items.filter((i) => !i.problem && !i.used && !i.uploadId);
      if (pending.length) {
        const slots = await Desk.api("POST", "/v1/uploads", { files: pending.map((i) => ({ filename: i.name, size: i.size })) });
        slots.data.forEach((slot, k) => { pending[k].slot = slot; });
        await uploadAll(pending);
      }
      const ready = items.filter((i) => i.uploadId && !i.problem && !i.used);
      if (!ready.length) throw new Error("No file could be uploaded; the list says why");
      const label = form.elements.label.value.trim();
      const callback = form.elements.callback_url.value.trim();
      const created = await Desk.api("POST", "/v1/cases", { upload_ids: ready.map((i) => i.uploadId), label: label || null, callback_url: callback || null, sensitivity: form.elements.sensitivity.value });
      let accepted = 0;
      created.images.forEach((image, k) => {
        const item = ready[k];
        if (image.status === "failed" && image.error) {
          refuse(item, new Desk.Problem(image.error.code, image.error.detail).sentence);
        } else {
          accepted += 1;
          item.result.textContent = "Accepted";
          item.result.className = "accepted";
        }
        item.used = true;  // its slot is the case's now: another case needs another upload
      });
      const refused = items.length - accepted;
      document.getElementById("done-text").textContent =
        `Case created: ${accepted} picture${accepted === 1 ? "" : "s"} accepted${refused ? `, ${refused} refused (reasons in the list)` : ""}.`;
      const link = document.getElementById("case-link");
      link.href = `/cases/${encodeURIComponent(created.id)}`;
      done.hidden = false;
      link.focus();
    } catch (problem) {
      Desk.show(formProblem, problem);
    } finally {
      busy = false;
      refresh();
    }
  });
  refresh();
})();
