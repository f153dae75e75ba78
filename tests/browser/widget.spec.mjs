// The Sampler Lab widget in headless Chromium against a running ComfyUI.
// Run by tests/host/test_browser.py (plain `node`, not the playwright test
// runner): COMFY_URL, SHOT (screenshot path), CHROMIUM, PROFILE come from the
// environment; the last line of stdout is a JSON report.
import { chromium } from "playwright-core";

const URL_ = process.env.COMFY_URL ?? "http://127.0.0.1:8188";
const SHOT = process.env.SHOT ?? "widget.png";
const report = { ok: false, latency_ms: [], fetch_ms: [], our_console_errors: [], other_console_errors: [] };
const step = (name) => { report.step = name; };

function ours(text) {
  return /sampler_lab|schedule_preview|SamplerLab/i.test(text);
}

const context = await chromium.launchPersistentContext(process.env.PROFILE ?? "", {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1900, height: 1200 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const page = context.pages()[0] ?? await context.newPage();
page.on("console", (msg) => {
  if (msg.type() !== "error") return;
  const where = msg.location()?.url ?? "";
  const text = `${msg.text()} @ ${where}`;
  (ours(text) ? report.our_console_errors : report.other_console_errors).push(text);
});
page.on("pageerror", (err) => {
  const text = `${err.message} ${err.stack ?? ""}`;
  (ours(text) ? report.our_console_errors : report.other_console_errors).push(text);
});

// Helpers that run in the page.
const frames = () => page.evaluate(() => new Promise((r) =>
  requestAnimationFrame(() => requestAnimationFrame(r))));

async function waitState(id, pred, arg, timeout = 5000) {
  await page.waitForFunction(([id, src, arg]) => {
    const node = window.app.graph.getNodeById(id);
    const s = node?.__samplerLab;
    window.app.graph.setDirtyCanvas(true, true);
    return s && new Function("s", "node", "arg", `return (${src})`)(s, node, arg);
  }, [id, pred, arg], { timeout, polling: 10 });
}

// The plot's pixels on the main canvas: how many are curve-coloured, how
// many bar-coloured, and a hash to tell two drawings apart.
async function plotPixels(id) {
  await page.evaluate(() => window.app.graph.setDirtyCanvas(true, true));
  await frames();
  return page.evaluate((id) => {
    const app = window.app;
    const node = app.graph.getNodeById(id);
    const s = node.__samplerLab;
    const { rect } = s.plot;
    const canvas = app.canvas.canvas;
    const k = canvas.width / canvas.clientWidth;
    const [x0, y0] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + rect.x, node.pos[1] + rect.y]);
    const w = Math.round(rect.w * app.canvas.ds.scale * k), h = Math.round(rect.h * app.canvas.ds.scale * k);
    const data = canvas.getContext("2d").getImageData(Math.round(x0 * k), Math.round(y0 * k), w, h).data;
    let curve = 0, bars = 0, hash = 0;
    for (let i = 0; i < data.length; i += 4) {
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if (b > 200 && r < 120 && g > 120) curve++;
      if (r > 120 && g < 100 && b < 100) bars++;
      hash = (hash * 31 + r * 7 + g * 3 + b) >>> 0;
    }
    return { curve, bars, hash };
  }, id);
}

// Change one widget the way the UI does (value, then its callback) and time
// how long until the plot shows the new schedule.
async function change(id, name, value) {
  const t0 = await page.evaluate(([id, name, value]) => {
    const node = window.app.graph.getNodeById(id);
    const w = node.widgets.find((x) => x.name === name);
    const t0 = performance.now();
    w.value = value;
    w.callback?.(value, window.app.canvas, node);
    window.app.graph.setDirtyCanvas(true, true);
    return t0;
  }, [id, name, value]);
  await waitState(id, "s.key && s.drawnKey === s.key && s.drawnAt > arg && !s.pendingKey", t0);
  const [ms, fetchMs] = await page.evaluate(([id, t0]) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return [s.drawnAt - t0, s.fetchMs];
  }, [id, t0]);
  report.latency_ms.push(Math.round(ms * 10) / 10);
  report.fetch_ms.push(fetchMs);
}

