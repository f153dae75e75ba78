// The Sampler Lab widget in headless Chromium against a running ComfyUI.
// Run by tests/host/test_browser.py (plain `node`, not the playwright test
// runner). Environment: COMFY_URL, CHROMIUM, PROFILE, SHOT_DIR (screenshots),
// SHOT_PREFIX, RENDERER ("classic" or "vue": the frontend's Vue nodes),
// CKPT_SD15 / CKPT_SD3 (header-only checkpoints in the server's folder; SD3
// only where the host has flow models), RUN_FLOW=1 (queue a real run on the
// SD3 one). The last line of stdout is a JSON report; the Python test
// checks its numbers against the engine.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const URL_ = process.env.COMFY_URL ?? "http://127.0.0.1:8188";
const SHOT_DIR = process.env.SHOT_DIR ?? ".";
const PREFIX = process.env.SHOT_PREFIX ?? "widget";
const RENDERER = process.env.RENDERER ?? "classic";
const CKPT_SD15 = process.env.CKPT_SD15 ?? "";
const CKPT_SD3 = process.env.CKPT_SD3 ?? "";
const RUN_FLOW = process.env.RUN_FLOW === "1";
const report = { ok: false, renderer: RENDERER, latency_ms: [], fetch_ms: [],
  our_console_errors: [], other_console_errors: [], shots: [] };
const step = (name) => { report.step = name; };
const ours = (text) => /sampler_lab|schedule_preview|SamplerLab/i.test(text);

const context = await chromium.launchPersistentContext(process.env.PROFILE ?? "", {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 2100, height: 2200 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const page = context.pages()[0] ?? await context.newPage();
page.on("console", (msg) => {
  if (msg.type() !== "error") return;
  const text = `${msg.text()} @ ${msg.location()?.url ?? ""}`;
  (ours(text) ? report.our_console_errors : report.other_console_errors).push(text);
});
page.on("pageerror", (err) => {
  const text = `${err.message} ${err.stack ?? ""}`;
  (ours(text) ? report.our_console_errors : report.other_console_errors).push(text);
});

const frames = () => page.evaluate(() => new Promise((r) =>
  requestAnimationFrame(() => requestAnimationFrame(r))));

async function waitState(id, pred, arg, timeout = 8000) {
  await page.waitForFunction(([id, src, arg]) => {
    const node = window.app.graph.getNodeById(id);
    const s = node?.__samplerLab;
    return s && new Function("s", "node", "arg", `return (${src})`)(s, node, arg);
  }, [id, pred, arg], { timeout, polling: 10 });
}

// Set one widget the way the UI does (value, then its callback).
async function setWidget(id, name, value) {
  return page.evaluate(([id, name, value]) => {
    const node = window.app.graph.getNodeById(id);
    const w = node.widgets.find((x) => x.name === name);
    const t0 = performance.now();
    w.value = value;
    w.callback?.(value, window.app.canvas, node);
    window.app.graph.setDirtyCanvas(true, true);
    return t0;
  }, [id, name, value]);
}

// ...and time how long until the plot shows the new schedule.
async function change(id, name, value) {
  const before = (await stateOf(id, ["drawnKey"])).drawnKey;
  const t0 = await setWidget(id, name, value);
  // drawn anew, or nothing to redraw (the same schedule as before)
  await waitState(id, "s.key && !s.pendingKey && s.drawnKey === s.key"
    + " && (s.drawnAt > arg[0] || s.key === arg[1])", [t0, before]);
  const [ms, fetchMs] = await page.evaluate(([id, t0]) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return [s.drawnAt > t0 ? s.drawnAt - t0 : null, s.fetchMs];
  }, [id, t0]);
  if (ms !== null) {
    report.latency_ms.push(Math.round(ms * 10) / 10);
    report.fetch_ms.push(fetchMs);
  }
}

// The widgets a user sees on a node: in Vue nodes the rows on screen, in
// the canvas the widgets it draws.
async function visibleWidgets(id) {
  await frames();
  return page.evaluate(([id, vue]) => {
    const node = window.app.graph.getNodeById(id);
    const named = [...document.querySelectorAll(`[data-node-id="${id}"] [data-widget-name]`)];
    if (vue && named.length) { // newer frontends name each row
      return named.filter((el) => el.offsetParent !== null && getComputedStyle(el).display !== "none")
        .map((el) => el.dataset.widgetName).filter((n) => n !== "sampler_lab_plot");
    }
    if (vue) {
      const list = document.querySelector(`[data-node-id="${id}"] .lg-node-widgets`);
      return [...(list?.children ?? [])].filter((el) => el.offsetParent !== null
        && getComputedStyle(el).display !== "none").map((el) => el.querySelector("p")?.textContent?.trim());
    }
    const modern = typeof node.isWidgetVisible === "function";
    return node.widgets.filter((w) => w.name !== "sampler_lab_plot" && w.type !== "sampler_lab_hidden"
      && !(modern && !node.isWidgetVisible(w))).map((w) => w.name);
  }, [id, RENDERER === "vue"]);
}

// Bars drawn on the plot canvas: for each step, the top of its bar read from
// the pixels (the bar's edge colour), next to where the numbers put it.
async function measureBars(id) {
  await frames();
  return page.evaluate((id) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    const { rect } = s.plot;
    const ratio = s.canvas.width / s.canvas.clientWidth;
    const ctx = s.canvas.getContext("2d");
    const data = ctx.getImageData(0, 0, s.canvas.width, s.canvas.height).data;
    const edge = (() => { const c = document.createElement("canvas").getContext("2d");
      c.fillStyle = s.palette.noiseEdge; const h = c.fillStyle;
      return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); })();
    const n = s.sigmas.length - 1;
    const out = [];
    for (let i = 0; i < n; i++) {
      // every column of the bar: the curve may cover its edge in a few
      const tops = [];
      const x0 = Math.ceil((rect.x + (rect.w * i) / n + 2) * ratio);
      const x1 = Math.floor((rect.x + (rect.w * (i + 1)) / n - 2) * ratio);
      for (let x = x0; x <= x1; x++) {
        for (let y = Math.floor(rect.y * ratio); y <= Math.ceil((rect.y + rect.h) * ratio); y++) {
          const k = (y * s.canvas.width + x) * 4;
          const d = Math.hypot(data[k] - edge[0], data[k + 1] - edge[1], data[k + 2] - edge[2]);
          if (d < 50) { tops.push(y / ratio); break; }
        }
      }
      tops.sort((a, b) => a - b);
      const top = tops.length ? tops[Math.floor(tops.length / 2)] : null;
      const f = s.noise?.[i] ?? 0;
      const expected = f > 0 ? rect.y + rect.h * (1 - Math.min(1, f)) : null;
      // the curve drawn over the bar's edge all along it hides the edge
      const [ax, ay] = s.points[i], [bx, by] = s.points[i + 1];
      const hidden = expected !== null && [0.1, 0.5, 0.9].every((t) =>
        Math.abs(ay + (by - ay) * t - expected) < 4);
      out.push({ i, fraction: f, expected_top: expected, drawn_top: top, hidden_by_curve: hidden });
    }
    return out;
  }, id);
}

