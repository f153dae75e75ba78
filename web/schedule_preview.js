// Sampler Lab: the schedule / noise-strength preview drawn on our nodes.
//
// It only draws and edits ordinary widget values: the plot itself is a
// widget that never serializes, and which model family the preview assumes
// lives in node.properties. So a saved workflow and its API prompt are the
// same with or without this file. Where the frontend lacks what it needs,
// it does nothing and logs nothing (the nodes keep their plain widgets).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PLOT = "sampler_lab_plot";
const FAMILY = "sampler_lab_family";
const SHIFT = "sampler_lab_shift";
const FAMILIES = ["sd15", "sdxl", "flow"];
const HEIGHT = 170;
const DEBOUNCE_MS = 25;

// How each node type feeds the plot. "preview": ask the server for the
// schedule of the widgets; "custom": the points come from the text widget
// and can be dragged; "display": only what the node reports after it ran.
const KINDS = {
  SamplerLabKSampler: { source: "preview", noise: true },
  SamplerLabKSamplerAdvanced: { source: "preview", noise: true, range: true },
  SamplerLabScheduler: { source: "preview", params: true },
  SamplerLabCustomSigmas: { source: "custom" },
  SamplerLabOptimizeSchedule: { source: "display" },
};

const COLORS = {
  bg: "#161a20", grid: "#3a4350", text: "#aab4c0", curve: "#4fa3ff",
  used: "#ffb347", bars: "rgba(255, 110, 110, 0.55)", dim: "rgba(22, 26, 32, 0.6)",
  hover: "#ffffff",
};

// --- server -----------------------------------------------------------------

function getJSON(route) {
  // api.fetchApi adds the frontend's API prefix where it has one.
  const go = typeof api?.fetchApi === "function" ? api.fetchApi(route) : fetch(route);
  return go.then((r) => r.json().then((body) => (r.ok ? body : Promise.reject(body))));
}

let infoPromise = null;
function loadInfo() {
  infoPromise ??= getJSON("/sampler_lab/info").catch(() => null);
  return infoPromise;
}

// --- the math the plot needs (display only; the engine is the source of truth)

// Fraction of the step sigma -> next that is fresh noise at this eta: the
// ancestral split of samplers/process.py, in normalised coordinates, where
// both the VE and the flow process give frac_up = min(1, eta sqrt(1 - q^2)),
// q = snr_sigma(next) / snr_sigma(now). The noise added is next * frac_up,
// i.e. VE's sigma_up = min(next, eta sqrt(next^2 (now^2 - next^2) / now^2)).
function freshFraction(now, next, eta, flow) {
  if (!(eta > 0) || !(next > 0) || !(now > next)) return 0;
  let q;
  if (flow) {
    const a = 1 - now, aNext = 1 - next;
    q = aNext > 0 ? (next * a) / (now * aNext) : 1;
  } else {
    q = next / now;
  }
  return Math.min(1, eta * Math.sqrt(Math.max(0, 1 - q * q)));
}

// How far along the model's timesteps a sigma is: 0% pure noise, 100% clean.
function progress(sigma, family, shift, table) {
  if (!(sigma > 0)) return 1;
  if (family === "flow") {
    const t = sigma / (shift - (shift - 1) * sigma);
    return Math.min(1, Math.max(0, 1 - t));
  }
  if (!table?.length) return null;
  const n = table.length;
  if (sigma <= table[0]) return 1;
  if (sigma >= table[n - 1]) return 0;
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (table[mid] <= sigma) lo = mid; else hi = mid;
  }
  const f = (Math.log(sigma) - Math.log(table[lo])) / (Math.log(table[hi]) - Math.log(table[lo]));
  return 1 - (lo + f) / (n - 1);
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

// --- per node state -------------------------------------------------------

function widgetOf(node, name) {
  return node.widgets?.find((w) => w && w.name === name);
}

function valueOf(node, name, fallback) {
  const w = widgetOf(node, name);
  return w === undefined || w.value === undefined || w.value === null ? fallback : w.value;
}

function family(node) {
  const f = node.properties?.[FAMILY];
  return FAMILIES.includes(f) ? f : "sd15";
}

function shift(node) {
  const s = Number(node.properties?.[SHIFT]);
  return Number.isFinite(s) && s > 0 ? s : 3.0;
}

