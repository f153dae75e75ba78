// Sampler Lab in the browser: shows only the widgets of the selected sampler
// and schedule, and plots the schedule, the fresh noise of the sampler's own
// noise rule and the sigmas a run used.
//
// Every number drawn comes from the server (GET /sampler_lab/sigmas, /info,
// /model) or from what a node reports after it ran: no schedule or sampler
// math lives here. The plot is a DOM widget (a <canvas> in an element of our
// own), so it draws in the classic canvas, in Vue nodes ("Nodes 2.0", where
// it is placed in the node's body) and in the old frontend. It only draws
// and edits ordinary widget values: hidden widgets keep their values and
// their place, the plot never serializes, and the model the preview assumes
// lives in node.properties, so a saved workflow and its API prompt are the
// same with or without this file. Where the frontend lacks what it needs,
// it does nothing and logs nothing.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const EXT = "SamplerLab.SchedulePreview";
const PLOT = "sampler_lab_plot";
const MODEL = "sampler_lab_model";       // node property: auto | sd15 | sdxl | flow
const SHIFT = "sampler_lab_shift";       // node property: shift for a manual flow choice
const OLD_FAMILY = "sampler_lab_family"; // the earlier property (its "sd15" was a default)
const CHOICES = ["auto", "sd15", "sdxl", "flow"];
const PLOT_HEIGHT = 196;   // canvas, css px
const HEAD_HEIGHT = 24;    // the model row above it
const MESSAGE_HEIGHT = 26; // a display node before its first run
const DEBOUNCE_MS = 25;
const HIDDEN_TYPE = "sampler_lab_hidden"; // the old frontend's way to hide a widget
const TOGGLE = "advanced";                // our fold row (never serialized)
const ADVANCED_OPEN = "sampler_lab_advanced"; // node property: the fold row's state
const ADVANCED_NAMES = Symbol("sampler_lab_advanced_names"); // on the node class
const PLACEHOLDERS = Symbol("sampler_lab_placeholders");     // on the node class
// Widget types Vue nodes draw (frontend 1.27); others (ours) are not listed there.
const VUE_TYPES = new Set(["button", "string", "STRING", "text", "int", "INT", "float", "FLOAT",
  "number", "slider", "boolean", "BOOLEAN", "toggle", "combo", "COMBO", "color", "COLOR",
  "multiselect", "selectbutton", "textarea", "TEXTAREA", "multiline", "customtext", "chart",
  "imagecompare", "galleria", "fileupload", "file", "treeselect", "markdown", "MARKDOWN"]);

// How each node type uses this file. "preview": the plot asks the server for
// the schedule of the widgets; "custom": the points come from the text
// widget and can be dragged; "display": only what the node reports after it
// ran. `owner`: the widget whose value picks which <owner>_<name> widgets show.
const KINDS = {
  SamplerLabKSampler: { source: "preview", noise: true },
  SamplerLabKSamplerAdvanced: { source: "preview", noise: true, range: true },
  SamplerLabScheduler: { source: "preview", params: true, owner: "scheduler", table: "schedules" },
  SamplerLabSampler: { owner: "sampler_name", table: "samplers" },
  SamplerLabCustomSigmas: { source: "custom" },
  SamplerLabOptimizeSchedule: { source: "display", outcome: true },
  SamplerLabTuneSampler: { source: "display", outcome: true },
  SamplerLabSigmasPreview: { source: "display" },
};

// --- server -----------------------------------------------------------------

function getJSON(route) {
  // api.fetchApi adds the frontend's API prefix where it has one.
  const go = typeof api?.fetchApi === "function" ? api.fetchApi(route) : fetch(route);
  return go.then((r) => r.json().then((body) => (r.ok ? body : Promise.reject(body))));
}

let info = null;
let infoPromise = null;
function loadInfo() {
  infoPromise ??= getJSON("/sampler_lab/info").then((body) => { info = body; return body; },
    () => null);
  return infoPromise;
}

const cache = new Map(); // query -> answer, shared by all nodes
const CACHE_SIZE = 300;
function remember(key, value) {
  cache.set(key, value);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
}

// --- widgets ------------------------------------------------------------------

function widgetOf(node, name) {
  return node.widgets?.find((w) => w && w.name === name);
}

function valueOf(node, name, fallback) {
  const w = widgetOf(node, name);
  return w === undefined || w.value === undefined || w.value === null ? fallback : w.value;
}

function isLinked(node, w) {
  const input = node.inputs?.find((i) => i?.widget?.name === w.name);
  return input?.link !== undefined && input?.link !== null;
}

function vueMode() {
  return !!globalThis.LiteGraph?.vueNodesMode;
}

// Which widget belongs to which sampler / schedule: from the server's info
// (each sampler's options, each schedule's parameters), by the nodes' naming
// <owner>_<name>. Without info, from the owner widget's own choices.
function ownersOf(node, kind) {
  const out = new Map();
  const table = info?.[kind.table];
  const owners = table ? Object.keys(table)
    : (widgetOf(node, kind.owner)?.options?.values ?? []);
  for (const owner of owners) {
    const names = table
      ? Object.keys(kind.table === "samplers" ? table[owner].options ?? {} : table[owner] ?? {})
      : null;
    for (const w of node.widgets ?? []) {
      if (!w?.name || w.name === kind.owner) continue;
      const own = names ? names.some((n) => `${owner}_${n}` === w.name)
        : w.name.startsWith(`${owner}_`) && !owners.some((o) => o.length > owner.length
          && o.startsWith(owner) && w.name.startsWith(`${o}_`));
      if (own) out.set(w, owner);
    }
  }
  return out;
}

// Frontends whose Vue nodes fold inputs flagged advanced themselves ("Show
// Advanced" button, the "Always show advanced widgets" setting; frontend
// 1.3x and later) and read `widget.hidden` / `options.hidden` live. Frontend
// 1.27's Vue nodes do neither (its canvas-only `toggleAdvanced` does not
// count): they read `options.hidden` once, when the node is first drawn, so
// there it stays unset and rows are hidden on their elements instead.
function modernFrontend(node) {
  if (typeof node.isWidgetRowVisible === "function") return true;
  try {
    return app.extensionManager?.setting?.get?.("Comfy.Node.AlwaysShowAdvancedWidgets") !== undefined;
  } catch { return false; }
}

function liveVisibility(node) {
  return modernFrontend(node);
}

function nativeAdvanced(node) {
  return vueMode() && modernFrontend(node);
}

// Hide or show one widget in the classic canvas (current and old frontends)
// and, where the frontend reads it live, in Vue nodes.
function setHidden(node, w, hide) {
  if (!!w.__labHidden === hide) return false;
  w.__labHidden = hide;
  const modern = typeof node.isWidgetVisible === "function";
  const live = liveVisibility(node);
  if (hide) {
    if (Object.prototype.hasOwnProperty.call(w, "computeSize")) w.__labSize = w.computeSize;
    w.computeSize = () => [0, -4]; // -4: the gap the canvas adds after each widget
    if (modern) w.hidden = true;
    else if (!String(w.type).startsWith("converted-widget")) {
      w.__labType = w.type;
      w.type = HIDDEN_TYPE;
    }
    if (live && w.options) w.options.hidden = true;
  } else {
    if (w.__labSize) w.computeSize = w.__labSize; else delete w.computeSize;
    delete w.__labSize;
    if (modern) w.hidden = false;
    if (w.type === HIDDEN_TYPE) w.type = w.__labType;
    delete w.__labType;
    if (w.options?.hidden) delete w.options.hidden;
  }
  return true;
}