async function screenPoint(id, i) {
  return page.evaluate(([id, i]) => {
    const app = window.app;
    const node = app.graph.getNodeById(id);
    const [px, py] = node.__samplerLab.points[i];
    const [cx, cy] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + px, node.pos[1] + py]);
    const r = app.canvas.canvas.getBoundingClientRect();
    return [r.left + cx, r.top + cy];
  }, [id, i]);
}

try {
  step("load");
  // A fresh profile would greet us with the templates dialog in the current
  // frontend; tell the server that tour is done (the old one ignores it).
  await page.request.post(`${URL_}/api/settings/Comfy.TutorialCompleted`, { data: true })
    .catch(() => null);
  await page.goto(URL_, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph
    && window.LiteGraph.registered_node_types?.SamplerLabKSampler
    && (window.app.extensions ?? []).some((e) => e.name === "SamplerLab.SchedulePreview"),
  null, { timeout: 90000 });
  await page.keyboard.press("Escape");
  report.frontend = await page.evaluate(() => (window.__COMFYUI_FRONTEND_VERSION__
    ?? (window.comfyAPI ? "current" : "legacy")));

  step("add nodes");
  const ids = await page.evaluate(() => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    app.canvas.ds.offset = [0, 0];
    app.canvas.ds.scale = 1;
    const add = (type, pos) => {
      if (!LiteGraph.registered_node_types[type]) return null;
      const node = LiteGraph.createNode(type);
      node.pos = pos;
      app.graph.add(node);
      return node.id;
    };
    return {
      k: add("SamplerLabKSampler", [90, 110]),
      c: add("SamplerLabCustomSigmas", [520, 110]),
      s: add("SamplerLabScheduler", [950, 110]),
      a: add("SamplerLabKSamplerAdvanced", [1380, 110]),
      o: add("SamplerLabOptimizeSchedule", [520, 620]),
    };
  });
  report.ids = ids;
  await waitState(ids.k, "s.points.length > 2 && s.drawnKey === s.key");
  await waitState(ids.c, "s.points.length > 2");
  await waitState(ids.s, "s.points.length > 2 && s.drawnKey === s.key");
  await waitState(ids.a, "s.points.length > 2 && s.drawnKey === s.key");

  step("drawn");
  const first = await plotPixels(ids.k);
  report.drawn_pixels = first.curve;

  step("scheduler change");
  const before = await page.evaluate((id) => window.app.graph.getNodeById(id).__samplerLab.sigmas, ids.k);
  await change(ids.k, "scheduler", "exponential");
  const after = await page.evaluate((id) => window.app.graph.getNodeById(id).__samplerLab.sigmas, ids.k);
  const second = await plotPixels(ids.k);
  report.curve_changed = JSON.stringify(before) !== JSON.stringify(after);
  report.pixels_changed = first.hash !== second.hash;
  // a few more edits, for the latency figures
  await change(ids.k, "scheduler", "karras");
  await change(ids.k, "steps", 30);
  await change(ids.k, "denoise", 0.6);
  await change(ids.s, "scheduler", "karras");
  await change(ids.s, "karras_rho", 3.0);
  await change(ids.a, "steps", 12);

  step("noise bars");
  await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    node.widgets.find((w) => w.name === "sampler_name").value = "euler";
    node.widgets.find((w) => w.name === "noise_strength").value = -1;
  }, ids.k);
  report.bars_at_eta0 = (await plotPixels(ids.k)).bars;
  await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    const w = node.widgets.find((x) => x.name === "sampler_name");
    w.value = "euler_ancestral";
    w.callback?.(w.value);
  }, ids.k);
  report.bars_at_eta1 = (await plotPixels(ids.k)).bars;

  step("hover");
  const [hx, hy] = await screenPoint(ids.k, 5);
  await page.mouse.move(hx - 3, hy - 3);
  await page.mouse.move(hx, hy);
  await waitState(ids.k, "!!s.hoverLabel");
  report.hover = await page.evaluate((id) => window.app.graph.getNodeById(id).__samplerLab.hoverLabel, ids.k);
  await page.mouse.move(5, 1190);

  step("drag");
  const textBefore = await page.evaluate((id) =>
    window.app.graph.getNodeById(id).widgets.find((w) => w.name === "sigmas").value, ids.c);
  const [dx, dy] = await screenPoint(ids.c, 3);
  await page.mouse.move(dx, dy);
  await page.mouse.down();
  for (let k = 1; k <= 6; k++) await page.mouse.move(dx, dy + 4 * k);
  await page.mouse.up();
  await frames();
  report.drag = await page.evaluate(([id, textBefore]) => {
    const node = window.app.graph.getNodeById(id);
    const text = node.widgets.find((w) => w.name === "sigmas").value;
    const values = text.split(",").map(Number);
    const old = textBefore.split(",").map(Number);
    const s = node.__samplerLab;
    return {
      text, text_changed: text !== textBefore,
      decreasing: values.every((v, i) => i === 0 || v < values[i - 1]),
      only_point_3: values.length === old.length && values.every((v, i) => i === 3 || v === old[i])
        && values[3] < old[3],
      points_follow: JSON.stringify(s.sigmas.slice(0, values.length)) === JSON.stringify(values),
      node_moved: node.pos[0] !== 520 || node.pos[1] !== 110,
    };
  }, [ids.c, textBefore]);
  report.drag.decreasing &&= report.drag.only_point_3 && !report.drag.node_moved;

  step("typing");
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
  await waitState(ids.c, "s.sigmas && s.sigmas.length === 4 && s.points.length === 4");
  report.typed_points = await page.evaluate((id) => window.app.graph.getNodeById(id).__samplerLab.points.length, ids.c);

  step("executed");
  const used = [9.5, 3.25, 1.5, 0.5, 0];
  const target = ids.o ?? ids.s;
  await page.evaluate(async ([id, used]) => {
    const { api } = await import("/scripts/api.js");
    const detail = { node: String(id), display_node: String(id), output: { sampler_lab_sigmas: used } };
    if (typeof api?.dispatchEvent === "function") api.dispatchEvent(new CustomEvent("executed", { detail }));
    else window.app.graph.getNodeById(id).onExecuted?.(detail.output);
  }, [target, used]);
  await waitState(target, "s.used && s.drawnKey && s.drawnKey.startsWith('used:')");
  report.executed = await page.evaluate(([id, used]) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return { shown: JSON.stringify(s.used) === JSON.stringify(used), node: id };
  }, [target, used]);

  step("invalid combination");
  // linear_steps above steps: the route says why, the plot shows it, and
  // nothing reaches the console
  await change(ids.s, "scheduler", "linear_quadratic");
  await change(ids.s, "steps", 4);
  await change(ids.s, "linear_quadratic_linear_steps", 9);
  report.invalid = await page.evaluate((id) => {
    const s = window.app.graph.getNodeById(id).__samplerLab;
    return { error: s.error, points: s.points.length };
  }, ids.s);
  await change(ids.s, "linear_quadratic_linear_steps", -1);
  await change(ids.s, "scheduler", "karras");

  step("family property");
  await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    node.properties.sampler_lab_family = "flow";
    node.properties.sampler_lab_shift = 3.0;
  }, ids.s);
  await waitState(ids.s, "s.key && s.key.includes('family=flow') && s.drawnKey === s.key");

  step("screenshot");
  await frames();
  await page.screenshot({ path: SHOT });

  step("save and reload");
  const result = await page.evaluate(async () => {
    const { app } = window;
    const PLOT = "sampler_lab_plot";
    const clone = (x) => JSON.parse(JSON.stringify(x));
    const byId = (wf) => Object.fromEntries(wf.nodes.map((n) => [n.id, n]));
    const saved = clone(app.graph.serialize());
    const prompt1 = clone((await app.graphToPrompt()).output);
    const counts = Object.fromEntries(app.graph._nodes.map((n) => [n.id,
      n.widgets.filter((w) => w.name !== PLOT).length]));
    await app.loadGraphData(clone(saved));
    await new Promise((r) => setTimeout(r, 300));
    const again = clone(app.graph.serialize());
    const prompt2 = clone((await app.graphToPrompt()).output);
    const a = byId(saved), b = byId(again);
    const widgetsEqual = Object.keys(a).every((id) =>
      JSON.stringify(a[id].widgets_values) === JSON.stringify(b[id]?.widgets_values));
    const noExtra = Object.keys(a).every((id) => a[id].widgets_values.length === counts[id]
      && !a[id].widgets_values.includes(null));
    const props = Object.keys(a).every((id) =>
      JSON.stringify(a[id].properties) === JSON.stringify(b[id]?.properties));
    // the same graph with the plot widgets taken away
    for (const n of app.graph._nodes) {
      const i = n.widgets?.findIndex((w) => w.name === PLOT) ?? -1;
      if (i >= 0) n.widgets.splice(i, 1);
    }
    const bare = clone(app.graph.serialize());
    const prompt3 = clone((await app.graphToPrompt()).output);
    const bareEqual = Object.keys(a).every((id) =>
      JSON.stringify(a[id].widgets_values) === JSON.stringify(byId(bare)[id].widgets_values));
    const noPlot = Object.values(prompt1).every((n) => !(PLOT in n.inputs));
    return {
      reload: { widgets_equal: widgetsEqual, no_extra_values: noExtra && bareEqual,
        properties_kept: props, flow_saved: Object.values(a).some((n) =>
          n.properties?.sampler_lab_family === "flow") },
      api: { equal_after_reload: JSON.stringify(prompt1) === JSON.stringify(prompt2),
        equal_without_widget: JSON.stringify(prompt1) === JSON.stringify(prompt3),
        no_plot_input: noPlot, example: prompt1[Object.keys(prompt1)[0]] },
    };
  });
  Object.assign(report, result);
  report.reload.properties_kept &&= report.reload.flow_saved;

  step("degrade");
  report.degrade = await page.evaluate(() => {
    const ext = (window.app.extensions ?? []).find((e) => e.name === "SamplerLab.SchedulePreview");
    try {
      // a frontend whose nodes lack the widget API: nothing happens
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
  const med = [...report.latency_ms].sort((a, b) => a - b)[Math.floor(report.latency_ms.length / 2)];
  report.latency_median_ms = med;
  report.ok = report.drawn_pixels > 50 && report.curve_changed && report.pixels_changed
    && report.bars_at_eta0 === 0 && report.bars_at_eta1 > 0 && /step/.test(report.hover ?? "")
    && report.drag.text_changed && report.drag.decreasing && report.drag.points_follow
    && report.typed_points === 4 && report.reload.widgets_equal && report.reload.no_extra_values
    && report.reload.properties_kept && report.api.equal_after_reload
    && report.api.equal_without_widget && report.api.no_plot_input && report.executed.shown
    && report.degrade.no_throw && report.our_console_errors.length === 0
    && /linear_steps/.test(report.invalid.error ?? "") && report.invalid.points === 0
    && Math.max(...report.latency_ms) < 100;
} catch (err) {
  report.error = `${report.step}: ${err?.message ?? err}`;
  await page.screenshot({ path: SHOT }).catch(() => null);
} finally {
  await context.close();
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
