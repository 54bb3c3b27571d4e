// The AVID page: search by sound (or by pictures), watch the matching moment, browse,
// delete and upload items. Plain JavaScript against the service's own HTTP API.
"use strict";

const KEY_STORAGE = "avid-api-key";
const PAGE_SIZE = 12;
const RECORD_SECONDS = 5;

const $ = (id) => document.getElementById(id);
let access = "write";
let browseOffset = 0;

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function errorOf(response) {
  let code = "http_" + response.status;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code;
      message = body.error.message;
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message);
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) askForKey(error.message);
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

function showError(error) {
  const box = $("error");
  if (!error) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const what = error instanceof ApiError
    ? `${error.status} ${error.code}: ${error.message}`
    : `Could not reach the service: ${error.message}`;
  box.textContent = what;
  box.hidden = false;
}

// Media elements cannot send the key header: with a key they load the signed URLs the
// service issues (a short-lived token bound to the item), so a <video> still streams and
// seeks with Range requests instead of the page downloading the whole file first.
async function mediaUrls(item) {
  const path = `/items/${encodeURIComponent(item)}`;
  if (!apiKey()) return { url: `${path}/media`, poster_url: `${path}/poster` };
  return api(`${path}/media-url`);
}

function askForKey(reason) {
  const dialog = $("key-dialog");
  if (dialog.open) return;
  $("key-input").value = apiKey();
  if (reason) dialog.querySelector("p").textContent = `The service said: ${reason}. ` +
    "The key is kept for this browser tab only (sessionStorage).";
  dialog.showModal();
}

$("key-button").addEventListener("click", () => askForKey(""));
$("key-dialog").addEventListener("close", () => {
  const choice = $("key-dialog").returnValue;
  if (choice === "save") sessionStorage.setItem(KEY_STORAGE, $("key-input").value.trim());
  if (choice === "clear") sessionStorage.removeItem(KEY_STORAGE);
  if (choice) refresh();
});

async function refresh() {
  showError(null);
  await showStatus();
  await browse(browseOffset);
}

async function showStatus() {
  const status = $("status");
  let ready = "not ready";
  try {
    const probe = await fetch("/readyz");
    ready = probe.ok ? "ready" : "not ready";
  } catch (error) {
    status.textContent = "The service does not answer.";
    return;
  }
  try {
    const info = await api("/info");
    access = info.access;
    status.textContent = `Model ${info.model_version} · ${info.items} items · ${ready}` +
      (access === "read" ? " · read-only key" : "");
    document.body.classList.toggle("read-only", access === "read");
    $("upload").hidden = access === "read";
  } catch (error) {
    status.textContent = `Service ${ready}; ${error.message}`;
  }
}

function seconds(value) {
  return `${value.toFixed(1)} s`;
}

function textBlock(className, text) {
  const block = document.createElement("div");
  if (className) block.className = className;
  block.textContent = text;
  return block;
}

function metadataBlock(metadata) {
  const pre = document.createElement("pre");
  pre.className = "metadata";
  pre.textContent = Object.keys(metadata || {}).length ? JSON.stringify(metadata, null, 1) : "";
  return pre;
}

// A player for an item, started at `start` (a `#t=` fragment, and currentTime once loaded).
async function player(item, kind, start, end, urls) {
  const element = document.createElement(kind === "video" ? "video" : "audio");
  element.controls = true;
  element.preload = "auto";
  element.muted = kind === "video";
  element.setAttribute("aria-label", `${kind} of ${item}`);
  const url = (urls || await mediaUrls(item)).url;
  if (start !== undefined) {
    element.dataset.start = String(start);
    element.addEventListener("loadedmetadata", () => { element.currentTime = start; },
      { once: true });
    element.src = `${url}#t=${start}${end !== undefined ? "," + end : ""}`;
  } else {
    element.src = url;
  }
  return element;
}

function setQueryFile(file) {
  const transfer = new DataTransfer();
  transfer.items.add(file);
  $("query-file").files = transfer.files;
  $("query-name").textContent = `Query: ${file.name}`;
}

const dropZone = $("drop-zone");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("over");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("over");
  if (event.dataTransfer.files.length) setQueryFile(event.dataTransfer.files[0]);
});
$("query-file").addEventListener("change", () => {
  const file = $("query-file").files[0];
  $("query-name").textContent = file ? `Query: ${file.name}` : "";
});

if (navigator.mediaDevices && window.MediaRecorder) {
  const button = $("record-button");
  button.hidden = false;
  button.addEventListener("click", async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const recorder = new MediaRecorder(stream);
      const chunks = [];
      recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
      recorder.addEventListener("stop", () => {
        stream.getTracks().forEach((track) => track.stop());
        const type = recorder.mimeType || "audio/webm";
        setQueryFile(new File(chunks, "recording.webm", { type }));
        button.disabled = false;
        button.textContent = `Record ${RECORD_SECONDS} s from the microphone`;
      });
      recorder.start();
      button.disabled = true;
      button.textContent = "Recording…";
      setTimeout(() => recorder.stop(), RECORD_SECONDS * 1000);
    } catch (error) {
      showError(new Error(`the microphone is not available (${error.message})`));
    }
  });
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  const form = new FormData(event.target);
  if (form.get("target") !== "audio" || !form.get("item_kind")) form.delete("item_kind");
  const list = $("results");
  list.replaceChildren();
  $("search-info").textContent = "Searching…";
  $("search-button").disabled = true;
  try {
    const body = await api("/search", { method: "POST", body: form });
    $("search-info").textContent = body.results.length
      ? `${body.results.length} results, best first`
      : "No results: the index has nothing of that kind yet.";
    for (const hit of body.results) {
      const card = document.createElement("li");
      card.className = "result";
      card.dataset.itemId = hit.id;
      const name = textBlock("name", hit.file_name || hit.id);
      const score = textBlock("score", `score ${hit.score.toFixed(3)} · window ` +
        `${seconds(hit.start)}–${seconds(hit.end)}`);
      card.append(await player(hit.id, hit.kind, hit.start, hit.end), name, score,
        metadataBlock(hit.metadata));
      list.append(card);
    }
  } catch (error) {
    $("search-info").textContent = "";
    showError(error);
  } finally {
    $("search-button").disabled = false;
  }
});