// Vue nodes draw widgets from a copy taken when the node was added, so a
// widget is shown or hidden there on its element.
function vueWidgetElements(node) {
  const root = document.querySelector(`[data-node-id="${node.id}"]`);
  const list = root?.querySelector(".lg-node-widgets");
  if (!list) return null;
  const map = new Map();
  const named = [...list.querySelectorAll("[data-widget-name]")];
  if (named.length) { // newer frontends name each row
    for (const el of named) {
      const w = widgetOf(node, el.dataset.widgetName);
      if (w) map.set(w, el);
    }
    return map;
  }
  const els = [...list.children].filter((el) => el.classList?.contains("lg-widget-container"));
  const drawn = (node.widgets ?? []).filter((w) => w && w.type && !w.options?.hidden
    && !w.options?.canvasOnly && (VUE_TYPES.has(w.type) || VUE_TYPES.has(w.__labType)));
  if (els.length === drawn.length) {
    drawn.forEach((w, i) => map.set(w, els[i]));
  } else { // by the label each row shows
    for (const el of els) {
      const label = el.querySelector("p")?.textContent?.trim();
      const w = drawn.find((x) => x.name === label || x.label === label);
      if (w) map.set(w, el);
    }
  }
  return map;
}

// --- the advanced fold ----------------------------------------------------------
// Inputs flagged {"advanced": true} in INPUT_TYPES (the server's node
// definition) fold into one toggle row, open or closed per node
// (node.properties), on every frontend but those that fold them natively.
// The toggle is ours: never in widgets_values nor the API prompt.

function advancedOpen(node) {
  if (node.properties?.[ADVANCED_OPEN] === true) return true;
  try { // the frontend's "always show advanced widgets" setting, where it has one
    return app.extensionManager?.setting?.get?.("Comfy.Node.AlwaysShowAdvancedWidgets") === true;
  } catch { return false; }
}

function setAdvancedOpen(node, open) {
  node.properties ??= {};
  node.properties[ADVANCED_OPEN] = !!open;
  if (modernFrontend(node)) node.showAdvanced = !!open; // the same state in its Vue nodes
}

function addFoldToggle(node, state) {
  if (!state.advanced.size || typeof node.addWidget !== "function") return;
  const toggle = node.addWidget("toggle", TOGGLE, advancedOpen(node), (v) => {
    setAdvancedOpen(node, !!v);
    state.changedAt ??= performance.now();
    refresh(state);
  }, { on: "shown", off: "folded", serialize: false });
  if (!toggle) return;
  toggle.serialize = false; // not in widgets_values (current frontend)
  toggle.serializeValue = () => undefined;
  toggle.options ??= {};
  toggle.options.serialize = false; // not in the API prompt (every frontend)
  toggle.tooltip = "Show the advanced inputs (noise scale and window, churn, restart, detail, "
    + "solver internals). Their values are used and saved either way.";
  state.toggle = toggle;
}

// Which widgets to hide: another sampler's / schedule's options, and the
// advanced ones while folded. A widget fed by a link is never hidden.
function applyVisibility(state) {
  const { node, kind } = state;
  const owners = kind.owner ? ownersOf(node, kind) : new Map();
  const selected = kind.owner ? valueOf(node, kind.owner, null) : null;
  const native = nativeAdvanced(node);
  if (native && node.properties?.[ADVANCED_OPEN] !== undefined
      && !!node.showAdvanced !== !!node.properties[ADVANCED_OPEN]) {
    node.properties[ADVANCED_OPEN] = !!node.showAdvanced; // the frontend's button was used
  }
  const open = advancedOpen(node);
  let changed = false;
  let folded = 0;
  const shown = [];
  for (const w of node.widgets ?? []) {
    if (!w || w === state.widget || w === state.toggle) continue;
    const linked = isLinked(node, w);
    const owner = owners.get(w);
    const other = owner !== undefined && owner !== selected && !linked;
    const adv = state.advanced.has(w.name) && !linked && !other;
    if (adv) folded++;
    // the frontend's own fold: only what this selection could show
    if (state.advanced.has(w.name) && modernFrontend(node)) w.advanced = adv;
    const hide = other || (adv && !open && !native);
    if (owner !== undefined || state.advanced.has(w.name)) changed = setHidden(node, w, hide) || changed;
    if (owner !== undefined && !hide) shown.push(w.name);
  }
  if (state.toggle) {
    const t = state.toggle;
    changed = setHidden(node, t, native || folded === 0) || changed;
    if (t.value !== open) t.value = open;
    t.label = `advanced (${folded})`;
  }
  state.shownOptions = shown;
  state.foldedCount = folded;
  if (vueMode()) {
    const els = vueWidgetElements(node);
    if (els) {
      const hints = node.constructor?.[PLACEHOLDERS] ?? {};
      for (const [w, el] of els) {
        const want = w.__labHidden ? "none" : "";
        if (el.style.display !== want) el.style.display = want;
        // the declared placeholder (frontend 1.27's text rows show none)
        const input = hints[w.name] ? el.querySelector("input, textarea") : null;
        if (input && !input.placeholder) input.placeholder = hints[w.name];
      }
    }
  }
  if (changed) fitHeight(node);
}

// The node's height after widgets were hidden or shown, or the plot changed size.
// Vue nodes of frontend 1.27 size themselves to their rows; newer ones keep
// the node's size as a floor, so there it shrinks too (else the frame runs
// on below the last row, for every hidden widget).
function fitHeight(node) {
  if (vueMode() && !modernFrontend(node)) return;
  if (typeof node.computeSize !== "function" || !node.size) return;
  const [w, h] = node.computeSize();
  node.setSize?.([Math.max(node.size[0], w), h]);
  redraw(node);
}

function redraw(node) {
  node.setDirtyCanvas?.(true, true);
  app.graph?.setDirtyCanvas?.(true, true);
}

// --- which model the preview assumes ------------------------------------------

function manualChoice(node) {
  const p = node.properties ?? {};
  if (CHOICES.includes(p[MODEL])) return p[MODEL];
  // the earlier property: its "sd15" was only ever a default
  if (p[OLD_FAMILY] === "flow" || p[OLD_FAMILY] === "sdxl") return p[OLD_FAMILY];
  return "auto";
}

function manualShift(node) {
  const s = Number(node.properties?.[SHIFT]);
  return Number.isFinite(s) && s > 0 ? s : 3.0;
}

function familyLabel(family) {
  return { sd15: "SD1.5", sdxl: "SDXL", flow: "flow" }[family] ?? family;
}

function describe(found) {
  const fam = found.family === "flow" && found.shift ? `flow, shift ${fmt(found.shift)}` : found.family;
  return fam;
}

