// The studio's page logic: people, the target pose, the painted parsing, renders and downloads.
// All state lives here; the server (spt_tf.studio.server) keeps the people's photos and runs the
// model. Keypoints are [y, x] photo pixels in COCO-18 order, [-1, -1] for a missing joint; a
// parsing map is a Uint8Array of labels 0..9, row by row, at the photo's size.
"use strict";

// Re-render delays after an edit. A pose re-renders as soon as a joint is released; painting
// waits for a pause between strokes. Either way at most one render is in flight and, meanwhile,
// only the latest state is kept (a burst of edits costs one more render, not one per edit).
const POSE_DEBOUNCE_MS = 0;
const PAINT_DEBOUNCE_MS = 250;
const UNDO_DEPTH = 50;
const JOINT_RADIUS = 5;     // display pixels
const GRAB_RADIUS = 14;     // display pixels: a press this near a joint drags it
const VIEW_MAX = [220, 180];   // slot views: max height, width (display pixels)
const WORK_MAX = [400, 340];   // pose and paint canvases

const S = {
  info: null,
  people: { source: null, second: null },
  target: null,          // [18][2] target pose in the source photo's pixels
  edit: null,            // Uint8Array: the parsing being painted
  undo: [],
  joint: 1,              // selected joint (neck)
  label: 3,              // paint label (upper clothes)
  inflight: false,
  pending: null,         // {kind, t0}: the latest render asked for while one was in flight
  timers: {},
  result: null,
  stats: [],             // per render: {kind, release_to_image_ms, model_ms, server_ms}
};
window.studio = S;
// No render in flight, none waiting, none scheduled (tests and benchmarks wait for this).
S.idle = () => !S.inflight && !S.pending && !S.scheduled;

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// ------------------------------------------------------------------ messages and API

function showMessage(text, kind = "error") {
  const m = $("#message");
  m.textContent = text;
  m.className = kind;
  m.hidden = false;
}

function clearMessage() {
  const m = $("#message");
  m.hidden = true;
  m.textContent = "";
  m.className = "";
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  };
  let r;
  try {
    r = await fetch(path, opts);
  } catch (e) {
    throw new Error(`${path}: the studio did not answer (${e.message}); is it still running?`);
  }
  let data;
  try {
    data = await r.json();
  } catch (e) {
    throw new Error(`${path}: HTTP ${r.status} without a JSON reply`);
  }
  if (!r.ok) throw new Error(data.error || `${path}: HTTP ${r.status}`);
  return data;
}

function toB64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromB64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve({ name: file.name, data: r.result.slice(r.result.indexOf(",") + 1), size: file.size });
    r.onerror = () => reject(new Error(`${file.name}: the browser cannot read the file`));
    r.readAsDataURL(file);
  });
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot show the image"));
    img.src = src;
  });
}

const MB = 1 << 20;
const mb = (n) => (n / MB).toFixed(1);

// ------------------------------------------------------------------ drawing

function fitScale(h, w, [maxH, maxW]) {
  return Math.min(maxH / h, maxW / w);
}