// What the preview depends on, as the query the route takes (null: nothing
// to ask). Its string form tells when a redraw is due.
function previewQuery(node, kind, info) {
  const scheduler = valueOf(node, "scheduler", null);
  const steps = Math.round(Number(valueOf(node, "steps", NaN)));
  if (typeof scheduler !== "string" || !(steps >= 1)) return null;
  const q = new URLSearchParams();
  q.set("scheduler", scheduler);
  q.set("steps", String(Math.min(steps, info?.max_steps ?? 1000)));
  if (!kind.range) {
    const denoise = Number(valueOf(node, "denoise", 1));
    // the route caps steps / denoise; past that there is nothing to draw
    if (denoise > 0 && denoise < 1 && steps / denoise > 10 * (info?.max_steps ?? 1000)) return null;
    q.set("denoise", String(denoise));
  }
  const fam = family(node);
  q.set("family", fam);
  if (fam === "flow") q.set("shift", String(shift(node)));
  if (kind.params && info?.schedules?.[scheduler]) {
    for (const [name, spec] of Object.entries(info.schedules[scheduler])) {
      const v = valueOf(node, `${scheduler}_${name}`, undefined);
      if (v === undefined || (spec.auto && Number(v) === -1)) continue;
      q.set(name, String(v));
    }
  }
  return q.toString();
}

function etaOf(node, info) {
  const ns = Number(valueOf(node, "noise_strength", -1));
  if (ns !== -1) return Math.max(0, ns);
  const name = String(valueOf(node, "sampler_name", ""));
  const known = info?.samplers?.[name];
  if (known) return known.default_eta;
  return /ancestral|sde/.test(name) ? 1 : 0;
}

function makeState(node, kind) {
  return {
    node, kind, key: null, pendingKey: null, timer: null, seq: 0, sentAt: -Infinity,
    fetchMs: null,
    sigmas: null, used: null, usedKey: null, error: null, info: null,
    changedAt: null, drawnAt: null, drawnKey: null, latency: null,
    plot: null, points: [], hover: null, drag: null, customText: null,
  };
}

function redraw(node) {
  node.setDirtyCanvas?.(true, false);
  app.graph?.setDirtyCanvas?.(true, false);
}

// Called on every widget change we hear of and on every draw: a changed key
// schedules one debounced query.
function refresh(state) {
  const { node, kind } = state;
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
      redraw(node);
    }
    return;
  }
  if (kind.source !== "preview") return;
  const key = previewQuery(node, kind, state.info);
  if (key === null || key === state.key || key === state.pendingKey) return;
  state.pendingKey = key;
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
  const now = performance.now();
  if (now - state.sentAt > DEBOUNCE_MS) send(state, key);
  else state.timer = setTimeout(() => send(state, key), DEBOUNCE_MS);
}

const cache = new Map();
const CACHE_SIZE = 200;

function send(state, key) {
  state.timer = null;
  state.sentAt = performance.now();
  const seq = ++state.seq;
  getJSON(`/sampler_lab/sigmas?${key}&soft=1`).then(
    (body) => {
      state.fetchMs = Math.round(performance.now() - state.sentAt);
      const sigmas = Array.isArray(body?.sigmas) ? body.sigmas : null;
      const result = { sigmas, error: sigmas ? null : String(body?.error ?? "no schedule") };
      cache.set(key, result);
      if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value);
      if (seq === state.seq) settle(state, key, result);
    },
    (err) => {
      const error = typeof err?.error === "string" ? err.error : "preview unavailable";
      if (seq === state.seq) settle(state, key, { sigmas: null, error });
    },
  );
}

function settle(state, key, { sigmas, error }) {
  ++state.seq; // an older answer still on its way must not overwrite this one
  state.sigmas = sigmas;
  state.error = error;
  state.key = key;
  state.pendingKey = null;
  redraw(state.node);
}

// --- drawing ----------------------------------------------------------------

function plotRect(width, y) {
  return { x: 12, y: y + 18, w: Math.max(40, width - 24), h: HEIGHT - 34 };
}

function axes(sigmas, rect) {
  const positive = sigmas.filter((s) => s > 0);
  let lo = Math.log(Math.min(...positive));
  let hi = Math.log(Math.max(...positive));
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.06;
  lo -= pad; hi += pad;
  const n = Math.max(1, sigmas.length - 1);
  return {
    lo, hi, n,
    x: (i) => rect.x + (rect.w * i) / n,
    y: (s) => (s > 0 ? rect.y + rect.h * (1 - (Math.log(s) - lo) / (hi - lo)) : rect.y + rect.h),
    sigmaAt: (py) => Math.exp(lo + (1 - (py - rect.y) / rect.h) * (hi - lo)),
  };
}