// Mean brightness of a plot's pixels and of its spot on the screen.
async function plotLook(id) {
  await frames();
  const canvasMean = await page.evaluate((id) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    const d = s.canvas.getContext("2d").getImageData(0, 0, s.canvas.width, s.canvas.height).data;
    let sum = 0;
    for (let i = 0; i < d.length; i += 4) sum += 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2];
    const r = s.canvas.getBoundingClientRect();
    return { mean: sum / (d.length / 4), box: [r.left, r.top, r.width, r.height] };
  }, id);
  return canvasMean;
}

async function setTheme(name) {
  const done = await page.evaluate(async (name) => {
    const { app } = window;
    try {
      if (app.extensionManager?.setting?.set) {
        await app.extensionManager.setting.set("Comfy.ColorPalette", name);
        return true;
      }
      if (app.ui?.settings?.setSettingValueAsync) {
        await app.ui.settings.setSettingValueAsync("Comfy.ColorPalette", name);
        return true;
      }
      app.ui?.settings?.setSettingValue?.("Comfy.ColorPalette", name);
      return !!app.ui?.settings?.setSettingValue;
    } catch (e) {
      return String(e);
    }
  }, name);
  await page.waitForTimeout(600); // the widget's ticker notices the palette
  await frames();
  return done;
}

async function shot(name) {
  await frames();
  const path = `${SHOT_DIR}/${PREFIX}_${name}.png`;
  await page.screenshot({ path });
  report.shots.push(path);
}

// Each node's widget values as a workflow file has them and as the loaded
// graph saves them again (the Python test compares them).
async function loadedValues(workflow) {
  return page.evaluate((wf) => {
    const now = Object.fromEntries(window.app.graph.serialize().nodes.map((n) => [n.id, n]));
    return wf.nodes.map((n) => ({ id: n.id, type: n.type, file: n.widgets_values ?? null,
      loaded: now[n.id] ? now[n.id].widgets_values ?? null : "missing" }));
  }, workflow);
}