function labelCanvas(labels, h, w, opaqueBackground) {
  const c = document.createElement("canvas");
  c.width = w; c.height = h;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h);
  const pal = S.info.palette;
  for (let i = 0; i < labels.length; i++) {
    const col = pal[labels[i]];
    img.data[4 * i] = col[0]; img.data[4 * i + 1] = col[1]; img.data[4 * i + 2] = col[2];
    img.data[4 * i + 3] = labels[i] === 0 && !opaqueBackground ? 0 : 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

const present = (p) => p && p[0] !== -1 && p[1] !== -1;

function drawSkeleton(ctx, kp, scale, selected = -1, ghost = false) {
  const at = (p) => [(p[1] + 0.5) * scale, (p[0] + 0.5) * scale];
  ctx.lineWidth = ghost ? 1.5 : 3;
  S.info.skeleton.forEach(([a, b], i) => {
    if (!present(kp[a]) || !present(kp[b])) return;
    const c = S.info.link_colours[i];
    ctx.strokeStyle = ghost ? "rgba(255,255,255,0.45)" : `rgb(${c[0]},${c[1]},${c[2]})`;
    ctx.beginPath(); ctx.moveTo(...at(kp[a])); ctx.lineTo(...at(kp[b])); ctx.stroke();
  });
  if (ghost) return;
  kp.forEach((p, i) => {
    if (!present(p)) return;
    const [x, y] = at(p);
    ctx.beginPath(); ctx.arc(x, y, i === selected ? JOINT_RADIUS + 2 : JOINT_RADIUS, 0, 2 * Math.PI);
    ctx.fillStyle = i === selected ? "#ffeb3b" : "#fff"; ctx.fill();
    ctx.lineWidth = 1.5; ctx.strokeStyle = "#000"; ctx.stroke();
  });
}

// Draws a photo with optional parsing overlay and skeleton(s) into `canvas`, sized to fit `max`.
function drawPerson(canvas, person, max, { kp = null, labels = null, ghost = null, selected = -1 } = {}) {
  const scale = fitScale(person.height, person.width, max);
  canvas.width = Math.round(person.width * scale);
  canvas.height = Math.round(person.height * scale);
  canvas.dataset.scale = scale;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(person.img, 0, 0, canvas.width, canvas.height);
  if (labels && $("#show-parsing").checked) {
    ctx.globalAlpha = $("#overlay-opacity").value / 100;
    ctx.drawImage(labelCanvas(labels, person.height, person.width, false), 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
  }
  if ($("#show-skeleton").checked) {
    if (ghost) drawSkeleton(ctx, ghost, scale, -1, true);
    if (kp) drawSkeleton(ctx, kp, scale, selected);
  }
  return scale;
}

function toPhoto(canvas, e, person) {
  const r = canvas.getBoundingClientRect();
  const scale = Number(canvas.dataset.scale);
  const x = ((e.clientX - r.left) * canvas.width / r.width) / scale - 0.5;
  const y = ((e.clientY - r.top) * canvas.height / r.height) / scale - 0.5;
  return [Math.min(Math.max(y, 0), person.height - 1), Math.min(Math.max(x, 0), person.width - 1)];
}

function redrawSlots() {
  for (const role of ["source", "second"]) {
    const p = S.people[role];
    const slot = $(`#slot-${role}`);
    if (!p) continue;
    drawPerson($("canvas.view", slot), p, VIEW_MAX, { kp: p.keypoints, labels: p.labels });
  }
}

function redrawPose() {
  const src = S.people.source;
  if (!src || !S.target) return;
  drawPerson($("#pose-canvas"), src, WORK_MAX, { kp: S.target, ghost: src.keypoints, selected: S.joint });
  const sel = $("#joint-select");
  S.info.keypoint_names.forEach((name, i) => {
    sel.options[i].textContent = present(S.target[i]) ? name : `${name} (missing)`;
  });
  sel.value = String(S.joint);
}

function redrawPaint() {
  const src = S.people.source;
  if (!src || !S.edit) return;
  drawPerson($("#paint-canvas"), src, WORK_MAX, { labels: S.edit });
  const map = $("#map-canvas");
  const scale = fitScale(src.height, src.width, [200, 120]);
  map.width = Math.round(src.width * scale); map.height = Math.round(src.height * scale);
  const ctx = map.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(labelCanvas(S.edit, src.height, src.width, true), 0, 0, map.width, map.height);
}

// The texture tab: both people with only the chosen garment's label overlaid (all labels for "all").
function redrawTexture() {
  const garment = $("#garment-select").value;
  const label = S.info.labels.indexOf(garment);
  for (const [role, id] of [["source", "#texture-source"], ["second", "#texture-donor"]]) {
    const p = S.people[role];
    if (!p) continue;
    const labels = p.labels && label >= 0 ? p.labels.map((v) => (v === label ? v : 0)) : p.labels;
    drawPerson($(id), p, [260, 200], { labels });
  }
}

function redrawAll() { redrawSlots(); redrawPose(); redrawPaint(); redrawTexture(); }

// ------------------------------------------------------------------ people

async function setPerson(role, data) {
  const person = {
    ...data, img: await loadImage(data.image),
    labels: data.parsing ? fromB64(data.parsing) : null,
  };
  S.people[role] = person;
  const info = $(`#slot-${role} .person-info`);
  info.textContent = `${person.name} (${person.height}×${person.width}) · keypoints: ${person.keypoints_from}` +
    (person.parsing_from ? ` · parsing: ${person.parsing_from}` : " · no parsing");
  if (role === "source") {
    S.target = person.keypoints.map((p) => p.slice());
    S.edit = person.labels ? person.labels.slice() : null;
    S.undo = [];
    clearResult();
  }
  redrawAll();
}

async function loadDataset(role) {
  const name = $(`#slot-${role} .dataset-select`).value;
  if (!name) return showMessage("dataset: choose a test image");
  try {
    await setPerson(role, await api("/api/person", { dataset: name, role }));
    clearMessage();
    if (role === "source") requestRender("pose");
  } catch (e) {
    showMessage(e.message);
  }
}

async function loadUpload(role) {
  const slot = $(`#slot-${role}`);
  try {
    const file = (cls) => $(cls, slot).files[0] || null;
    const image = file(".up-image");
    if (!image) throw new Error("photo: choose a photo to upload");
    const files = { image, keypoints: file(".up-keypoints"), parsing: file(".up-parsing") };
    const body = { role, csv_row: $(".up-row", slot).value || null, person_index: $(".up-person", slot).value || null,
                   parsing_format: $(".up-format", slot).value };
    const sizes = [];
    for (const [field, f] of Object.entries(files)) {
      if (!f) continue;
      body[field] = await readFile(f);
      sizes.push([f.name, f.size]);
      delete body[field].size;
    }
    const text = JSON.stringify(body);
    if (text.length > S.info.max_request_bytes) {
      sizes.sort((a, b) => b[1] - a[1]);
      throw new Error(`${sizes[0][0]}: the upload would be a ${mb(text.length)} MB request (${sizes[0][0]} is ` +
        `${mb(sizes[0][1])} MB, sent as base64); the studio takes requests up to ` +
        `${mb(S.info.max_request_bytes)} MB (--max_request_mb)`);
    }
    await setPerson(role, await api("/api/person", text));
    clearMessage();
    if (role === "source") requestRender("pose");
  } catch (e) {
    showMessage(e.message);
  }
}

// ------------------------------------------------------------------ renders

function requestRender(kind, t0 = performance.now(), delay = 0) {
  clearTimeout(S.timers.render);
  const go = () => { S.scheduled = false; S.pending = { kind, t0 }; pump(); };
  S.scheduled = delay > 0;
  if (delay > 0) S.timers.render = setTimeout(go, delay); else go();
}

function renderBody(kind) {
  const src = S.people.source;
  if (!src) throw new Error("source: load a person first");
  if (kind === "pose") return ["/api/pose", { person: src.id, target_keypoints: S.target }];
  if (kind === "edit") return ["/api/edit", { person: src.id, edited_parsing: toB64(S.edit) }];
  if (!S.people.second) throw new Error("second person: load one to take a garment from");
  return ["/api/texture", { person: src.id, donor: S.people.second.id, garment: $("#garment-select").value }];
}

async function pump() {
  if (S.inflight || !S.pending) return;
  const job = S.pending;
  S.pending = null;
  S.inflight = true;
  try {
    const [path, body] = renderBody(job.kind);
    const res = await api(path, body);
    await showResult(res, job);
    clearMessage();
  } catch (e) {
    showMessage(e.message);
  } finally {
    S.inflight = false;
    pump();
  }
}

function clearResult() {
  S.result = null;
  const img = $("#result-image");
  img.removeAttribute("src");
  delete img.dataset.resultId;
  $("#extras").textContent = "";
  $("#latency").textContent = "";
  $("#result-mode").textContent = "";
  for (const id of ["#download-image", "#download-bundle"]) {
    $(id).classList.add("disabled");
    $(id).removeAttribute("href");
  }
}

async function showResult(res, job) {
  const img = $("#result-image");
  const src = S.people.source;
  const scale = fitScale(src.height, src.width, WORK_MAX);
  img.style.width = `${Math.round(src.width * scale)}px`;
  img.style.height = `${Math.round(src.height * scale)}px`;
  await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = res.image; });
  const ms = performance.now() - job.t0;
  img.dataset.resultId = res.id;
  S.result = res;
  S.stats.push({ kind: job.kind, release_to_image_ms: ms, model_ms: res.model_ms, server_ms: res.server_ms });
  const names = { pose: "pose transfer", edit: "parsing edit", texture: "texture transfer" };
  $("#result-mode").textContent = names[res.mode] + (res.changed_pixels != null ? ` (${res.changed_pixels} labels changed)` : "");
  $("#latency").textContent = `release → image ${ms.toFixed(0)} ms · server ${res.server_ms.toFixed(0)} ms ` +
    `· model ${res.model_ms.toFixed(0)} ms`;
  const extras = $("#extras");
  extras.textContent = "";
  for (const x of res.extras) {
    const div = document.createElement("div");
    div.className = "extra";
    const e = document.createElement("img");
    e.src = x.image;
    const s = fitScale(src.height, src.width, [140, 120]);
    e.style.width = `${Math.round(src.width * s)}px`; e.style.height = `${Math.round(src.height * s)}px`;
    div.append(e, x.caption);
    extras.append(div);
  }
  const dl = { "#download-image": [res.output, `studio_${res.mode}_${res.id}.png`],
               "#download-bundle": [res.bundle, `studio_${res.mode}_${res.id}.zip`] };
  for (const [id, [href, name]] of Object.entries(dl)) {
    $(id).href = href;
    $(id).download = name;
    $(id).classList.remove("disabled");
  }
}