function text(ctx, str, x, y, align = "left", color = COLORS.text) {
  ctx.fillStyle = color;
  ctx.textAlign = align;
  ctx.fillText(str, x, y);
}

function fmt(v) {
  if (v === 0) return "0";
  return Math.abs(v) >= 100 || Math.abs(v) < 0.01 ? v.toExponential(2) : v.toPrecision(3);
}

function drawPlot(state, ctx, width, y) {
  const { node, kind } = state;
  refresh(state);
  const rect = plotRect(width, y);
  state.plot = { rect, y, width };
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.textBaseline = "middle";
  ctx.fillStyle = COLORS.bg;
  ctx.fillRect(6, y + 2, width - 12, HEIGHT - 4);

  const fam = family(node);
  const famLabel = fam === "flow" ? `flow, shift ${shift(node)}` : fam;
  if (kind.source !== "display") {
    text(ctx, `[${famLabel}]`, width - 12, y + 10, "right");
    state.familyBox = { x: width - 12 - ctx.measureText(`[${famLabel}]`).width, y, h: 18 };
  }

  const live = state.sigmas;
  const used = state.used && (kind.source === "display" || state.usedKey === state.key)
    ? state.used : null;
  const shown = used ?? live;
  if (!shown || shown.length < 2 || !shown.some((s) => s > 0)) {
    const msg = state.error ?? (kind.source === "display" ? "runs show their sigmas here"
      : "no schedule");
    text(ctx, msg.length > 60 ? `${msg.slice(0, 57)}...` : msg, 12, y + 10);
    state.points = [];
    ctx.restore();
    markDrawn(state, state.key);
    return;
  }
  // one scale for the live preview and the last run's sigmas
  const ax = axes(used && live ? shown.concat(live) : shown, rect);
  const n = shown.length - 1;
  const xs = (i) => rect.x + (rect.w * i) / n;

  // grid: one line per decade of sigma
  ctx.strokeStyle = COLORS.grid;
  ctx.lineWidth = 1;
  for (let e = Math.ceil(ax.lo / Math.LN10); e <= Math.floor(ax.hi / Math.LN10); e++) {
    const gy = ax.y(10 ** e);
    ctx.beginPath(); ctx.moveTo(rect.x, gy); ctx.lineTo(rect.x + rect.w, gy); ctx.stroke();
    text(ctx, `1e${e}`, rect.x + 2, gy - 6, "left", COLORS.grid);
  }

  // noise injected per step at this noise strength, as a fraction of the
  // step's end noise level (full height = all of it fresh)
  const info = state.info;
  const eta = kind.noise ? etaOf(node, info) : 0;
  const sNoise = Number(valueOf(node, "s_noise", 1)) || 0;
  const bars = [];
  if (eta > 0) {
    ctx.fillStyle = COLORS.bars;
    for (let i = 0; i < n; i++) {
      const frac = freshFraction(shown[i], shown[i + 1], eta, fam === "flow");
      bars.push(frac * shown[i + 1] * sNoise);
      if (frac <= 0) continue;
      const h = rect.h * frac * Math.min(1, sNoise);
      const x0 = xs(i) + 1, x1 = xs(i + 1) - 1;
      ctx.fillRect(x0, rect.y + rect.h - h, Math.max(1, x1 - x0), h);
    }
  }

  // KSampler (Advanced): dim the steps outside start..end
  if (kind.range) {
    const start = Math.max(0, Math.round(Number(valueOf(node, "start_at_step", 0))));
    const end = Math.min(n, Math.round(Number(valueOf(node, "end_at_step", n))));
    if (!used) {
      ctx.fillStyle = COLORS.dim;
      if (start > 0) ctx.fillRect(rect.x, rect.y, xs(Math.min(start, n)) - rect.x, rect.h);
      if (end < n) ctx.fillRect(xs(end), rect.y, rect.x + rect.w - xs(end), rect.h);
    }
  }

  const curve = (values, color, dots) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    values.forEach((s, i) => {
      const px = rect.x + (rect.w * i) / (values.length - 1);
      if (i) ctx.lineTo(px, ax.y(s)); else ctx.moveTo(px, ax.y(s));
    });
    ctx.stroke();
    if (!dots) return [];
    ctx.fillStyle = color;
    return values.map((s, i) => {
      const px = rect.x + (rect.w * i) / (values.length - 1), py = ax.y(s);
      ctx.beginPath(); ctx.arc(px, py, values.length > 60 ? 1.5 : 3, 0, 2 * Math.PI); ctx.fill();
      return [px, py];
    });
  };
  if (used && live && kind.source !== "display") curve(live, COLORS.grid, false);
  state.points = curve(shown, used ? COLORS.used : COLORS.curve, true);
  state.axes = ax;

  const head = used ? `last run: ${n} steps` : `${n} steps`;
  text(ctx, `${head}  σ ${fmt(shown[0])} → ${fmt(shown[n])}${eta > 0 ? `  eta ${fmt(eta)}` : ""}`,
    12, y + 10);
  text(ctx, "step →", rect.x + rect.w, y + HEIGHT - 8, "right", COLORS.grid);

  // hover: step, sigma, percent of the process
  const hov = state.hover;
  if (hov && hov.x >= rect.x - 4 && hov.x <= rect.x + rect.w + 4 && hov.y >= rect.y - 4
      && hov.y <= rect.y + rect.h + 4) {
    const i = Math.max(0, Math.min(n, Math.round(((hov.x - rect.x) / rect.w) * n)));
    const p = progress(shown[i], fam, shift(node), info?.sd_sigma_table);
    const parts = [`step ${i}/${n}`, `σ ${fmt(shown[i])}`];
    if (p !== null) parts.push(`${(100 * p).toFixed(1)}%`);
    if (bars[i] > 0) parts.push(`noise +${fmt(bars[i])}`);
    const label = parts.join("  ");
    const [px, py] = state.points[i];
    ctx.strokeStyle = COLORS.hover;
    ctx.beginPath(); ctx.arc(px, py, 5, 0, 2 * Math.PI); ctx.stroke();
    const w = ctx.measureText(label).width + 8;
    const bx = Math.min(Math.max(rect.x, px - w / 2), rect.x + rect.w - w);
    ctx.fillStyle = "rgba(0,0,0,0.8)";
    ctx.fillRect(bx, y + HEIGHT - 17, w, 14);
    text(ctx, label, bx + 4, y + HEIGHT - 10, "left", COLORS.hover);
    state.hoverLabel = label;
  } else {
    state.hoverLabel = null;
  }
  ctx.restore();

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