// One node (title included) as a picture of its own.
async function nodeShot(id, name) {
  await frames();
  const box = await page.evaluate(([id, vue]) => {
    const node = window.app.graph.getNodeById(id);
    const el = document.querySelector(`[data-node-id="${id}"]`);
    if (vue && el) {
      const r = el.getBoundingClientRect();
      return [r.left, r.top, r.width, r.height];
    }
    const c = window.app.canvas;
    const title = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
    const [x, y] = c.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - title]);
    const r = c.canvas.getBoundingClientRect();
    const k = c.ds.scale;
    return [r.left + x, r.top + y, node.size[0] * k, (node.size[1] + title) * k];
  }, [id, RENDERER === "vue"]);
  const [x, y, w, h] = box.map((v) => Math.round(v));
  const path = `${SHOT_DIR}/${PREFIX}_node_${name}.png`;
  await page.screenshot({ path, clip: { x: Math.max(0, x - 8), y: Math.max(0, y - 8),
    width: w + 16, height: h + 16 } });
  report.shots.push(path);
}

// A node's height on screen, in canvas units (title included).
async function nodeHeight(id) {
  await frames();
  return page.evaluate(([id, vue]) => {
    const node = window.app.graph.getNodeById(id);
    const el = document.querySelector(`[data-node-id="${id}"]`);
    const scale = window.app.canvas.ds.scale;
    if (vue && el) return el.getBoundingClientRect().height / scale;
    return node.size[1] + (window.LiteGraph.NODE_TITLE_HEIGHT ?? 30);
  }, [id, RENDERER === "vue"]);
}

async function canvasPoint(id, i) {
  return page.evaluate(([id, i]) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    const [px, py] = s.points[i];
    const r = s.canvas.getBoundingClientRect();
    const kx = r.width / s.canvas.clientWidth, ky = r.height / s.canvas.clientHeight;
    return [r.left + px * kx, r.top + py * ky];
  }, [id, i]);
}

function stateOf(id, fields) {
  return page.evaluate(([id, fields]) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return Object.fromEntries(fields.map((f) => [f, JSON.parse(JSON.stringify(s[f] ?? null))]));
  }, [id, fields]);
}