// The model the preview assumes: a manual choice, else the last run's
// model, else what the graph upstream says, else a guess.
function assumedModel(state) {
  const { node } = state;
  const choice = manualChoice(node);
  if (choice !== "auto") {
    const shift = choice === "flow" ? manualShift(node) : null;
    const run = state.runModel;
    const clash = run && (run.family === "flow") !== (choice === "flow")
      ? `the last run used ${describe(run)} (${run.model})` : null;
    return { family: choice, shift, source: "manual", text: "set by hand", warn: clash };
  }
  if (state.runModel) {
    return { ...state.runModel, source: "run",
      text: `from the last run (${state.runModel.model})` };
  }
  if (state.upstream) return state.upstream;
  return { family: "sd15", shift: null, source: "guess",
    text: "no model connected yet", guess: true };
}

const ORIGIN_DEPTH = 24;

function linkOrigin(node, input) {
  const link = input?.link;
  if (link === null || link === undefined) return null;
  const graph = node.graph ?? app.graph;
  const info_ = graph?.links?.get?.(link) ?? graph?.links?.[link];
  if (!info_) return null;
  return graph.getNodeById?.(info_.origin_id) ?? null;
}

// Walk up the MODEL wire: the first ModelSampling* node (the host computes
// its sampling from the node's own widgets) or model loader (the host reads
// the file's header) decides. Returns a query for GET /sampler_lab/model.
function upstreamQuery(node) {
  const seen = new Set();
  let cur = node;
  for (let depth = 0; depth < ORIGIN_DEPTH && cur && !seen.has(cur); depth++) {
    seen.add(cur);
    const input = cur.inputs?.find((i) => i?.type === "MODEL" && i.link != null);
    const origin = linkOrigin(cur, input);
    if (!origin) return null;
    const type = origin.comfyClass ?? origin.type ?? "";
    if (/^ModelSampling/.test(type)) {
      const q = new URLSearchParams({ node: type });
      for (const w of origin.widgets ?? []) {
        if (!w?.name || w.options?.serialize === false || isLinked(origin, w)) continue;
        if (typeof w.value === "number" || typeof w.value === "string" || typeof w.value === "boolean") {
          q.set(w.name, String(w.value));
        }
      }
      const base = upstreamQuery(origin); // the model it patches, if a loader says
      const ckpt = base ? new URLSearchParams(base) : null;
      for (const key of ["ckpt_name", "unet_name"]) if (ckpt?.get(key)) q.set(key, ckpt.get(key));
      return { query: q.toString(), what: type };
    }
    for (const key of ["ckpt_name", "unet_name"]) {
      const w = widgetOf(origin, key);
      if (w && typeof w.value === "string" && w.value && !isLinked(origin, w)) {
        return { query: new URLSearchParams({ [key]: w.value }).toString(), what: w.value };
      }
    }
    cur = origin;
  }
  return null;
}

function refreshUpstream(state) {
  const found = upstreamQuery(state.node);
  const key = found?.query ?? "";
  if (key === state.upstreamKey) return;
  state.upstreamKey = key;
  if (!found) { state.upstream = null; changed(state); return; }
  const done = (body) => {
    if (state.upstreamKey !== key) return;
    state.upstream = body && !body.error ? { ...body,
      source: "upstream", text: `from ${found.what}` } : { family: "sd15", shift: null,
      source: "guess", guess: true, why: body?.error ?? "the server could not tell",
      text: `${found.what} not readable here` };
    changed(state);
  };
  const hit = cache.get(`model?${key}`);
  if (hit) { done(hit); return; }
  getJSON(`/sampler_lab/model?${key}&soft=1`).then((body) => {
    remember(`model?${key}`, body);
    done(body);
  }, (err) => done({ error: err?.error ?? "no answer" }));
}

// --- the schedule preview -------------------------------------------------------

function etaParam(node) {
  const ns = Number(valueOf(node, "noise_strength", -1));
  return Number.isFinite(ns) ? String(ns) : "-1";
}

// What the preview depends on, as the query the route takes (null: nothing
// to ask). Its string form tells when a redraw is due.
function previewQuery(state) {
  const { node, kind } = state;
  const scheduler = valueOf(node, "scheduler", null);
  const steps = Math.round(Number(valueOf(node, "steps", NaN)));
  if (typeof scheduler !== "string" || !(steps >= 1)) return null;
  const maxSteps = info?.max_steps ?? 1000;
  const q = new URLSearchParams();
  q.set("scheduler", scheduler);
  q.set("steps", String(Math.min(steps, maxSteps)));
  if (!kind.range) {
    const denoise = Number(valueOf(node, "denoise", 1));
    // the route caps steps / denoise; past that there is nothing to draw
    if (denoise > 0 && denoise < 1 && steps / denoise > 10 * maxSteps) return null;
    q.set("denoise", String(denoise));
  }
  const model = assumedModel(state);
  const families = info?.families ?? ["sd15", "sdxl", "flow"];
  const family = families.includes(model.family) ? model.family : "sd15";
  q.set("family", family);
  if (family === "flow" && model.shift) q.set("shift", String(model.shift));
  if (kind.params && info?.schedules?.[scheduler]) {
    for (const [name, spec] of Object.entries(info.schedules[scheduler])) {
      const v = valueOf(node, `${scheduler}_${name}`, undefined);
      if (v === undefined || (spec.auto && Number(v) === -1)) continue;
      q.set(name, String(v));
    }
  }
  // two experts: with model_low connected the server also answers the boundary's sigma
  if (node.inputs?.some((i) => i?.name === "model_low" && i.link != null)) {
    q.set("boundary", String(valueOf(node, "boundary", 875)));
    q.set("boundary_unit", String(valueOf(node, "boundary_unit", "timestep")));
  }
  if (kind.noise) {
    const sampler = valueOf(node, "sampler_name", null);
    if (typeof sampler === "string" && (!info || info.samplers?.[sampler])) {
      q.set("sampler", sampler);
      q.set("eta", etaParam(node));
      q.set("s_noise", String(Number(valueOf(node, "s_noise", 1))));
    }
  }
  return q.toString();
}

function makeState(node, kind) {
  return {
    node, kind, key: null, pendingKey: null, timer: null, seq: 0, sentAt: -Infinity,
    fetchMs: null, sigmas: null, noise: null, progress: null, used: null, usedKey: null,
    error: null, runModel: null, upstream: null, upstreamKey: null, outcome: null,
    summary: null, changedAt: null, drawnAt: null, drawnKey: null, latency: null,
    plot: null, points: [], hover: null, drag: null, customText: null, shownOptions: [],
    el: null, canvas: null, head: null, widget: null, height: 0, margin: 6,
    advanced: new Set(node.constructor?.[ADVANCED_NAMES] ?? []), toggle: null, foldedCount: 0,
  };
}

