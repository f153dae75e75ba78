// Sampler Lab Tune Sampler in headless Chromium against a running ComfyUI
// (run by tests/host/test_tune_server.py, plain `node`). Loads the saved
// workflow in WORKFLOW (JSON text), queues it from the frontend, and reports
// whether web/tune_table.js hid the tuned_table widget and wrote the fitted
// table into it, what the node's outcome line shows, and the workflow as the
// frontend now saves it. Environment: COMFY_URL, CHROMIUM, PROFILE, WORKFLOW,
// RENDERER ("classic" or "vue"). The last line of stdout is a JSON report.
import { chromium } from "playwright-core";

const URL_ = process.env.COMFY_URL ?? "http://127.0.0.1:8188";
const RENDERER = process.env.RENDERER ?? "classic";
const WORKFLOW = JSON.parse(process.env.WORKFLOW ?? "{}");
const report = { ok: false, renderer: RENDERER, our_console_errors: [], other_console_errors: [] };
const ours = (text) => /sampler_lab|tune_table|schedule_preview|SamplerLab/i.test(text);

const context = await chromium.launchPersistentContext(process.env.PROFILE ?? "", {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1800, height: 1200 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const page = context.pages()[0] ?? await context.newPage();
page.on("console", (msg) => {
  if (msg.type() !== "error") return;
  const text = `${msg.text()} ${msg.location()?.url ?? ""}`;
  (ours(text) ? report.our_console_errors : report.other_console_errors).push(text);
});
page.on("pageerror", (err) => {
  const text = `${err.message} ${err.stack ?? ""}`;
  (ours(text) ? report.our_console_errors : report.other_console_errors).push(text);
});

try {
  report.step = "load";
  await page.request.post(`${URL_}/api/settings/Comfy.TutorialCompleted`, { data: true })
    .catch(() => null);
  await page.request.post(`${URL_}/api/settings/Comfy.VueNodes.Enabled`,
    { data: RENDERER === "vue" }).catch(() => null);
  await page.goto(URL_, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.LiteGraph
    && window.LiteGraph.registered_node_types?.SamplerLabTuneSampler
    && (window.app.extensions ?? []).some((e) => e.name === "SamplerLab.TuneTable"),
  null, { timeout: 120000 });
  await page.keyboard.press("Escape");
  report.frontend = await page.evaluate(() => (window.__COMFYUI_FRONTEND_VERSION__
    ?? (window.comfyAPI ? "current" : "legacy")));

  report.step = "load workflow";
  await page.evaluate(async (wf) => { await window.app.loadGraphData(wf); }, WORKFLOW);
  const tuneId = WORKFLOW.nodes.find((n) => n.type === "SamplerLabTuneSampler").id;
  report.before = await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    const w = node.widgets.find((x) => x.name === "tuned_table");
    const size = typeof w.computeSize === "function" ? w.computeSize(node.size[0]) : null;
    return { value: w.value, hidden: !!w.hidden || w.type === "sampler_lab_hidden",
      height: size ? size[1] : null };
  }, tuneId);

  report.step = "queue";
  await page.evaluate(() => window.app.queuePrompt(0, 1));
  await page.waitForFunction((id) => {
    const node = window.app.graph.getNodeById(id);
    const w = node?.widgets?.find((x) => x.name === "tuned_table");
    return w && typeof w.value === "string" && w.value.length > 0;
  }, tuneId, { timeout: 300000, polling: 200 });
  await page.waitForTimeout(500);
  report.after = await page.evaluate((id) => {
    const node = window.app.graph.getNodeById(id);
    const w = node.widgets.find((x) => x.name === "tuned_table");
    const s = node.__samplerLab;
    return { value: w.value, head: s?.head?.text?.textContent ?? null,
      outcome: s?.outcome ?? null };
  }, tuneId);
  if (process.env.SHOT) {
    await page.evaluate((id) => {
      const node = window.app.graph.getNodeById(id);
      window.app.canvas.ds.offset = [-node.pos[0] + 40, -node.pos[1] + 80];
      window.app.canvas.ds.scale = 1;
      window.app.graph.setDirtyCanvas(true, true);
    }, tuneId);
    await page.waitForTimeout(800);
    await page.screenshot({ path: process.env.SHOT });
  }
  report.step = "save";
  report.saved = await page.evaluate(() => window.app.graph.serialize());
  report.ok = true;
} catch (err) {
  report.error = `${report.step}: ${err?.message ?? err}`;
} finally {
  await context.close();
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