try {
  step("load");
  await page.request.post(`${URL_}/api/settings/Comfy.TutorialCompleted`, { data: true })
    .catch(() => null);
  await page.request.post(`${URL_}/api/settings/Comfy.VueNodes.Enabled`, { data: RENDERER === "vue" })
    .catch(() => null);
  await page.goto(URL_, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph
    && window.LiteGraph.registered_node_types?.SamplerLabKSampler
    && (window.app.extensions ?? []).some((e) => e.name === "SamplerLab.SchedulePreview"),
  null, { timeout: 90000 });
  await page.keyboard.press("Escape");
  report.frontend = await page.evaluate(() => (window.__COMFYUI_FRONTEND_VERSION__
    ?? (window.comfyAPI ? "current" : "legacy")));
  report.vue_mode = await page.evaluate(() => !!window.LiteGraph.vueNodesMode);

  step("add nodes");
  const ids = await page.evaluate(([sd15, sd3, vue]) => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    // fresh node ids: Vue nodes keep the layout of ids they have seen
    if (app.graph.state) app.graph.state.lastNodeId = Math.max(app.graph.state.lastNodeId ?? 0, 1000);
    app.graph.last_node_id = Math.max(app.graph.last_node_id ?? 0, 1000);
    app.canvas.ds.offset = [0, 0];
    app.canvas.ds.scale = vue ? 0.85 : 0.9; // Vue nodes are larger; at 0.8 and below they hide widgets
    // below the KSampler (its advanced inputs folded)
    const row2 = vue ? 1000 : 760;
    const add = (type, pos) => {
      if (!LiteGraph.registered_node_types[type]) return null;
      const node = LiteGraph.createNode(type);
      node.pos = pos;
      app.graph.add(node);
      return node;
    };
    const ck15 = add("CheckpointLoaderSimple", [20, 60]);
    ck15.widgets.find((w) => w.name === "ckpt_name").value = sd15;
    const k = add("SamplerLabKSampler", [470, 60]);
    ck15.connect(0, k, 0);
    let ck3 = null, ms3 = null, kf = null;
    if (sd3 && LiteGraph.registered_node_types.ModelSamplingSD3) {
      ck3 = add("CheckpointLoaderSimple", [20, 330]);
      ck3.widgets.find((w) => w.name === "ckpt_name").value = sd3;
      ms3 = add("ModelSamplingSD3", [20, 600]);
      ms3.widgets.find((w) => w.name === "shift").value = 2.0;
      ck3.connect(0, ms3, 0);
      kf = add("SamplerLabKSampler", [930, 60]);
      ms3.connect(0, kf, 0);
    }
    const s = add("SamplerLabScheduler", [1390, 60]);
    (ck3 ?? ck15).connect(0, s, 0);
    const sm = add("SamplerLabSampler", [1850, 60]);
    const a = add("SamplerLabKSamplerAdvanced", [470, row2]);
    const c = add("SamplerLabCustomSigmas", [930, row2]);
    const o = add("SamplerLabOptimizeSchedule", [1390, row2]);
    const p = add("SamplerLabSigmasPreview", [1850, row2]);
    s.connect(0, p, 0);
    // the core's own, as new users know them: the yardstick for ours
    const ck = add("KSampler", [20, row2 + (vue ? 260 : 200)]);
    const cka = add("KSamplerAdvanced", [20, row2 + (vue ? 760 : 560)]);
    return { k: k.id, kf: kf?.id ?? null, s: s.id, sm: sm.id, a: a.id, c: c.id, o: o.id,
      p: p.id, ms3: ms3?.id ?? null, ck3: ck3?.id ?? null, core_k: ck.id, core_a: cka.id };
  }, [CKPT_SD15, CKPT_SD3, RENDERER === "vue"]);
  report.ids = ids;
  for (const id of [ids.k, ids.s, ids.a, ids.kf].filter((x) => x !== null)) {
    await waitState(id, "s.points.length > 2 && s.drawnKey === s.key && s.modelShown");
  }
  await waitState(ids.c, "s.points.length > 2");
  await shot("dark");

  step("as light as the core's");
  // default size, widgets a new user sees, and the fold
  const plotOf = (id) => page.evaluate((id) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return s.el.getBoundingClientRect().height / window.app.canvas.ds.scale;
  }, id);
  report.light = {};
  // a frontend that folds advanced inputs itself: no toggle row of ours
  report.native_fold = await page.evaluate((id) =>
    !!window.app.graph.getNodeById(id).__samplerLab?.toggle?.__labHidden, ids.k);
  for (const [ours, core] of [[ids.k, ids.core_k], [ids.a, ids.core_a]]) {
    report.light[ours] = {
      ours_height: await nodeHeight(ours), core_height: await nodeHeight(core),
      plot_height: await plotOf(ours),
      ours_visible: await visibleWidgets(ours), core_visible: await visibleWidgets(core),
    };
  }
  await setWidget(ids.k, "advanced", true);
  report.light.opened = { visible: await visibleWidgets(ids.k), height: await nodeHeight(ids.k),
    property: await page.evaluate((id) => window.app.graph.getNodeById(id)
      .properties?.sampler_lab_advanced ?? null, ids.k) };
  await setWidget(ids.k, "advanced", false);
  report.light.closed = { visible: await visibleWidgets(ids.k), height: await nodeHeight(ids.k) };

  step("the model each preview assumes");
  report.models = {};
  for (const [name, id] of Object.entries({ k: ids.k, kf: ids.kf, s: ids.s, a: ids.a })) {
    if (id === null) continue;
    if (name !== "a") await waitState(id, "s.modelShown && s.modelShown.source === 'upstream'");
    report.models[name] = (await stateOf(id, ["modelShown"])).modelShown;
  }

  step("widgets per selection");
  report.widgets = { sampler: {}, scheduler: {} };
  const heights = {};
  for (const name of ["euler", "lms", "dpm_adaptive", "dpmpp_2m", "dpmpp_sde", "uni_pc_bh2", "euler"]) {
    await setWidget(ids.sm, "sampler_name", name);
    report.widgets.sampler[name] = await visibleWidgets(ids.sm);
    heights[name] = await page.evaluate((id) => window.app.graph.getNodeById(id).size[1], ids.sm);
  }
  report.sampler_heights = heights;
  for (const name of ["normal", "karras", "vp", "linear_quadratic", "align_your_steps"]) {
    await change(ids.s, "scheduler", name);
    report.widgets.scheduler[name] = await visibleWidgets(ids.s);
  }
  // small defaults shown as they are (vp_eps_s 0.001, dpm_adaptive_atol 0.0078)
  await setWidget(ids.sm, "sampler_name", "dpm_adaptive");
  await change(ids.s, "scheduler", "vp");
  // both are advanced: open the fold to see them
  await setWidget(ids.sm, "advanced", true);
  await setWidget(ids.s, "advanced", true);
  await frames();
  report.shown_values = await page.evaluate(([ids, vue]) => {
    const out = {};
    for (const [id, name] of [[ids.sm, "dpm_adaptive_atol"], [ids.s, "vp_eps_s"]]) {
      const node = window.app.graph.getNodeById(id);
      const w = node.widgets.find((x) => x.name === name);
      if (vue) {
        const row = document.querySelector(`[data-node-id="${id}"] [data-widget-name="${name}"]`)
          ?? [...document.querySelectorAll(`[data-node-id="${id}"] .lg-widget-container`)]
            .find((el) => el.querySelector("p")?.textContent?.trim() === name);
        out[name] = row?.querySelector("input")?.value ?? null;
      } else { // the canvas shows the value at the widget's precision
        out[name] = Number(w.value).toFixed(w.options.precision ?? 3);
      }
    }
    return out;
  }, [ids, RENDERER === "vue"]);
  await setWidget(ids.sm, "advanced", false);
  await setWidget(ids.s, "advanced", false);
  await setWidget(ids.sm, "sampler_name", "euler");
  await change(ids.s, "scheduler", "karras");
  await shot("selection");

  step("noise fractions");
  report.noise = [];
  const cases = [["euler_ancestral", -1, 1], ["dpmpp_2m_sde", 0.5, 1], ["dpmpp_3m_sde", 0.2, 1],
    ["dpmpp_2m", 2, 1], ["dpmpp_2m_sde", 2, 1], ["euler", 0.7, 1.5], ["euler", -1, 1]];
  for (const id of [ids.k, ids.kf].filter((x) => x !== null)) {
    await change(id, "steps", 12);
    for (const [sampler, eta, sNoise] of cases) {
      await setWidget(id, "noise_strength", eta);
      await setWidget(id, "s_noise", sNoise);
      await change(id, "sampler_name", sampler);
      const st = await stateOf(id, ["sigmas", "noise", "key", "modelShown"]);
      report.noise.push({ node: id, sampler, eta, s_noise: sNoise, family: st.modelShown.family,
        shift: st.modelShown.shift, sigmas: st.sigmas, noise: st.noise, key: st.key,
        bars: await measureBars(id) });
    }
  }
  await setWidget(ids.k, "s_noise", 1);
  await setWidget(ids.k, "noise_strength", -1);
  await change(ids.k, "sampler_name", "dpmpp_2m_sde");
  // a few more edits, for the latency figures
  await change(ids.k, "scheduler", "exponential");
  await change(ids.k, "steps", 30);
  await change(ids.k, "denoise", 0.6);
  await change(ids.s, "karras_rho", 3.0);
  await change(ids.a, "steps", 12);

  step("hover");
  const [hx, hy] = await canvasPoint(ids.k, 5);
  await page.mouse.move(hx - 3, hy - 3);
  await page.mouse.move(hx, hy);
  await waitState(ids.k, "!!s.hoverLabel");
  report.hover = (await stateOf(ids.k, ["hoverLabel"])).hoverLabel;
  await page.mouse.move(5, 1240);

  step("drag");
  const textBefore = await page.evaluate((id) =>
    window.app.graph.getNodeById(id).widgets.find((w) => w.name === "sigmas").value, ids.c);
  const posBefore = await page.evaluate((id) => [...window.app.graph.getNodeById(id).pos], ids.c);
  const [dx, dy] = await canvasPoint(ids.c, 3);
  await page.mouse.move(dx, dy);
  await page.mouse.down();
  for (let k = 1; k <= 6; k++) await page.mouse.move(dx, dy + 4 * k);
  await page.mouse.up();
  await frames();
  report.drag = await page.evaluate(([id, textBefore, posBefore]) => {
    const node = window.app.graph.getNodeById(id);
    const text = node.widgets.find((w) => w.name === "sigmas").value;
    const values = text.split(",").map(Number);
    const old = textBefore.split(",").map(Number);
    const s = node.__samplerLab;
    const area = document.querySelector(`[data-node-id="${id}"] textarea`) ?? node.widgets
      .find((w) => w.name === "sigmas")?.element;
    return {
      text, text_changed: text !== textBefore,
      decreasing: values.every((v, i) => i === 0 || v < values[i - 1]),
      only_point_3: values.length === old.length && values.every((v, i) => i === 3 || v === old[i])
        && values[3] < old[3],
      points_follow: JSON.stringify(s.sigmas.slice(0, values.length)) === JSON.stringify(values),
      node_moved: node.pos[0] !== posBefore[0] || node.pos[1] !== posBefore[1],
      textarea_shows: area ? area.value === text : null,
    };
  }, [ids.c, textBefore, posBefore]);

  step("typing");
  if (RENDERER === "vue") {
    await page.fill(`[data-node-id="${ids.c}"] textarea`, "10, 5, 1");
  } else {
    await page.evaluate((id) => {
      const node = window.app.graph.getNodeById(id);
      const w = node.widgets.find((x) => x.name === "sigmas");
      const el = w.inputEl ?? w.element;
      if (el && "value" in el) {
        el.value = "10, 5, 1";
        el.dispatchEvent(new Event("input", { bubbles: true }));
      } else {
        w.value = "10, 5, 1";
      }
    }, ids.c);
  }
  await waitState(ids.c, "s.sigmas && s.sigmas.length === 4 && s.points.length === 4");
  report.typed_points = (await stateOf(ids.c, ["points"])).points.length;

  step("optimize before a run");
  report.optimize = { before: await page.evaluate((id) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return { height: s.el.getBoundingClientRect().height / (window.app.canvas.ds?.scale ?? 1),
      node_height: window.app.graph.getNodeById(id).size[1] };
  }, ids.o) };

  step("executed");
  // the Optimize Schedule node's outcome, as its UI output brings it
  const outcome = { cached: false, calls: 600, budget_calls: 600, error_before: 0.0312,
    error_after: 0.0121, start: "karras", summary: "600 calls" };
  const used = [14.6, 6.1, 2.9, 1.3, 0.55, 0.21, 0.029, 0];
  await page.evaluate(async ([id, used, outcome]) => {
    const { api } = await import("/scripts/api.js");
    const detail = { node: String(id), display_node: String(id),
      output: { sampler_lab_sigmas: used, sampler_lab_outcome: [outcome],
        sampler_lab_summary: ["600 calls (192 for the reference)"] } };
    if (typeof api?.dispatchEvent === "function") api.dispatchEvent(new CustomEvent("executed", { detail }));
    else window.app.graph.getNodeById(id).onExecuted?.(detail.output);
  }, [ids.o, used, outcome]);
  await waitState(ids.o, "s.used && s.outcome && s.drawnKey && s.drawnKey.startsWith('used:')");
  report.optimize.after = await page.evaluate(([id, used]) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return { shown: JSON.stringify(s.used) === JSON.stringify(used), head: s.head.text.textContent,
      height: s.el.getBoundingClientRect().height / (window.app.canvas.ds?.scale ?? 1),
      points: s.points.length };
  }, [ids.o, used]);

  if (RUN_FLOW && ids.ms3 !== null) {
    step("a real run on the flow model");
    // a shift of each renderer's own: the server would answer a repeated
    // prompt from its cache, without running the Scheduler node again
    report.run_shift = RENDERER === "vue" ? 2.25 : 2.5;
    await page.evaluate(([s, ms3, shift]) => {
      const { app } = window;
      const sched = app.graph.getNodeById(s);
      app.graph.getNodeById(ms3).connect(0, sched, 0);
      app.graph.getNodeById(ms3).widgets.find((w) => w.name === "shift").value = shift;
      sched.widgets.find((w) => w.name === "scheduler").value = "karras";
      sched.widgets.find((w) => w.name === "steps").value = 6;
    }, [ids.s, ids.ms3, report.run_shift]);
    await page.evaluate(() => window.app.queuePrompt(0, 1));
    await waitState(ids.p, "s.used && s.used.length === 7", null, 60000);
    await waitState(ids.s, "s.runModel && s.drawnKey && s.drawnKey.startsWith('used:')", null, 20000);
    report.run = await page.evaluate(([s, p]) => {
      const a = window.app.graph.getNodeById(s).__samplerLab;
      const b = window.app.graph.getNodeById(p).__samplerLab;
      return { scheduler_model: a.runModel, scheduler_used: a.used, preview_used: b.used,
        head: a.head.text.textContent, preview_points: b.points.length };
    }, [ids.s, ids.p]);
    await shot("after_run");
    // the same prompt again: the server answers from its cache, and the
    // nodes keep showing what they last ran
    await page.evaluate(() => window.app.queuePrompt(0, 1));
    await page.waitForTimeout(4000);
    report.run.cached_rerun = await page.evaluate(([s, p]) => {
      const a = window.app.graph.getNodeById(s).__samplerLab;
      const b = window.app.graph.getNodeById(p).__samplerLab;
      return { scheduler_used_shown: !!(a.used && a.drawnKey?.startsWith("used:")),
        preview_used_shown: !!(b.used && b.drawnKey?.startsWith("used:")) };
    }, [ids.s, ids.p]);
  }

  step("invalid combination");
  await change(ids.s, "scheduler", "linear_quadratic");
  await change(ids.s, "steps", 4);
  await change(ids.s, "linear_quadratic_linear_steps", 9);
  report.invalid = await stateOf(ids.s, ["error", "points"]);
  report.invalid.points = report.invalid.points.length;
  await change(ids.s, "linear_quadratic_linear_steps", -1);
  await change(ids.s, "scheduler", "karras");

  step("manual model choice");
  await page.evaluate((id) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    s.head.select.value = "flow";
    s.head.select.dispatchEvent(new Event("change"));
  }, ids.k);
  await waitState(ids.k, "s.key && s.key.includes('family=flow') && s.drawnKey === s.key");
  report.manual = (await stateOf(ids.k, ["modelShown"])).modelShown;

  step("themes");
  report.themes = { dark: await plotLook(ids.k) };
  report.theme_set = await setTheme("light");
  report.themes.light = await plotLook(ids.k);
  report.themes.light_text = await page.evaluate((id) => window.app.graph.getNodeById(id)
    .__samplerLab.palette.text, ids.k);
  await shot("light");
  await setTheme("dark");

  step("each node, light and dark");
  const named = { ksampler: ids.k, ksampler_flow: ids.kf, ksampler_advanced: ids.a,
    scheduler: ids.s, sampler: ids.sm, custom_sigmas: ids.c, optimize: ids.o,
    sigmas_preview: ids.p, core_ksampler: ids.core_k };
  for (const theme of ["light", "dark"]) {
    await setTheme(theme);
    for (const [name, id] of Object.entries(named)) {
      if (id !== null) await nodeShot(id, `${name}_${theme}`);
    }
  }

  step("fits the node");
  report.fits = await page.evaluate((ids) => Object.values(ids).filter((x) => x !== null)
    .map((id) => {
      const node = window.app.graph.getNodeById(id);
      const s = node.__samplerLab;
      if (!s?.el?.isConnected) return null;
      const r = s.el.getBoundingClientRect();
      const box = document.querySelector(`[data-node-id="${id}"]`)?.getBoundingClientRect();
      const scale = window.app.canvas.ds.scale;
      const [x0] = window.app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1]]);
      const left = box ? box.left : window.app.canvas.canvas.getBoundingClientRect().left + x0;
      const width = box ? box.width : node.size[0] * scale;
      return { id, inside: r.left >= left - 1 && r.right <= left + width + 1, el: [r.left, r.right],
        node: [left, left + width] };
    }).filter(Boolean), ids);

  step("the fold persists");
  await setWidget(ids.a, "advanced", true);
  const openVisible = await visibleWidgets(ids.a);
  await page.evaluate(async () => {
    const saved = JSON.parse(JSON.stringify(window.app.graph.serialize()));
    await window.app.loadGraphData(saved);
  });
  await page.waitForTimeout(600);
  report.fold_reload = { before: openVisible, after: await visibleWidgets(ids.a),
    toggle: await page.evaluate((id) => window.app.graph.getNodeById(id).__samplerLab?.toggle?.value
      ?? null, ids.a),
    closed_elsewhere: await visibleWidgets(ids.k) };

  step("save and reload");
  const result = await page.evaluate(async (smId) => {
    const { app } = window;
    const PLOT = "sampler_lab_plot";
    const clone = (x) => JSON.parse(JSON.stringify(x));
    const byId = (wf) => Object.fromEntries(wf.nodes.map((n) => [n.id, n]));
    const saved = clone(app.graph.serialize());
    const prompt1 = clone((await app.graphToPrompt()).output);
    const ours = (n, w) => w.name === PLOT || w === n.__samplerLab?.toggle;
    const counts = Object.fromEntries(app.graph._nodes.map((n) => [n.id,
      n.widgets?.filter((w) => !ours(n, w)).length ?? 0]));
    await app.loadGraphData(clone(saved));
    await new Promise((r) => setTimeout(r, 400));
    const again = clone(app.graph.serialize());
    const prompt2 = clone((await app.graphToPrompt()).output);
    const a = byId(saved), b = byId(again);
    const widgetsEqual = Object.keys(a).every((id) =>
      JSON.stringify(a[id].widgets_values) === JSON.stringify(b[id]?.widgets_values));
    const extraOf = (id) => (a[id].widgets_values ?? []).length !== counts[id]
      || (a[id].widgets_values ?? []).includes(null);
    const noExtra = Object.keys(a).every((id) => !extraOf(id));
    const extraDetail = Object.keys(a).filter(extraOf).map((id) => ({ id, type: a[id].type,
      values: a[id].widgets_values, widgets: app.graph.getNodeById(Number(id))?.widgets
        ?.map((w) => w.name) }));
    const props = Object.keys(a).every((id) =>
      JSON.stringify(a[id].properties) === JSON.stringify(b[id]?.properties));
    for (const n of app.graph._nodes) { // the page without this file's widgets
      for (let i = (n.widgets?.length ?? 0) - 1; i >= 0; i--) {
        if (ours(n, n.widgets[i])) n.widgets.splice(i, 1);
      }
    }
    const bare = clone(app.graph.serialize());
    const prompt3 = clone((await app.graphToPrompt()).output);
    // (a node left with no widgets may save no list at all)
    const sameList = (x, y) => JSON.stringify(x ?? []) === JSON.stringify(y ?? []);
    const bareEqual = Object.keys(a).every((id) =>
      sameList(a[id].widgets_values, byId(bare)[id].widgets_values));
    const bareDiff = Object.keys(a).filter((id) =>
      !sameList(a[id].widgets_values, byId(bare)[id].widgets_values))
      .map((id) => ({ id, type: a[id].type, saved: a[id].widgets_values,
        bare: byId(bare)[id].widgets_values }));
    const noPlot = Object.values(prompt1).every((n) => !(PLOT in n.inputs));
    return {
      reload: { widgets_equal: widgetsEqual, no_extra_values: noExtra && bareEqual,
        properties_kept: props },
      api: { equal_after_reload: JSON.stringify(prompt1) === JSON.stringify(prompt2),
        equal_without_widget: JSON.stringify(prompt1) === JSON.stringify(prompt3),
        no_plot_input: noPlot, sampler_inputs: Object.keys(prompt1[String(smId)]?.inputs ?? {}) },
      extra_detail: extraDetail, bare_diff: bareDiff,
      sampler_values: a[smId]?.widgets_values?.length ?? null,
    };
  }, ids.sm);
  Object.assign(report, result);

  step("a workflow saved by the previous release");
  // tests/browser/previous_release.json: every Sampler Lab node with every
  // widget off its default, and the API prompt that release made of it
  const previous = JSON.parse(readFileSync(new URL("./previous_release.json", import.meta.url)));
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, previous.workflow);
  await page.waitForTimeout(800);
  report.previous = { values: await loadedValues(previous.workflow), saved_prompt: previous.prompt,
    prompt: await page.evaluate(async () => JSON.parse(JSON.stringify(
      (await window.app.graphToPrompt()).output))) };
  for (const n of previous.workflow.nodes) {
    const name = n.type.replace(/^SamplerLab/, "").toLowerCase();
    await page.evaluate((id) => { // each node in view for its picture
      const node = window.app.graph.getNodeById(id);
      window.app.canvas.ds.offset = [-node.pos[0] + 40, -node.pos[1] + 60];
      window.app.graph.setDirtyCanvas(true, true);
    }, n.id);
    await page.waitForTimeout(300);
    if (["ksampler", "sampler"].includes(name)) await nodeShot(n.id, `previous_release_${name}`);
  }
  await page.evaluate(() => { window.app.canvas.ds.offset = [0, 0]; });

  step("examples");
  // as the Templates dialog offers them: listed, with a thumbnail, and
  // laid out without overlaps once the frontend has sized every node
  report.examples = [];
  const listing = await page.request.get(`${URL_}/api/workflow_templates`).catch(() => null);
  const modules = listing?.ok() ? await listing.json() : {};
  const module = Object.keys(modules).find((m) => modules[m].some((n) => /Sampler Lab/.test(n)));
  for (const name of module ? modules[module] : []) {
    const base = `${URL_}/api/workflow_templates/${module}/${encodeURIComponent(name)}`;
    const thumb = await page.request.get(`${base}.jpg`);
    const workflow = await (await page.request.get(`${base}.json`)).json();
    await page.evaluate(async (wf) => {
      await window.app.loadGraphData(wf);
    }, workflow);
    await page.waitForTimeout(1500);
    const boxes = await page.evaluate(() => window.app.graph._nodes.map((n) => {
      const el = document.querySelector(`[data-node-id="${n.id}"]`);
      if (el) {
        const r = el.getBoundingClientRect();
        return [n.id, n.type, r.left, r.top, r.right, r.bottom];
      }
      const b = n.getBounding();
      return [n.id, n.type, b[0], b[1], b[0] + b[2], b[1] + b[3]];
    }));
    await page.waitForTimeout(400); // a few ticks of the widget's placement
    // plots on screen: exactly one per node of ours that has one, none left
    // over from the graph before (node ids are reused across workflows)
    const plots = await page.evaluate(() => {
      const shown = [...document.querySelectorAll(".sampler-lab-plot")]
        .filter((el) => el.isConnected && el.offsetParent !== null && el.getClientRects().length);
      const owners = shown.map((el) => window.app.graph._nodes.find((n) => n.__samplerLab?.el === el));
      return { shown: shown.length, stray: owners.filter((n) => !n).length,
        wanted: window.app.graph._nodes.filter((n) => n.__samplerLab?.el).length };
    });
    const overlaps = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        if (!(a[4] <= b[2] || b[4] <= a[2] || a[5] <= b[3] || b[5] <= a[3])) overlaps.push([a[1], b[1]]);
      }
    }
    // every widget value as the file has it, after the frontend and this
    // file's script have handled the nodes
    const values = await loadedValues(workflow);
    report.examples.push({ name, thumbnail: thumb.status(), type: thumb.headers()["content-type"],
      nodes: boxes.length, overlaps, plots, values });
    await shot(`example_${name.split(" - ")[0].replace(/[^A-Za-z0-9.]+/g, "_")}`);
    if (name.includes("flow")) await shot("example_flow");
  }

  step("degrade");
  report.degrade = await page.evaluate(() => {
    const ext = (window.app.extensions ?? []).find((e) => e.name === "SamplerLab.SchedulePreview");
    try {
      const bare = { comfyClass: "SamplerLabKSampler", widgets: [], properties: {} };
      ext.nodeCreated(bare);
      class Fake {}
      ext.beforeRegisterNodeDef(Fake, { name: "SamplerLabKSampler" });
      new Fake().onExecuted?.({ sampler_lab_sigmas: [1, 0] });
      return { no_throw: !bare.__samplerLab };
    } catch (e) {
      return { no_throw: false, error: String(e) };
    }
  });
  await frames();
  step("done");
  report.ok = true;
} catch (err) {
  report.error = `${report.step}: ${err?.message ?? err}`;
  await page.screenshot({ path: `${SHOT_DIR}/${PREFIX}_error.png` }).catch(() => null);
} finally {
  await context.close();
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