// Called on every widget change we hear of and from the ticker: a changed
// key schedules one debounced query; anything else redraws.
function refresh(state) {
  const { node, kind } = state;
  applyVisibility(state);
  if (!state.el) return;
  if (kind.source === "preview") refreshUpstream(state);
  if (kind.source === "custom") {
    const text = valueOf(node, "sigmas", "");
    if (text !== state.customText && !state.drag) {
      state.customText = text;
      const parsed = parseSigmas(text);
      state.sigmas = parsed ? parsed.values : null;
      state.endsInZero = parsed ? parsed.endsInZero : true;
      state.error = parsed ? null : "the text is not a list of decreasing sigmas";
      state.key = text;
      state.changedAt ??= performance.now();
      draw(state);
    }
    return;
  }
  if (kind.source !== "preview") return;
  const key = previewQuery(state);
  if (key === null || key === state.key || key === state.pendingKey) return;
  state.pendingKey = key;
  ++state.seq; // an answer still on its way is for an older key: not to be shown
  state.changedAt ??= performance.now();
  clearTimeout(state.timer);
  state.timer = null;
  const cached = cache.get(key);
  if (cached) {
    settle(state, key, cached);
    return;
  }
  // The first change of a burst goes out at once; the rest of the burst
  // (a dragged slider) waits for a quiet DEBOUNCE_MS and sends only the last.
  if (performance.now() - state.sentAt > DEBOUNCE_MS) send(state, key);
  else state.timer = setTimeout(() => send(state, key), DEBOUNCE_MS);
}

function changed(state) {
  state.changedAt ??= performance.now();
  refresh(state);
  draw(state);
}

function send(state, key) {
  state.timer = null;
  state.sentAt = performance.now();
  const seq = ++state.seq;
  getJSON(`/sampler_lab/sigmas?${key}&soft=1`).then(
    (body) => {
      state.fetchMs = Math.round(performance.now() - state.sentAt);
      const sigmas = Array.isArray(body?.sigmas) ? body.sigmas : null;
      const result = { sigmas, noise: Array.isArray(body?.noise_fraction) ? body.noise_fraction : null,
        boundary: typeof body?.boundary_sigma === "number" ? body.boundary_sigma : null,
        error: sigmas ? null : String(body?.error ?? "no schedule") };
      remember(key, result);
      if (seq === state.seq) settle(state, key, result);
    },
    (err) => {
      const error = typeof err?.error === "string" ? err.error : "preview unavailable";
      if (seq === state.seq) settle(state, key, { sigmas: null, noise: null, error });
    },
  );
}

function settle(state, key, { sigmas, noise, error, boundary }) {
  ++state.seq; // an older answer still on its way must not overwrite this one
  state.sigmas = sigmas;
  state.boundary = boundary ?? null;
  state.noise = noise ?? null;
  state.error = error;
  state.key = key;
  if (state.pendingKey === key) state.pendingKey = null;
  draw(state);
}

// The Custom Sigmas text, read the way the node reads it (numbers only,
// separated by commas or spaces, optionally in [ ]); null if the node would
// reject it.
function parseSigmas(text) {
  if (typeof text !== "string") return null;
  let body = text.trim();
  if (body.startsWith("[") && body.endsWith("]")) body = body.slice(1, -1);
  const pieces = body.split(",");
  if (pieces.length > 1 && !pieces[pieces.length - 1].trim()) pieces.pop();
  const values = [];
  for (const piece of pieces) {
    const words = piece.split(/\s+/).filter(Boolean);
    if (!words.length) return null;
    for (const w of words) {
      const v = Number(w);
      if (!Number.isFinite(v) || v < 0) return null;
      if (values.length && !(v < values[values.length - 1])) return null;
      values.push(v);
    }
  }
  if (!values.length) return null;
  const endsInZero = values[values.length - 1] === 0;
  if (!endsInZero) values.push(0);
  if (values.length < 2) return null;
  return { values, endsInZero };
}

function formatSigmas(values, endsInZero) {
  const shown = endsInZero ? values : values.slice(0, -1);
  return shown.map((v) => (v === 0 ? "0" : String(Number(v.toPrecision(5))))).join(", ");
}

// --- colours from the frontend's palette ----------------------------------------

let probe = null;
function rgbOf(color) {
  probe ??= document.createElement("canvas").getContext("2d");
  probe.fillStyle = "#000";
  probe.fillStyle = color;
  const c = probe.fillStyle; // normalised: #rrggbb or rgba(r, g, b, a)
  if (c.startsWith("#")) return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
  const m = c.match(/[\d.]+/g) ?? [0, 0, 0];
  return m.slice(0, 3).map(Number);
}

function isLight(color) {
  const [r, g, b] = rgbOf(color);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 140;
}

function palette() {
  const cs = getComputedStyle(document.documentElement);
  const v = (name, fallback) => cs.getPropertyValue(name)?.trim() || fallback;
  const bg = v("--comfy-menu-secondary-bg", v("--comfy-menu-bg", "#303030"));
  const light = isLight(bg);
  return {
    light, bg,
    text: v("--fg-color", light ? "#222" : "#ddd"),
    muted: v("--descrip-text", light ? "#555" : "#999"),
    grid: light ? "rgba(0, 0, 0, 0.13)" : "rgba(255, 255, 255, 0.12)",
    axis: v("--border-color", light ? "#888" : "#4e4e4e"),
    curve: v("--p-primary-color", light ? "#2563eb" : "#60a5fa"),
    used: light ? "#c2410c" : "#fb923c",
    noise: light ? "rgba(220, 38, 38, 0.30)" : "rgba(248, 113, 113, 0.38)",
    noiseEdge: light ? "#b91c1c" : "#f87171",
    dim: light ? "rgba(255, 255, 255, 0.6)" : "rgba(0, 0, 0, 0.45)",
    warn: v("--error-text", light ? "#c62828" : "#ff6b6b"),
    tipBg: light ? "rgba(255, 255, 255, 0.94)" : "rgba(20, 20, 24, 0.92)",
  };
}

// --- drawing ----------------------------------------------------------------

function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.001) return v.toExponential(1).replace("e+", "e");
  return String(Number(v.toPrecision(3)));
}

function tickLabel(v) {
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.001) return v.toExponential(0).replace("e+", "e");
  return String(Number(v.toPrecision(2)));
}

// Log-axis ticks between e^lo and e^hi: decades, with 2-5 or 3 between
// them when the range is short, else the range's ends.
function logTicks(lo, hi) {
  const decades = (hi - lo) / Math.LN10;
  const mults = decades > 2.6 ? [1] : decades > 1.3 ? [1, 3] : [1, 2, 5];
  const ticks = [];
  for (let e = Math.floor(lo / Math.LN10) - 1; e <= Math.ceil(hi / Math.LN10); e++) {
    for (const m of mults) {
      const v = m * 10 ** e;
      const l = Math.log(v);
      if (l >= lo - 1e-9 && l <= hi + 1e-9) ticks.push(v);
    }
  }
  if (ticks.length >= 2) return ticks;
  return [Math.exp(lo), Math.exp(hi)].map((v) => Number(v.toPrecision(2)));
}

function stepTicks(n, width) {
  const room = Math.max(2, Math.floor(width / 26));
  const step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].find((s) => n / s <= room) ?? 1000;
  const out = [];
  for (let i = 0; i <= n; i += step) out.push(i);
  if (out[out.length - 1] !== n && n - out[out.length - 1] >= step / 2) out.push(n);
  return out;
}

function layout(width, height, withNoise) {
  const left = 40, right = withNoise ? 44 : 10, top = 20, bottom = 28;
  return { x: left, y: top, w: Math.max(40, width - left - right), h: Math.max(30, height - top - bottom) };
}