// --- dragging the Custom Sigmas points --------------------------------------

function onMouse(state, event, pos) {
  const type = String(event?.type ?? "");
  const [x, y] = pos;
  const { node } = state;
  if (type.endsWith("down")) {
    const box = state.familyBox;
    if (box && state.kind.source !== "display" && x >= box.x - 4 && y >= box.y && y <= box.y + box.h) {
      const next = FAMILIES[(FAMILIES.indexOf(family(node)) + 1) % FAMILIES.length];
      node.properties ??= {};
      node.properties[FAMILY] = next;
      state.used = null;
      refresh(state);
      redraw(node);
      return true;
    }
    if (state.kind.source !== "custom" || !state.sigmas) return false;
    let best = -1, bestD = 10;
    // the appended final 0 is not a point the text holds
    const last = state.endsInZero ? state.points.length : state.points.length - 1;
    for (let i = 0; i < Math.min(last, state.sigmas.length); i++) {
      const [px, py] = state.points[i];
      const d = Math.hypot(px - x, py - y);
      if (d < bestD && state.sigmas[i] > 0) { best = i; bestD = d; }
    }
    if (best < 0) return false;
    state.drag = { index: best, axes: state.axes };
    return true;
  }
  if (!state.drag) return false;
  if (type.endsWith("move") || type.endsWith("up")) {
    const { index, axes: ax } = state.drag;
    const values = state.sigmas.slice();
    let s = ax.sigmaAt(y);
    const upper = index > 0 ? values[index - 1] * (1 - 1e-3) : Infinity;
    const lower = values[index + 1] > 0 ? values[index + 1] * (1 + 1e-3) : 1e-4;
    s = Math.min(upper, Math.max(lower, s));
    values[index] = Number(s.toPrecision(5));
    state.sigmas = values;
    const w = widgetOf(node, "sigmas");
    const textValue = formatSigmas(values, state.endsInZero);
    if (w) {
      w.value = textValue;
      // keep a DOM textarea in step where the frontend does not do it on set
      const el = w.inputEl ?? w.element;
      if (el && "value" in el && el.value !== textValue) el.value = textValue;
      w.callback?.(textValue);
    }
    state.customText = textValue;
    state.key = textValue;
    if (type.endsWith("up")) state.drag = null;
    redraw(node);
    return true;
  }
  return false;
}

