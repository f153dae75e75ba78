// Saves a workflow and its API prompt as a release of Sampler Lab writes
// them, for the browser test to load in a later release
// (tests/browser/previous_release.json). Run against a ComfyUI whose
// custom_nodes/ holds the release to record:
//   COMFY_URL=http://127.0.0.1:8188 OUT=previous_release.json node save_workflow.mjs
// Every widget of each Sampler Lab node gets a value other than its default
// (a combo's second entry, a number a third of the way into its range), so
// a shifted or reset value after loading shows.
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const URL_ = process.env.COMFY_URL ?? "http://127.0.0.1:8188";
const context = await chromium.launchPersistentContext(process.env.PROFILE ?? "", {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  viewport: { width: 1600, height: 1200 }, args: ["--headless", "--no-sandbox", "--disable-gpu"],
});
const page = context.pages()[0] ?? await context.newPage();
await page.goto(URL_, { waitUntil: "domcontentloaded" });
await page.waitForFunction(() => window.app?.graph
  && window.LiteGraph?.registered_node_types?.SamplerLabKSampler, null, { timeout: 90000 });
const saved = await page.evaluate(async () => {
  const { app, LiteGraph } = window;
  app.graph.clear();
  const types = ["SamplerLabKSampler", "SamplerLabKSamplerAdvanced", "SamplerLabSampler",
    "SamplerLabScheduler", "SamplerLabCustomSigmas", "SamplerLabOptimizeSchedule"];
  let x = 20;
  for (const type of types) {
    const node = LiteGraph.createNode(type);
    node.pos = [x, 40];
    x += 380;
    app.graph.add(node);
    for (const w of node.widgets ?? []) {
      if (w.options?.serialize === false || w.name === "control_after_generate") continue;
      const o = w.options ?? {};
      if (Array.isArray(o.values)) w.value = o.values[Math.min(1, o.values.length - 1)];
      else if (typeof w.value === "number") {
        const lo = Number.isFinite(o.min) ? o.min : 0;
        const hi = Number.isFinite(o.max) ? Math.min(o.max, lo + 100) : lo + 100;
        let v = lo + (hi - lo) / 3;
        v = w.type === "number" && Number.isInteger(w.value) && (o.precision ?? 0) === 0
          ? Math.round(v) : Number(v.toFixed(o.precision ?? 2));
        w.value = v === w.value ? v + (o.step2 ?? 1) : v;
      } else if (w.name === "restart") w.value = "default";
      else if (w.name === "sigmas") w.value = "14.6, 5, 1.5, 0.3, 0";
      else if (typeof w.value === "string") w.value = `${w.value}x`;
    }
  }
  const workflow = JSON.parse(JSON.stringify(app.graph.serialize()));
  const prompt = JSON.parse(JSON.stringify((await app.graphToPrompt()).output));
  return { workflow, prompt, frontend: window.__COMFYUI_FRONTEND_VERSION__ ?? null };
});
await context.close();
writeFileSync(process.env.OUT ?? "previous_release.json", `${JSON.stringify(saved, null, 1)}\n`);
console.log(`saved ${saved.workflow.nodes.length} nodes (frontend ${saved.frontend})`);