// ------------------------------------------------------------------ pose tab

function setupPose() {
  const canvas = $("#pose-canvas");
  const sel = $("#joint-select");
  S.info.keypoint_names.forEach((name, i) => sel.add(new Option(name, String(i))));
  sel.addEventListener("change", () => { S.joint = Number(sel.value); redrawPose(); });
  let drag = -1, moved = false;
  canvas.addEventListener("pointerdown", (e) => {
    const src = S.people.source;
    if (!src || !S.target) return;
    const scale = Number(canvas.dataset.scale);
    const [y, x] = toPhoto(canvas, e, src);
    let best = -1, bestD = GRAB_RADIUS / scale;
    S.target.forEach((p, i) => {
      if (!present(p)) return;
      const d = Math.hypot(p[0] - y, p[1] - x);
      if (d <= bestD) { best = i; bestD = d; }
    });
    if (best >= 0) {
      drag = best; moved = false; S.joint = best;
      canvas.setPointerCapture(e.pointerId);
      redrawPose();
    } else if (!present(S.target[S.joint])) {  // place the selected missing joint here
      S.target[S.joint] = [y, x];
      redrawPose();
      requestRender("pose", performance.now(), POSE_DEBOUNCE_MS);
    }
  });
  canvas.addEventListener("pointermove", (e) => {
    if (drag < 0) return;
    S.target[drag] = toPhoto(canvas, e, S.people.source);
    moved = true;
    redrawPose();
  });
  const release = (e) => {
    if (drag < 0) return;
    const t0 = performance.now();
    if (e.type === "pointerup") S.target[drag] = toPhoto(canvas, e, S.people.source);
    drag = -1;
    redrawPose();
    if (moved) requestRender("pose", t0, POSE_DEBOUNCE_MS);
  };
  canvas.addEventListener("pointerup", release);
  canvas.addEventListener("pointercancel", release);
  $("#joint-remove").addEventListener("click", () => {
    if (!S.target || !present(S.target[S.joint])) return;
    S.target[S.joint] = [-1, -1];
    redrawPose();
    requestRender("pose");
  });
  $("#pose-reset").addEventListener("click", () => {
    if (!S.people.source) return;
    S.target = S.people.source.keypoints.map((p) => p.slice());
    redrawPose();
    requestRender("pose");
  });
  $("#pose-take").addEventListener("click", async () => {
    try {
      if (!S.people.source || !S.people.second) throw new Error("second person: load one to take its pose");
      const r = await api("/api/pose_of", { person: S.people.source.id, other: S.people.second.id });
      S.target = r.keypoints;
      redrawPose();
      requestRender("pose");
    } catch (e) {
      showMessage(e.message);
    }
  });
}