function axesFor(values, rect) {
  const positive = values.filter((s) => s > 0);
  let lo = Math.log(Math.min(...positive));
  let hi = Math.log(Math.max(...positive));
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.05;
  lo -= pad; hi += pad;
  return {
    lo, hi,
    y: (s) => (s > 0 ? rect.y + rect.h * (1 - (Math.log(s) - lo) / (hi - lo)) : rect.y + rect.h),
    sigmaAt: (py) => Math.exp(lo + (1 - (py - rect.y) / rect.h) * (hi - lo)),
  };
}

function text(ctx, str, x, y, align, color) {
  ctx.fillStyle = color;
  ctx.textAlign = align;
  ctx.fillText(str, x, y);
}

// Everything the node shows in the row above the plot and in the outcome line.
function drawHead(state) {
  const { head, kind, node } = state;
  if (!head) return;
  if (kind.source !== "preview") {
    const o = state.outcome;
    let line = "";
    if (o) {
      const err = (v) => (v === null || v === undefined ? "?" : v.toExponential(2));
      const gain = o.error_before && o.error_after ? ` (${(o.error_before / o.error_after).toFixed(1)}x lower)` : "";
      line = `${o.cached ? "cached result" : "new search"}: ${o.calls ?? "?"} calls`
        + `${o.budget_calls ? ` of ${o.budget_calls}` : ""} · error ${err(o.error_before)}`
        + ` (${o.start || "best fixed schedule"}) → ${err(o.error_after)}${gain}`;
      // Tune Sampler: the auto pick's best fixed samplers x schedules
      if (Array.isArray(o.ranking) && o.ranking.length) {
        line += ` · top: ${o.ranking.map((r) => `${r.sampler}+${r.schedule} ${err(r.error)}`).join(", ")}`;
      }
    } else if (state.summary) {
      line = state.summary;
    }
    head.text.textContent = line;
    head.text.title = state.summary ?? line;
    head.row.style.display = line ? "flex" : "none";
    return;
  }
  const model = assumedModel(state);
  const choice = manualChoice(node);
  if (head.select.value !== choice) head.select.value = choice;
  const flow = model.family === "flow";
  head.shift.style.display = choice === "flow" ? "" : "none";
  if (document.activeElement !== head.shiftInput) head.shiftInput.value = String(manualShift(node));
  // A guess names no family: SD1.5 and SDXL share their sigmas, so an
  // unknown eps checkpoint is drawn with that table, said as such.
  const what = model.guess ? "SD1.5/SDXL (guess)"
    : model.family === "flow" && model.shift ? `flow, shift ${fmt(model.shift)}`
      : familyLabel(model.family);
  head.text.textContent = choice === "auto"
    ? `${what} · ${model.text}`
    : (model.warn ? `⚠ ${model.warn}` : model.text);
  head.text.title = `The preview assumes ${what}: ${model.text}${model.why ? ` (${model.why})` : ""}. `
    + "Change it with the menu on the left; auto follows the last run, else the "
    + "ModelSampling node or checkpoint upstream.";
  const p = palette();
  // grey until something is wrong: a guess is not an error
  head.text.style.color = model.warn ? p.warn : p.muted;
  head.text.style.fontStyle = model.guess ? "italic" : "normal";
  state.modelShown = { family: model.family, shift: flow ? model.shift : null, source: model.source,
    guess: !!model.guess, text: head.text.textContent };
}

function draw(state) {
  try { drawPlot(state); } catch (e) { state.error = String(e?.message ?? e); }
}

