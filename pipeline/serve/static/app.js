// relspace search page: plain JS, no dependencies. Talks to /info and /search on the same origin.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const q = $("q");
  const file = $("file");
  const drop = $("drop-zone");
  const preview = $("preview");
  const langSelect = $("lang");
  const resultLangSelect = $("result-lang");
  const kInput = $("k");
  const statusEl = $("status");
  const errorEl = $("error");
  const results = $("results");

  const DEBOUNCE_MS = 250; // search as you type, but not on every keystroke
  let limits = { max_k: 100, max_text_chars: 1000, max_upload_bytes: 8 * 1024 * 1024 };
  let imageFile = null; // the current query image (File or Blob)
  let previewUrl = null;
  let inflight = null; // AbortController of the running request: a newer query cancels it
  let timer = 0;

  const languageName = (() => {
    let names = null;
    try {
      names = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });
    } catch (_) { /* older browsers: show codes */ }
    return (code) => {
      try {
        const name = names && names.of(code);
        return name && name !== code ? `${name} (${code})` : code;
      } catch (_) {
        return code;
      }
    };
  })();

  function mode() {
    const [query, target] = form.querySelector("input[name=mode]:checked").value.split(":");
    return { query, target };
  }

  function setStatus(text) { statusEl.textContent = text; }
  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  // -- layout follows the mode: a text box or a drop zone, and only the options that apply ----------

  function syncMode() {
    const { query, target } = mode();
    $("text-query").hidden = query !== "text";
    $("image-query").hidden = query !== "image";
    $("lang-option").hidden = query !== "text";
    $("result-lang-option").hidden = target !== "text";
    saveState();
  }

  function saveState() {
    const params = new URLSearchParams();
    const { query, target } = mode();
    params.set("mode", `${query}:${target}`);
    if (q.value.trim()) params.set("q", q.value.trim());
    if (langSelect.value) params.set("lang", langSelect.value);
    if (resultLangSelect.value) params.set("result_lang", resultLangSelect.value);
    params.set("k", kInput.value);
    history.replaceState(null, "", `?${params}`);
  }

  function restoreState() {
    const params = new URLSearchParams(location.search);
    const m = form.querySelector(`input[name=mode][value="${CSS.escape(params.get("mode") || "")}"]`);
    if (m) m.checked = true;
    if (params.get("q")) q.value = params.get("q");
    if (params.get("k")) kInput.value = params.get("k");
    return params;
  }

  // -- index info, languages and attribution from /info --------------------------------------------

  function fillSelect(select, codes, selected) {
    for (const code of codes) {
      const opt = document.createElement("option");
      opt.value = code;
      opt.textContent = languageName(code);
      select.append(opt);
    }
    if (selected && codes.includes(selected)) select.value = selected;
  }

  function renderAttribution(a) {
    const el = $("attribution");
    el.replaceChildren();
    if (!a) return;
    // Link the project name and the licence inside the official sentence, keeping its wording exact.
    const text = a.text;
    const parts = [
      { word: a.project, href: a.project_url },
      { word: a.license, href: a.license_url },
    ];
    let pos = 0;
    for (const { word, href } of parts) {
      const at = text.indexOf(word, pos);
      if (at < 0 || !href) continue;
      el.append(text.slice(pos, at));
      const link = document.createElement("a");
      link.href = href;
      link.textContent = word;
      link.rel = "license noopener";
      el.append(link);
      pos = at + word.length;
    }
    el.append(text.slice(pos));
  }

  async function loadInfo(params) {
    const res = await fetch("/info");
    if (!res.ok) throw new Error(`/info answered ${res.status}`);
    const info = await res.json();
    limits = info.limits;
    kInput.max = String(limits.max_k);
    q.maxLength = limits.max_text_chars;
    fillSelect(langSelect, info.languages, params.get("lang"));
    fillSelect(resultLangSelect, info.caption_languages, params.get("result_lang"));
    const enc = info.manifest.encoders || {};
    const anchors = (info.manifest.anchors || {}).count;
    $("index-info").textContent = [
      `${info.counts.image} images`,
      `${info.counts.text} captions`,
      info.languages.length ? `languages: ${info.languages.join(", ")}` : null,
      enc.text ? `text encoder: ${enc.text.spec}` : null,
      enc.image ? `image encoder: ${enc.image.spec}` : null,
      anchors ? `${anchors} anchors` : null,
    ].filter(Boolean).join(" · ");
    renderAttribution(info.attribution);
  }

  // -- searching ---------------------------------------------------------------------------------------

  function kValue() {
    const k = Number.parseInt(kInput.value, 10);
    return Number.isFinite(k) ? Math.min(Math.max(k, 1), limits.max_k) : 12;
  }

  function buildRequest() {
    const { query, target } = mode();
    const k = kValue();
    const resultLang = target === "text" && resultLangSelect.value ? resultLangSelect.value : null;
    if (query === "text") {
      const text = q.value.trim();
      if (!text) return null;
      const body = { text, k, target, lang: langSelect.value || null };
      if (resultLang) body.result_lang = resultLang;
      return { label: `“${text}”`, init: { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) } };
    }
    if (!imageFile) return null;
    const data = new FormData();
    data.append("image", imageFile, imageFile.name || "query.png");
    data.append("k", String(k));
    data.append("target", target);
    if (resultLang) data.append("result_lang", resultLang);
    return { label: "your image", init: { method: "POST", body: data } };
  }

  async function search() {
    clearTimeout(timer);
    saveState();
    const req = buildRequest();
    if (inflight) inflight.abort();
    if (!req) {
      inflight = null;
      results.replaceChildren();
      showError("");
      setStatus(mode().query === "text" ? "Type a description to search." : "Choose, drop or paste an image to search.");
      return;
    }
    const controller = new AbortController();
    inflight = controller;
    results.setAttribute("aria-busy", "true");
    try {
      const res = await fetch("/search", { ...req.init, signal: controller.signal });
      const payload = await res.json().catch(() => ({}));
      if (controller !== inflight) return; // a newer query took over
      if (!res.ok) throw new Error(payload.detail || `the server answered ${res.status}`);
      showError("");
      render(payload, req.label);
    } catch (err) {
      if (err.name === "AbortError") return;
      results.replaceChildren();
      setStatus("");
      showError(`Search failed: ${err.message}`);
    } finally {
      if (controller === inflight) {
        results.setAttribute("aria-busy", "false");
        inflight = null;
      }
    }
  }

  function scheduleSearch() {
    clearTimeout(timer);
    timer = setTimeout(search, DEBOUNCE_MS);
  }

  function render(payload, label) {
    const hits = payload.hits || [];
    const target = payload.query ? payload.query.target : mode().target;
    results.classList.toggle("captions", target === "text");
    const top = hits.length ? Math.max(hits[0].score, 1e-6) : 1;
    const items = hits.map((hit, i) => renderHit(hit, i, top));
    results.replaceChildren(...items);
    const noun = target === "text" ? (hits.length === 1 ? "caption" : "captions") : (hits.length === 1 ? "image" : "images");
    const best = hits.length ? ` Best match: ${hits[0].caption || hits[0].id} (score ${hits[0].score.toFixed(3)}).` : "";
    setStatus(`${hits.length} ${noun} for ${label} in ${Math.round(payload.took_ms)} ms.${best}`);
  }

  function renderHit(hit, i, top) {
    const li = document.createElement("li");
    li.className = `hit ${hit.modality}`;
    li.dataset.id = hit.id;
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = String(i + 1);
    rank.setAttribute("aria-hidden", "true");
    li.append(rank);

    if (hit.thumbnail) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.src = hit.thumbnail;
      img.width = 96;
      img.height = 96;
      img.decoding = "async";
      img.loading = i < 24 ? "eager" : "lazy";
      // An image hit is described by its caption; beside a caption hit the picture repeats the text.
      img.alt = hit.modality === "image" ? (hit.caption || `item ${hit.id}`) : "";
      li.append(img);
    }

    const body = document.createElement("div");
    body.className = "body";
    const caption = document.createElement("span");
    caption.className = "caption";
    caption.textContent = hit.caption || hit.id;
    body.append(caption);

    const details = document.createElement("span");
    details.className = "details";
    // One badge per language the item matched in, best first; its title gives that language's caption.
    const captions = hit.captions || (hit.lang ? { [hit.lang]: hit.caption || "" } : {});
    for (const [code, text] of Object.entries(captions)) {
      const lang = document.createElement("span");
      lang.className = "lang";
      lang.textContent = code;
      lang.title = text ? `${languageName(code)}: ${text}` : languageName(code);
      details.append(lang);
    }
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = `score ${hit.score.toFixed(3)}`;
    details.append(score);
    body.append(details);

    const bar = document.createElement("span");
    bar.className = "score-bar";
    bar.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.style.width = `${Math.max(0, Math.min(1, hit.score / top)) * 100}%`;
    bar.append(fill);
    body.append(bar);
    li.append(body);
    return li;
  }

  // -- image input: picker, drag and drop, paste ---------------------------------------------------------

  function useImage(blob) {
    if (!blob) return;
    if (blob.type && !blob.type.startsWith("image/")) {
      showError(`That file is ${blob.type}, not an image.`);
      return;
    }
    if (blob.size > limits.max_upload_bytes) {
      showError(`That image is ${(blob.size / 1048576).toFixed(1)} MiB; the limit is ${(limits.max_upload_bytes / 1048576).toFixed(0)} MiB.`);
      return;
    }
    imageFile = blob;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    preview.src = previewUrl;
    preview.alt = `Query image${blob.name ? `: ${blob.name}` : ""}`;
    preview.hidden = false;
    if (mode().query !== "image") {
      $("mode-i2t").checked = true;
      syncMode();
    }
    search();
  }

  file.addEventListener("change", () => useImage(file.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (e) => {
      if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
      e.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    document.addEventListener(type, (e) => {
      if (e.target === drop || !e.relatedTarget) drop.classList.remove("dragging");
    });
  }
  // Dropping anywhere on the page works, so a miss of the zone does not open the file in the tab.
  document.addEventListener("drop", (e) => {
    drop.classList.remove("dragging");
    const dropped = e.dataTransfer && e.dataTransfer.files[0];
    if (!dropped) return;
    e.preventDefault();
    useImage(dropped);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((it) => it.type.startsWith("image/"));
    if (!item) return;
    e.preventDefault();
    useImage(item.getAsFile());
  });

  // -- wiring ---------------------------------------------------------------------------------------------

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    search();
  });
  q.addEventListener("input", scheduleSearch);
  for (const el of form.querySelectorAll("input[name=mode]")) {
    el.addEventListener("change", () => {
      syncMode();
      search();
    });
  }
  for (const el of [langSelect, resultLangSelect, kInput]) el.addEventListener("change", search);

  const params = restoreState();
  syncMode();
  loadInfo(params)
    .then(() => (buildRequest() ? search() : setStatus(mode().query === "text" ? "Type a description to search." : "Choose, drop or paste an image to search.")))
    .catch((err) => {
      setStatus("");
      showError(`Could not load the index info: ${err.message}`);
    });
})();