// ------------------------------------------------------------------ parsing tab

function pushUndo() {
  S.undo.push(S.edit.slice());
  if (S.undo.length > UNDO_DEPTH) S.undo.shift();
}

function paintAt(y, x) {
  const src = S.people.source;
  const r = Number($("#brush-size").value) / 2;
  const h = src.height, w = src.width;
  const y0 = Math.max(0, Math.floor(y - r)), y1 = Math.min(h - 1, Math.ceil(y + r));
  const x0 = Math.max(0, Math.floor(x - r)), x1 = Math.min(w - 1, Math.ceil(x + r));
  for (let yy = y0; yy <= y1; yy++)
    for (let xx = x0; xx <= x1; xx++)
      if ((yy - y) ** 2 + (xx - x) ** 2 <= r * r) S.edit[yy * w + xx] = S.label;
  S.edit[Math.round(y) * w + Math.round(x)] = S.label;  // the pixel under the pointer, whatever the brush
}

function paintLine(a, b) {
  const n = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1])));
  for (let i = 0; i <= n; i++) paintAt(a[0] + (b[0] - a[0]) * i / n, a[1] + (b[1] - a[1]) * i / n);
}

function setupPaint() {
  const pal = $("#palette");
  S.info.labels.forEach((name, i) => {
    const b = document.createElement("button");
    b.dataset.label = String(i);
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${S.info.palette[i].join(",")})`;
    b.append(sw, name);
    b.addEventListener("click", () => { S.label = i; markLabel(); });
    pal.append(b);
  });
  const markLabel = () => $$("#palette button").forEach((b) => b.classList.toggle("active", Number(b.dataset.label) === S.label));
  markLabel();
  const brush = $("#brush-size");
  const showBrush = () => { $("#brush-value").textContent = `${brush.value} px`; };
  brush.addEventListener("input", showBrush);
  showBrush();
  const canvas = $("#paint-canvas");
  let last = null;
  canvas.addEventListener("pointerdown", (e) => {
    if (!S.edit) return;
    clearTimeout(S.timers.render);  // a new stroke postpones the render the last one scheduled
    S.scheduled = false;
    pushUndo();
    last = toPhoto(canvas, e, S.people.source);
    paintAt(...last);
    canvas.setPointerCapture(e.pointerId);
    redrawPaint();
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = toPhoto(canvas, e, S.people.source);
    paintLine(last, p);
    last = p;
    redrawPaint();
  });
  const end = () => {
    if (!last) return;
    last = null;
    redrawPaint();
    redrawSlots();
    requestRender("edit", performance.now(), PAINT_DEBOUNCE_MS);
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("#paint-undo").addEventListener("click", () => {
    if (!S.undo.length) return showMessage("undo: nothing to undo", "info");
    S.edit = S.undo.pop();
    redrawPaint();
    requestRender("edit");
  });
  $("#paint-reset").addEventListener("click", () => {
    if (!S.people.source || !S.edit) return;
    pushUndo();
    S.edit = S.people.source.labels.slice();
    redrawPaint();
    requestRender("edit");
  });
  const presets = $("#presets");
  const add = (text, field, value) => {
    const b = document.createElement("button");
    b.textContent = text;
    b.dataset[field] = value;
    b.addEventListener("click", async () => {
      try {
        if (!S.edit) throw new Error("source: load a person with a parsing map first");
        const r = await api("/api/edit_preset", { person: S.people.source.id, parsing: toB64(S.edit), [field]: value });
        pushUndo();
        S.edit = fromB64(r.parsing);
        redrawPaint();
        requestRender("edit");
      } catch (e) {
        showMessage(e.message);
      }
    });
    presets.append(b);
  };
  presets.append("sleeves:");
  S.info.sleeves.forEach((v) => add(v, "sleeves", v));
  presets.append("lower:");
  S.info.lowers.forEach((v) => add(v, "lower", v));
}

// ------------------------------------------------------------------ texture tab, tabs, start

function setupTexture() {
  const sel = $("#garment-select");
  S.info.garments.forEach((g) => sel.add(new Option(g, g)));
  sel.value = S.info.garments.includes("upper_clothes") ? "upper_clothes" : S.info.garments[0];
  $("#texture-run").addEventListener("click", () => requestRender("texture"));
  sel.addEventListener("change", () => {
    redrawTexture();
    if (S.people.second) requestRender("texture");
  });
}

function setupTabs() {
  $$(".tabs button").forEach((b) => b.addEventListener("click", () => {
    $$(".tabs button").forEach((o) => o.classList.toggle("active", o === b));
    $$(".tab").forEach((t) => { t.hidden = t.id !== `tab-${b.dataset.tab}`; });
    redrawAll();
  }));
}

function setupSlots() {
  const tpl = $("#slot-template");
  for (const role of ["source", "second"]) {
    const slot = $(`#slot-${role}`);
    slot.append(tpl.content.cloneNode(true));
    const sel = $(".dataset-select", slot);
    const ds = S.info.dataset;
    if (ds && ds.names.length) {
      ds.names.forEach((n) => sel.add(new Option(n, n)));
      if (role === "second" && ds.names.length > 1) sel.selectedIndex = 1;
    } else {
      $(".dataset-row", slot).hidden = true;
    }
    $(".load-dataset", slot).addEventListener("click", () => loadDataset(role));
    $(".load-upload", slot).addEventListener("click", () => loadUpload(role));
  }
  for (const id of ["#show-skeleton", "#show-parsing", "#overlay-opacity"]) $(id).addEventListener("input", redrawAll);
}

async function start() {
  try {
    S.info = await api("/api/info");
  } catch (e) {
    return showMessage(e.message);
  }
  const m = S.info.model;
  $("#model-info").textContent = `${m.kind} ${m.source} (${m.height}×${m.width}) · pose detector: ` +
    `${S.info.can_detect ? "yes" : "no"} · human parser: ${S.info.can_parse ? "yes" : "no"}` +
    (S.info.dataset ? ` · dataset ${S.info.dataset.root}` : "");
  setupSlots();
  setupPose();
  setupPaint();
  setupTexture();
  setupTabs();
  document.body.dataset.ready = "1";
}

start();