function drawPlot(state) {
  const { node, kind, canvas } = state;
  if (!canvas) return;
  drawHead(state);
  const live = kind.source === "display" ? null : state.sigmas;
  const used = state.used && (kind.source === "display" || state.usedKey === state.key)
    ? state.used : null;
  const shown = used ?? live;
  const hasData = !!(shown && shown.length >= 2 && shown.some((s) => s > 0));
  resizeWidget(state, hasData || kind.source !== "display");
  const cssW = canvas.clientWidth || canvas.parentElement?.clientWidth || 300;
  const cssH = canvas.clientHeight || PLOT_HEIGHT;
  const ratio = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(cssW * ratio) || canvas.height !== Math.round(cssH * ratio)) {
    canvas.width = Math.round(cssW * ratio);
    canvas.height = Math.round(cssH * ratio);
  }
  const ctx = canvas.getContext("2d");
  const p = palette();
  state.palette = p;
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.fillStyle = p.bg;
  ctx.fillRect(0, 0, cssW, cssH);
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  if (!hasData) {
    const msg = state.error ?? (kind.source === "display" ? "runs show their sigmas here"
      : "no schedule");
    text(ctx, msg.length > 90 ? `${msg.slice(0, 87)}...` : msg, 6, Math.min(cssH / 2, 12), "left",
      state.error ? p.warn : p.muted);
    state.points = [];
    state.plot = null;
    markDrawn(state, state.key);
    return;
  }
  const n = shown.length - 1;
  const bars = kind.noise && !used && Array.isArray(state.noise) && state.noise.length === n
    ? state.noise : null;
  const withNoise = !!kind.noise;
  const rect = layout(cssW, cssH, withNoise);
  const ax = axesFor(used && live ? shown.concat(live) : shown, rect);
  const xs = (i, count = n) => rect.x + (rect.w * i) / Math.max(1, count);
  state.plot = { rect, width: cssW, height: cssH };
  state.axes = ax;

  // plot frame and grid
  ctx.lineWidth = 1;
  ctx.strokeStyle = p.grid;
  const ticks = logTicks(ax.lo, ax.hi);
  for (const v of ticks) {
    const gy = Math.round(ax.y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(rect.x, gy); ctx.lineTo(rect.x + rect.w, gy); ctx.stroke();
    text(ctx, tickLabel(v), rect.x - 4, gy, "right", p.muted);
  }
  const steps = stepTicks(n, rect.w);
  for (const i of steps) {
    const gx = Math.round(xs(i)) + 0.5;
    ctx.beginPath(); ctx.moveTo(gx, rect.y); ctx.lineTo(gx, rect.y + rect.h); ctx.stroke();
    text(ctx, String(i), gx, rect.y + rect.h + 8, "center", p.muted);
  }
  ctx.strokeStyle = p.axis;
  ctx.strokeRect(rect.x + 0.5, rect.y + 0.5, rect.w, rect.h);
  // two experts: model_low takes over below this sigma
  if (state.boundary > 0 && Math.log(state.boundary) >= ax.lo && Math.log(state.boundary) <= ax.hi) {
    const by = Math.round(ax.y(state.boundary)) + 0.5;
    ctx.save();
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = p.warn;
    ctx.beginPath(); ctx.moveTo(rect.x, by); ctx.lineTo(rect.x + rect.w, by); ctx.stroke();
    ctx.restore();
    text(ctx, "model_low below", rect.x + rect.w - 2, by - 7, "right", p.warn);
  }
  text(ctx, "step", rect.x + rect.w / 2, cssH - 5, "center", p.muted);
  ctx.save();
  ctx.translate(9, rect.y + rect.h / 2);
  ctx.rotate(-Math.PI / 2);
  text(ctx, "sigma (log)", 0, 0, "center", p.muted);
  ctx.restore();

  // fresh noise per step, on its own 0-100% axis at the right
  if (withNoise) {
    const right = rect.x + rect.w;
    for (const f of [0, 0.5, 1]) {
      const gy = Math.round(rect.y + rect.h * (1 - f)) + 0.5;
      ctx.strokeStyle = p.noiseEdge;
      ctx.beginPath(); ctx.moveTo(right, gy); ctx.lineTo(right + 3, gy); ctx.stroke();
      text(ctx, `${Math.round(f * 100)}%`, right + 5, gy, "left", p.noiseEdge);
    }
    ctx.save();
    ctx.translate(cssW - 7, rect.y + rect.h / 2);
    ctx.rotate(Math.PI / 2);
    text(ctx, "fresh noise (% of σ)", 0, 0, "center", p.noiseEdge);
    ctx.restore();
    if (bars) {
      for (let i = 0; i < n; i++) {
        const f = bars[i];
        if (!(f > 0)) continue;
        const h = rect.h * Math.min(1, f);
        const x0 = xs(i) + 1, x1 = xs(i + 1) - 1;
        ctx.fillStyle = p.noise;
        ctx.fillRect(x0, rect.y + rect.h - h, Math.max(1, x1 - x0), h);
        ctx.fillStyle = p.noiseEdge;
        ctx.fillRect(x0, rect.y + rect.h - h, Math.max(1, x1 - x0), 1.5);
      }
    }
  }

  // KSampler (Advanced): dim the steps outside start..end
  if (kind.range && !used) {
    const start = Math.max(0, Math.round(Number(valueOf(node, "start_at_step", 0))));
    const end = Math.min(n, Math.round(Number(valueOf(node, "end_at_step", n))));
    ctx.fillStyle = p.dim;
    if (start > 0) ctx.fillRect(rect.x, rect.y, xs(Math.min(start, n)) - rect.x, rect.h);
    if (end < n) ctx.fillRect(xs(end), rect.y, rect.x + rect.w - xs(end), rect.h);
  }

  const curve = (values, color, dots, dash) => {
    const count = values.length - 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.setLineDash(dash ? [4, 3] : []);
    ctx.beginPath();
    values.forEach((s, i) => {
      const px = xs(i, count);
      if (i) ctx.lineTo(px, ax.y(s)); else ctx.moveTo(px, ax.y(s));
    });
    ctx.stroke();
    ctx.setLineDash([]);
    if (!dots) return [];
    ctx.fillStyle = color;
    const r = values.length > 60 ? 1.5 : 3;
    return values.map((s, i) => {
      const px = xs(i, count), py = ax.y(s);
      ctx.beginPath(); ctx.arc(px, py, r, 0, 2 * Math.PI); ctx.fill();
      return [px, py];
    });
  };
  if (used && live && kind.source !== "display") curve(live, p.muted, false, true);
  state.points = curve(shown, used ? p.used : p.curve, true, false);

  // legend
  const items = [[used ? p.used : p.curve, used ? "sigmas of the last run" : "sigma per step", "line"]];
  if (used && live && kind.source !== "display") items.push([p.muted, "preview", "dash"]);
  if (bars) {
    const sampler = valueOf(node, "sampler_name", "");
    const eta = Number(valueOf(node, "noise_strength", -1));
    const sn = Number(valueOf(node, "s_noise", 1));
    const none = bars.every((f) => !(f > 0)); // a deterministic sampler: say so
    items.push([p.noiseEdge, `${none ? "no fresh noise" : "fresh noise"}, ${sampler}`
      + `${eta === -1 ? "" : ` η ${fmt(eta)}`}${sn !== 1 ? ` ×${fmt(sn)}` : ""}`, "bar"]);
  }
  let lx = rect.x;
  for (const [color, full, mark] of items) {
    // a narrow node: the entry without its details (the sampler, eta, s_noise)
    const label = lx + 18 + ctx.measureText(full).width > cssW - 4 ? full.split(",")[0] : full;
    const w = ctx.measureText(label).width;
    if (lx + 18 + w > cssW - 4 && lx > rect.x) break;
    if (mark === "bar") {
      ctx.fillStyle = p.noise; ctx.fillRect(lx, 5, 12, 9);
      ctx.fillStyle = color; ctx.fillRect(lx, 5, 12, 1.5);
    } else {
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.setLineDash(mark === "dash" ? [4, 3] : []);
      ctx.beginPath(); ctx.moveTo(lx, 10); ctx.lineTo(lx + 12, 10); ctx.stroke(); ctx.setLineDash([]);
    }
    text(ctx, label, lx + 16, 10, "left", p.text);
    lx += 16 + w + 12;
  }

  // hover: step, sigma, fresh noise
  const hov = state.hover;
  state.hoverLabel = null;
  if (hov && hov.x >= rect.x - 6 && hov.x <= rect.x + rect.w + 6 && hov.y >= rect.y - 6
      && hov.y <= rect.y + rect.h + 6) {
    const i = Math.max(0, Math.min(n, Math.round(((hov.x - rect.x) / rect.w) * n)));
    const parts = [`step ${i}/${n}`, `σ ${fmt(shown[i])}`];
    if (bars && i < n) parts.push(`fresh noise ${(100 * bars[i]).toFixed(1)}% of σ ${fmt(shown[i + 1])}`);
    const label = parts.join("  ");
    const [px, py] = state.points[i];
    ctx.strokeStyle = p.text;
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(px, py, 5, 0, 2 * Math.PI); ctx.stroke();
    const w = ctx.measureText(label).width + 8;
    const bx = Math.min(Math.max(rect.x, px - w / 2), rect.x + rect.w - w);
    const by = py < rect.y + 24 ? rect.y + rect.h - 18 : rect.y + 2;
    ctx.fillStyle = p.tipBg;
    ctx.fillRect(bx, by, w, 15);
    text(ctx, label, bx + 4, by + 7.5, "left", p.text);
    state.hoverLabel = label;
  }
  markDrawn(state, used ? `used:${state.usedKey}` : state.key);
}

// When a new picture first reached the screen (the browser test's latency).
function markDrawn(state, key) {
  if (key === state.drawnKey) return;
  state.drawnKey = key;
  state.drawnAt = performance.now();
  if (state.changedAt !== null) state.latency = state.drawnAt - state.changedAt;
  state.changedAt = null;
}

// --- the plot element ----------------------------------------------------------

function wantedHeight(state, hasData) {
  const head = state.kind.source !== "preview" ? (state.outcome || state.summary ? 20 : 0) : HEAD_HEIGHT;
  return hasData ? head + PLOT_HEIGHT : head + MESSAGE_HEIGHT;
}

function resizeWidget(state, hasData) {
  const h = wantedHeight(state, hasData);
  if (h === state.height) return;
  state.height = h;
  state.el.style.height = `${h}px`;
  state.canvas.style.height = `${hasData ? PLOT_HEIGHT : MESSAGE_HEIGHT}px`;
  fitHeight(state.node);
}