async function browse(offset) {
  let page;
  try {
    page = await api(`/items?offset=${offset}&limit=${PAGE_SIZE}`);
  } catch (error) {
    showError(error);
    return;
  }
  if (page.items.length === 0 && offset > 0) return browse(Math.max(0, offset - PAGE_SIZE));
  browseOffset = offset;
  const last = Math.min(offset + page.items.length, page.total);
  $("page-info").textContent = page.total
    ? `Items ${offset + 1}–${last} of ${page.total}` : "No items stored yet.";
  $("prev-page").disabled = offset === 0;
  $("next-page").disabled = last >= page.total;
  const list = $("items");
  list.replaceChildren();
  for (const item of page.items) {
    const card = document.createElement("li");
    card.className = "item";
    card.dataset.itemId = item.id;
    const name = textBlock("name", item.file_name || item.id);
    const size = item.size_bytes ? ` · ${(item.size_bytes / 1024).toFixed(0)} KiB` : "";
    const facts = textBlock("", `${item.kind} · ${seconds(item.duration)}${size}`);
    const pictures = [];
    try {
      const picture = document.createElement("img");
      picture.alt = item.kind === "video"
        ? `A picture from ${item.file_name || item.id}`
        : `The waveform of ${item.file_name || item.id}`;
      const urls = await mediaUrls(item.id);
      picture.src = urls.poster_url;
      pictures.push(picture);
      if (item.kind === "audio") {
        pictures.push(await player(item.id, "audio", undefined, undefined, urls));
      }
    } catch (error) {
      const note = document.createElement("p");
      note.textContent = `(${error.message})`;
      pictures.push(note);
    }
    card.append(...pictures, name, facts, metadataBlock(item.metadata));
    if (access === "write") {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete ${item.file_name || item.id}`);
      remove.addEventListener("click", async () => {
        if (!window.confirm(`Delete ${item.file_name || item.id}?`)) return;
        try {
          await api(`/items/${encodeURIComponent(item.id)}`, { method: "DELETE" });
          await refresh();
        } catch (error) {
          showError(error);
        }
      });
      card.append(remove);
    }
    list.append(card);
  }
}

$("prev-page").addEventListener("click", () => browse(Math.max(0, browseOffset - PAGE_SIZE)));
$("next-page").addEventListener("click", () => browse(browseOffset + PAGE_SIZE));

function uploadOne(file, metadata, row) {
  const kind = file.type.startsWith("audio/") ? "audio" : "video";
  const form = new FormData();
  form.append("file", file);
  if (metadata) form.append("metadata", metadata);
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = 0;
  bar.setAttribute("aria-label", `Upload of ${file.name}`);
  const text = document.createElement("span");
  text.textContent = ` ${file.name}: sending`;
  row.append(bar, text);
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", `/embed/${kind}`);
    for (const [name, value] of Object.entries(authHeaders())) {
      request.setRequestHeader(name, value);
    }
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) bar.value = event.loaded / event.total;
    });
    request.addEventListener("load", async () => {
      let body = null;
      try { body = JSON.parse(request.responseText); } catch (_) { /* not JSON */ }
      if (request.status === 200) {
        bar.value = 1;
        text.textContent = ` ${file.name}: stored as ${body.id}`;
        row.dataset.state = "done";
      } else if (request.status === 202) {
        text.textContent = ` ${file.name}: embedding (job ${body.job_id})`;
        row.dataset.state = await followJob(body.job_id, bar, text, file.name);
      } else {
        const error = body && body.error ? body.error : { code: "http_" + request.status,
          message: request.statusText };
        text.textContent = ` ${file.name}: ${request.status} ${error.code}: ${error.message}`;
        row.dataset.state = "failed";
        if (request.status === 401) askForKey(error.message);
      }
      resolve();
    });
    request.addEventListener("error", () => {
      text.textContent = ` ${file.name}: the service could not be reached`;
      row.dataset.state = "failed";
      resolve();
    });
    request.send(form);
  });
}

async function followJob(jobId, bar, text, name) {
  for (;;) {
    await new Promise((done) => setTimeout(done, 1000));
    let job;
    try {
      job = await api(`/jobs/${encodeURIComponent(jobId)}`);
    } catch (error) {
      text.textContent = ` ${name}: ${error.message}`;
      return "failed";
    }
    bar.value = job.progress;
    if (job.state === "done") {
      text.textContent = ` ${name}: stored as ${job.result.id}`;
      return "done";
    }
    if (job.state === "failed") {
      text.textContent = ` ${name}: ${job.error.code}: ${job.error.message}`;
      return "failed";
    }
    text.textContent = ` ${name}: ${job.state} (${Math.round(job.progress * 100)} %)`;
  }
}

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(null);
  const metadata = $("upload-metadata").value.trim();
  const files = Array.from($("upload-files").files);
  $("upload-button").disabled = true;
  for (const file of files) {
    const row = document.createElement("li");
    row.className = "upload";
    $("uploads").append(row);
    await uploadOne(file, metadata, row);
  }
  $("upload-button").disabled = false;
  $("upload-form").reset();
  await refresh();
});

refresh();
