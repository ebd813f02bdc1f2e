// The BiomedCLIP page: classify an uploaded image against typed labels, search the index by text
// or by the uploaded image. Plain DOM + fetch against the server's JSON API (see /docs).
"use strict";

const $ = (id) => document.getElementById(id);
let chosenFile = null;
let hasIndex = false;

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function callApi(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (_) { /* non-JSON error page */ }
  if (!response.ok) {
    let detail = body && body.detail;
    if (Array.isArray(detail)) detail = detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    throw new Error(`${response.status}: ${detail || response.statusText}`);
  }
  return body;
}

async function loadHealth() {
  try {
    const health = await callApi("/health");
    hasIndex = Boolean(health.index);
    const index = hasIndex ? `${health.index.count.toLocaleString()} indexed items` : "no index loaded";
    $("status").textContent = `${health.model} · ${health.embed_dim}-d · ${index}`;
    $("search-btn").disabled = !hasIndex;
    if (!hasIndex) $("search-info").textContent = "Start the server with --index INDEX to search.";
  } catch (err) {
    $("status").textContent = `server not reachable (${err.message})`;
  }
}

function lines(text) {
  return text.split("\n").map((s) => s.trim()).filter(Boolean);
}

function chooseFile(file) {
  if (!file) return;
  chosenFile = file;
  $("file-name").textContent = `${file.name} · ${(file.size / 1024).toFixed(1)} kB`;
  $("classify-btn").disabled = false;
  $("image-search-btn").disabled = !hasIndex;
  const preview = $("preview");
  // browsers show PNG/JPEG themselves; TIFF/DICOM/NIfTI get the server's preview after classifying
  if (/^image\/(png|jpeg|gif|webp)$/.test(file.type)) {
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
    $("drop-hint").hidden = true;
  } else {
    preview.hidden = true;
    $("drop-hint").hidden = false;
  }
  $("bars").replaceChildren();
}

function renderBars(result) {
  // probabilities: [{label, p}, …] in label order (the shape `biomedclip classify --json` prints too)
  const rows = [...result.probabilities].sort((a, b) => b.p - a.p);
  const bars = $("bars");
  bars.replaceChildren();
  for (const { label, p } of rows) {
    const row = document.createElement("div");
    row.className = "bar-row" + (label === result.prediction ? " top" : "");
    row.dataset.label = label;
    row.dataset.probability = String(p);
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = `${(p * 100).toFixed(1)}%`;
    row.append(name, track, value);
    bars.append(row);
  }
  const note = document.createElement("p");
  note.className = "muted";
  note.textContent = `temperature ${result.temperature.toFixed(1)} · ${result.ms.toFixed(0)} ms`;
  bars.append(note);
}

async function classify() {
  if (!chosenFile) return;
  showError("");
  const form = new FormData();
  form.append("file", chosenFile, chosenFile.name);
  for (const label of lines($("labels").value)) form.append("labels", label);
  for (const template of lines($("templates").value)) form.append("templates", template);
  $("classify-btn").disabled = true;
  try {
    const result = await callApi("/classify", { method: "POST", body: form });
    $("preview").src = result.preview;
    $("preview").hidden = false;
    $("drop-hint").hidden = true;
    renderBars(result);
  } catch (err) {
    showError(`Classification failed — ${err.message}`);
  } finally {
    $("classify-btn").disabled = false;
  }
}

function renderResults(result, label) {
  const grid = $("results");
  grid.replaceChildren();
  $("search-info").textContent = `${result.hits.length} results for ${label} · ${result.ms.toFixed(0)} ms`;
  for (const hit of result.hits) {
    const card = document.createElement("figure");
    card.className = "result";
    card.dataset.key = hit.key;
    card.dataset.score = String(hit.score);
    const img = document.createElement("img");
    img.src = hit.image_url;
    img.alt = hit.caption || hit.key;
    img.loading = "lazy";
    const caption = document.createElement("figcaption");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    const key = document.createElement("span");
    key.className = "key";
    key.textContent = hit.pmcid ? `${hit.key} · ${hit.pmcid}` : hit.key;
    const text = document.createElement("p");
    text.className = "caption";
    text.textContent = hit.caption || "";
    text.title = hit.caption || "";
    caption.append(score, key, text);
    card.append(img, caption);
    grid.append(card);
  }
}

async function search(event) {
  if (event) event.preventDefault();
  const query = $("query").value.trim();
  if (!query) return;
  showError("");
  try {
    const result = await callApi(`/search?q=${encodeURIComponent(query)}&k=12`);
    renderResults(result, `"${query}"`);
  } catch (err) {
    showError(`Search failed — ${err.message}`);
  }
}

async function searchByImage() {
  if (!chosenFile) return;
  showError("");
  const form = new FormData();
  form.append("file", chosenFile, chosenFile.name);
  form.append("k", "12");
  try {
    const result = await callApi("/search", { method: "POST", body: form });
    renderResults(result, chosenFile.name);
  } catch (err) {
    showError(`Image search failed — ${err.message}`);
  }
}

function setUpDropZone() {
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("dragging"); });
  }
  zone.addEventListener("drop", (e) => chooseFile(e.dataTransfer.files[0]));
  $("file-input").addEventListener("change", (e) => chooseFile(e.target.files[0]));
}

setUpDropZone();
$("classify-btn").addEventListener("click", classify);
$("image-search-btn").addEventListener("click", searchByImage);
$("search-form").addEventListener("submit", search);
loadHealth();