function makeElement(state) {
  const el = document.createElement("div");
  el.className = "sampler-lab-plot";
  Object.assign(el.style, { display: "flex", flexDirection: "column", width: "100%",
    boxSizing: "border-box", font: "11px sans-serif", overflow: "hidden", minWidth: "0" });
  const row = document.createElement("div");
  Object.assign(row.style, { display: "flex", alignItems: "center", gap: "6px", height: "20px",
    minHeight: "20px", whiteSpace: "nowrap", overflow: "hidden", color: "var(--descrip-text, #999)" });
  const head = { row };
  if (state.kind.source === "preview") {
    const select = document.createElement("select");
    select.title = "The model the preview assumes: auto follows the last run, else the "
      + "ModelSampling node or checkpoint upstream";
    for (const c of CHOICES) {
      const o = document.createElement("option");
      o.value = c;
      o.textContent = { auto: "model: auto", sd15: "SD1.5", sdxl: "SDXL", flow: "flow (SD3/Flux…)" }[c];
      select.append(o);
    }
    const shift = document.createElement("label");
    shift.textContent = "shift ";
    const shiftInput = document.createElement("input");
    Object.assign(shiftInput, { type: "number", step: "0.1", min: "0.01", max: "100" });
    shiftInput.style.width = "48px";
    shift.append(shiftInput);
    for (const c of [select, shiftInput]) {
      Object.assign(c.style, { font: "11px sans-serif", background: "var(--comfy-input-bg, #222)",
        color: "var(--input-text, #ddd)", border: "1px solid var(--border-color, #444)",
        borderRadius: "4px", padding: "0 2px", height: "18px" });
    }
    select.addEventListener("change", () => {
      state.node.properties ??= {};
      state.node.properties[MODEL] = select.value;
      if (OLD_FAMILY in state.node.properties) delete state.node.properties[OLD_FAMILY];
      changed(state);
    });
    shiftInput.addEventListener("change", () => {
      const v = Number(shiftInput.value);
      if (!(v > 0 && v <= 100)) return;
      state.node.properties ??= {};
      state.node.properties[SHIFT] = v;
      changed(state);
    });
    row.append(select, shift);
    Object.assign(head, { select, shift, shiftInput });
  }
  const span = document.createElement("span");
  Object.assign(span.style, { overflow: "hidden", textOverflow: "ellipsis", flex: "1", minWidth: "0" });
  row.append(span);
  head.text = span;
  const canvas = document.createElement("canvas");
  Object.assign(canvas.style, { width: "100%", height: `${PLOT_HEIGHT}px`, display: "block",
    borderRadius: "4px", background: "var(--comfy-menu-secondary-bg, var(--comfy-menu-bg, #303030))",
    touchAction: "none" });
  el.append(row, canvas);
  canvas.addEventListener("pointermove", (e) => onPointer(state, e));
  canvas.addEventListener("pointerdown", (e) => onPointer(state, e));
  canvas.addEventListener("pointerup", (e) => onPointer(state, e));
  canvas.addEventListener("pointerleave", () => { state.hover = null; draw(state); });
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => draw(state)).observe(canvas);
  }
  state.el = el;
  state.canvas = canvas;
  state.head = head;
  return el;
}

// --- dragging the Custom Sigmas points --------------------------------------

function canvasPos(state, e) {
  const r = state.canvas.getBoundingClientRect();
  const sx = r.width / (state.canvas.clientWidth || r.width || 1);
  const sy = r.height / (state.canvas.clientHeight || r.height || 1);
  return [(e.clientX - r.left) / sx, (e.clientY - r.top) / sy];
}

function onPointer(state, e) {
  try {
    const [x, y] = canvasPos(state, e);
    if (e.type === "pointerdown") {
      if (state.kind.source !== "custom" || !state.sigmas) return;
      let best = -1, bestD = 9;
      const last = state.endsInZero ? state.points.length : state.points.length - 1;
      for (let i = 0; i < Math.min(last, state.sigmas.length); i++) {
        const [px, py] = state.points[i];
        const d = Math.hypot(px - x, py - y);
        if (d < bestD && state.sigmas[i] > 0) { best = i; bestD = d; }
      }
      if (best < 0) return;
      // the point is ours: the node must not start moving
      e.stopPropagation();
      e.preventDefault();
      state.canvas.setPointerCapture?.(e.pointerId);
      state.drag = { index: best, axes: state.axes };
      return;
    }
    if (state.drag) {
      e.stopPropagation();
      dragTo(state, y, e.type === "pointerup");
      return;
    }
    state.hover = { x, y };
    draw(state);
  } catch {
    state.drag = null;
  }
}

function dragTo(state, y, done) {
  const { node } = state;
  const { index, axes: ax } = state.drag;
  const values = state.sigmas.slice();
  let s = ax.sigmaAt(y);
  const upper = index > 0 ? values[index - 1] * (1 - 1e-3) : Infinity;
  const lower = values[index + 1] > 0 ? values[index + 1] * (1 + 1e-3) : 1e-4;
  s = Math.min(upper, Math.max(lower, s));
  values[index] = Number(s.toPrecision(5));
  state.sigmas = values;
  const textValue = formatSigmas(values, state.endsInZero);
  const w = widgetOf(node, "sigmas");
  if (w) {
    w.value = textValue;
    // keep the textarea in step where the frontend does not do it on set
    const el = w.inputEl ?? w.element;
    if (el && "value" in el && el.value !== textValue) el.value = textValue;
    if (vueMode()) {
      const row = vueWidgetElements(node)?.get(w);
      const area = row?.querySelector("textarea");
      if (area && area.value !== textValue) area.value = textValue;
    }
    if (done) w.callback?.(textValue);
  }
  state.customText = textValue;
  state.key = textValue;
  if (done) state.drag = null;
  draw(state);
}

// --- wiring -------------------------------------------------------------------

const tracked = new Set();

function forget(state) {
  tracked.delete(state);
  clearTimeout(state.timer);
  state.el?.remove();
}