// --- wiring -------------------------------------------------------------------

function attach(node, kind) {
  if (node.__samplerLab || typeof node.addCustomWidget !== "function") return;
  const state = makeState(node, kind);
  node.__samplerLab = state;
  if (typeof node.addProperty === "function" && kind.source !== "display") {
    if (!(FAMILY in (node.properties ?? {}))) node.addProperty(FAMILY, "sd15", "enum", { values: FAMILIES });
    if (!(SHIFT in (node.properties ?? {}))) node.addProperty(SHIFT, 3.0, "number");
  }
  const widget = {
    name: PLOT,
    type: PLOT,
    value: undefined,
    serialize: false, // the current frontend leaves it out of widgets_values
    options: { serialize: false }, // and every frontend out of the API prompt
    draw(ctx, n, width, y) {
      try { drawPlot(state, ctx, width, y); } catch (e) { state.error = String(e?.message ?? e); }
    },
    computeSize(width) { return [width ?? 300, HEIGHT]; },
    mouse(event, pos) {
      try { return onMouse(state, event, pos); } catch { state.drag = null; return false; }
    },
    serializeValue() { return undefined; },
  };
  node.addCustomWidget(widget);
  state.widget = widget;

  // Hear about widget edits at once (the draw-time check catches the rest,
  // e.g. values set by loading a workflow).
  for (const w of node.widgets ?? []) {
    if (!w || w === widget) continue;
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
  const size = node.computeSize?.();
  if (size && node.size) {
    node.setSize?.([Math.max(node.size[0], size[0], 320), Math.max(node.size[1], size[1])]);
  }
  loadInfo().then((info) => {
    state.info = info;
    state.key = null;
    state.pendingKey = null;
    refresh(state);
    redraw(node);
  });
  refresh(state);
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
  name: "SamplerLab.SchedulePreview",
  beforeRegisterNodeDef(nodeType, nodeData) {
    const kind = KINDS[nodeData?.name];
    if (!kind || !nodeType?.prototype) return;
    const proto = nodeType.prototype;
    chain(proto, "onExecuted", function (output) {
      const state = this.__samplerLab;
      const sig = output?.sampler_lab_sigmas;
      if (!state || !Array.isArray(sig)) return;
      state.used = sig.map(Number).filter(Number.isFinite);
      state.usedKey = state.key;
      state.changedAt = performance.now();
      redraw(this);
    });
    // The legacy litegraph writes every widget into widgets_values; keep the
    // plot out so saved workflows stay what they are without this file.
    chain(proto, "onSerialize", function (o) {
      const state = this.__samplerLab;
      if (!state || !Array.isArray(o?.widgets_values)) return;
      const i = this.widgets?.indexOf(state.widget) ?? -1;
      if (i >= 0 && i < o.widgets_values.length && o.widgets_values.length === this.widgets.length) {
        o.widgets_values.splice(i, 1);
      }
    });
    chain(proto, "onConfigure", function () {
      const state = this.__samplerLab;
      if (!state) return;
      state.used = null;
      state.changedAt = performance.now();
      refresh(state);
    });
    chain(proto, "onMouseMove", function (e, pos) {
      const state = this.__samplerLab;
      if (!state?.plot || !Array.isArray(pos)) return;
      state.hover = { x: pos[0], y: pos[1] };
      redraw(this);
    });
    chain(proto, "onMouseLeave", function () {
      const state = this.__samplerLab;
      if (state) { state.hover = null; redraw(this); }
    });
  },
  nodeCreated(node) {
    const kind = KINDS[node?.comfyClass ?? node?.type];
    if (kind) {
      try { attach(node, kind); } catch { /* plain widgets then */ }
    }
  },
};

if (typeof app?.registerExtension === "function") {
  app.registerExtension(extension);
}