function attach(node, kind) {
  if (node.__samplerLab || typeof node.addCustomWidget !== "function") return;
  const state = makeState(node, kind);
  node.__samplerLab = state;
  tracked.add(state);
  // the flag as the newest frontends keep it on the widget (1.27 does not
  // copy it); `widget.advanced` folds it in their canvas as well (its size,
  // the node menu's Show Advanced). Not on 1.27, whose Vue nodes ignore it.
  const modern = modernFrontend(node);
  for (const w of node.widgets ?? []) {
    if (!w?.name || !state.advanced.has(w.name)) continue;
    w.options ??= {};
    w.options.advanced = true;
    if (modern) w.advanced = true;
  }
  if (modern && node.showAdvanced === undefined) node.showAdvanced = advancedOpen(node);
  addFoldToggle(node, state);
  // Vue nodes show numbers with at most 3 decimals unless told (atol 0.0078)
  for (const w of node.widgets ?? []) {
    const prec = w?.options?.precision;
    if (typeof w?.value === "number" && Number.isInteger(prec) && prec > 3) {
      w.options.maxFractionDigits ??= prec;
    }
  }
  if (kind.source && typeof node.addDOMWidget === "function") {
    const el = makeElement(state);
    const widget = node.addDOMWidget(PLOT, PLOT, el, {
      serialize: false, // not in the API prompt (every frontend)
      hideOnZoom: false,
      margin: 6,
      getValue: () => undefined,
      setValue: () => {},
      getMinHeight: () => state.height + 2 * state.margin,
      getMaxHeight: () => state.height + 2 * state.margin,
    });
    // the old frontend keeps its own 10 px margin whatever the option says
    state.margin = typeof widget.margin === "number" ? widget.margin : 10;
    widget.serialize = false; // not in widgets_values (current frontend)
    widget.serializeValue = () => undefined;
    state.widget = widget;
    state.height = 0;
    resizeWidget(state, kind.source !== "display");
    if (node.size) node.setSize?.([Math.max(node.size[0], 340), node.size[1]]);
  }
  // Hear about widget edits at once (the ticker catches the rest, e.g.
  // values set by loading a workflow).
  for (const w of node.widgets ?? []) {
    if (!w || w === state.widget) continue;
    const cb = w.callback;
    w.callback = function (...args) {
      const r = cb?.apply(this, args);
      state.changedAt = performance.now();
      refresh(state);
      return r;
    };
    const el = w.inputEl ?? w.element;
    if (el?.addEventListener && kind.source === "custom") {
      el.addEventListener("input", () => { state.changedAt = performance.now(); refresh(state); });
    }
  }
  loadInfo().then(() => {
    state.key = null;
    state.pendingKey = null;
    refresh(state);
    draw(state);
  });
  refresh(state);
}

// Vue nodes: the DOM-widget layer is off, so the plot goes into the node's
// body; and widgets hidden by selection are hidden on their rows. Checked a
// few times a second (the node's elements come and go with zoom and reloads).
function placeInVueNode(state) {
  const { node, el } = state;
  if (!el) return;
  const root = document.querySelector(`[data-node-id="${node.id}"]`);
  // newer frontends mount a DOM widget in its own row: leave it there
  if (root?.contains(el) && el.parentElement?.dataset?.testid !== `node-body-${node.id}`) return;
  const body = root?.querySelector(`[data-testid="node-body-${node.id}"]`);
  if (!body) return;
  if (el.parentElement !== body) {
    body.append(el);
    // contain: the canvas must not widen the node it sizes itself to
    Object.assign(el.style, { position: "", transform: "", left: "", top: "", width: "auto",
      padding: "0 12px", pointerEvents: "auto", display: "flex", contain: "inline-size",
      minWidth: "300px" });
    draw(state);
  }
}

let paletteKey = "";
function tick() {
  const key = getComputedStyle(document.documentElement).getPropertyValue("--fg-color")
    + getComputedStyle(document.documentElement).getPropertyValue("--comfy-menu-bg");
  const themeChanged = key !== paletteKey;
  paletteKey = key;
  for (const state of tracked) {
    const graph = state.node.graph;
    if (!graph) continue; // not yet in a graph
    if (graph.getNodeById?.(state.node.id) !== state.node) {
      // removed (or its graph replaced by a loaded workflow): its id may
      // now belong to another node, whose element must not get this plot
      forget(state);
      continue;
    }
    if ((app.canvas?.graph ?? app.graph) !== graph) continue; // in a subgraph not shown
    try {
      if (vueMode()) placeInVueNode(state);
      else if (state.el?.parentElement && !state.el.parentElement.classList?.contains("dom-widget")
        && state.el.parentElement.dataset?.testid?.startsWith("node-body")) {
        state.el.remove(); // back to the classic canvas: the DOM-widget layer places it
      }
      refresh(state);
      if (themeChanged) draw(state);
    } catch { /* the preview must never break the node */ }
  }
}

function chain(proto, name, fn) {
  const before = proto[name];
  proto[name] = function (...args) {
    const r = before?.apply(this, args);
    try { fn.apply(this, args); } catch { /* the preview must never break the node */ }
    return r;
  };
}

const extension = {
  name: EXT,
  async init() {
    await loadInfo();
  },
  setup() {
    setInterval(tick, 250);
  },
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeType?.prototype || !String(nodeData?.name ?? "").startsWith("SamplerLab")) return;
    // the inputs the server flags advanced, in declaration order
    const declared = { ...nodeData.input?.required, ...nodeData.input?.optional };
    nodeType[ADVANCED_NAMES] = Object.keys(declared)
      .filter((name) => declared[name]?.[1]?.advanced === true);
    nodeType[PLACEHOLDERS] = Object.fromEntries(Object.entries(declared)
      .filter(([, d]) => typeof d?.[1]?.placeholder === "string")
      .map(([name, d]) => [name, d[1].placeholder]));
    const kind = KINDS[nodeData.name] ?? (nodeType[ADVANCED_NAMES].length ? {} : null);
    if (!kind) return;
    const proto = nodeType.prototype;
    chain(proto, "onExecuted", function (output) {
      const state = this.__samplerLab;
      if (!state) return;
      const sig = output?.sampler_lab_sigmas;
      if (Array.isArray(sig)) {
        state.used = sig.map(Number).filter(Number.isFinite);
        state.usedKey = state.key;
      }
      const model = output?.sampler_lab_model?.[0];
      if (model && typeof model.family === "string") state.runModel = model;
      const outcome = output?.sampler_lab_outcome?.[0];
      if (outcome) state.outcome = outcome;
      const summary = output?.sampler_lab_summary?.[0];
      if (typeof summary === "string") state.summary = summary;
      state.changedAt = performance.now();
      refresh(state);
      // the run may change which model the preview assumes: re-ask, then
      // show the run's sigmas against it
      if (state.kind.source === "preview" && state.key !== previewQuery(state)) {
        state.usedKey = previewQuery(state);
      }
      draw(state);
    });
    // The legacy litegraph writes every widget into widgets_values; keep the
    // plot out so saved workflows stay what they are without this file.
    chain(proto, "onSerialize", function (o) {
      const state = this.__samplerLab;
      if (!state || !Array.isArray(o?.widgets_values)) return;
      if (o.widgets_values.length !== this.widgets?.length) return; // the frontend left ours out
      const ours = [state.widget, state.toggle].filter(Boolean)
        .map((w) => this.widgets.indexOf(w)).filter((i) => i >= 0).sort((a, b) => b - a);
      for (const i of ours) o.widgets_values.splice(i, 1);
    });
    chain(proto, "onConfigure", function () {
      const state = this.__samplerLab;
      if (!state) return;
      state.used = null;
      state.runModel = null;
      state.outcome = null;
      state.summary = null;
      state.changedAt = performance.now();
      refresh(state);
      draw(state);
    });
    chain(proto, "onRemoved", function () {
      const state = this.__samplerLab;
      if (state) forget(state);
    });
    chain(proto, "onConnectionsChange", function () {
      const state = this.__samplerLab;
      if (state) refresh(state);
    });
  },
  nodeCreated(node) {
    const type = node?.comfyClass ?? node?.type;
    const kind = KINDS[type] ?? (node?.constructor?.[ADVANCED_NAMES]?.length ? {} : null);
    if (kind) {
      try { attach(node, kind); } catch { /* plain widgets then */ }
    }
  },
};

if (typeof app?.registerExtension === "function") {
  app.registerExtension(extension);
}
