// Builds example_workflows/ in a running ComfyUI (the newest frontend,
// classic canvas): each graph below is made of real nodes, laid out in
// columns by the sizes the frontend gives them (our plots and hidden
// widgets included), saved as the frontend saves a workflow, and
// photographed for its template thumbnail (<name>.jpg, the file the
// frontend's Templates dialog asks for beside <name>.json).
//
//   COMFY_URL=http://127.0.0.1:8188 OUT=example_workflows node tests/browser/examples.mjs
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const URL_ = process.env.COMFY_URL ?? "http://127.0.0.1:8188";
const OUT = process.env.OUT ?? ".";
const GAP = 40;

// name -> columns of nodes: [key, type, {widget: value}, title?]; links
// [from key, output slot, to key, input name].
const EXAMPLES = {
  "SDXL text to image - Sampler Lab KSampler": {
    columns: [
      [["ckpt", "CheckpointLoaderSimple", { ckpt_name: "sd_xl_base_1.0.safetensors" }]],
      [["pos", "CLIPTextEncode", { text: "a lighthouse on a cliff at dawn, oil painting, warm light" }],
        ["neg", "CLIPTextEncode", { text: "blurry, low quality, watermark" }],
        ["latent", "EmptyLatentImage", { width: 1024, height: 1024, batch_size: 1 }]],
      [["k", "SamplerLabKSampler", { seed: 42, control_after_generate: "fixed", steps: 30, cfg: 6.5,
        sampler_name: "dpmpp_2m_sde", scheduler: "karras", denoise: 1.0, noise_strength: 0.7,
        s_noise: 1.0 }]],
      [["decode", "VAEDecode", {}], ["save", "SaveImage", { filename_prefix: "sampler_lab_sdxl" }]],
    ],
    links: [["ckpt", 0, "k", "model"], ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["pos", 0, "k", "positive"], ["neg", 0, "k", "negative"], ["latent", 0, "k", "latent_image"],
      ["k", 0, "decode", "samples"], ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
  "SD3.5 flow model - Sampler Lab Sampler and Scheduler": {
    columns: [
      [["ckpt", "CheckpointLoaderSimple",
        { ckpt_name: "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors" }],
        ["shift", "ModelSamplingSD3", { shift: 3.0 }]],
      [["pos", "CLIPTextEncode", { text: "a red fox in fresh snow, photograph, morning light" }],
        ["neg", "CLIPTextEncode", { text: "blurry, low quality" }],
        ["latent", "EmptyLatentImage", { width: 1024, height: 1024, batch_size: 1 }]],
      // our nodes alone in their columns: they grow with the sampler or
      // schedule chosen (its options) and after a run (the plot)
      [["sched", "SamplerLabScheduler", { scheduler: "beta", steps: 28, denoise: 1.0 }]],
      [["sampler", "SamplerLabSampler", { sampler_name: "dpmpp_2m", noise_strength: -1, s_noise: 1.0 }]],
      [["noise", "RandomNoise", { noise_seed: 42, control_after_generate: "fixed" }],
        ["guider", "CFGGuider", { cfg: 4.5 }],
        ["run", "SamplerCustomAdvanced", {}]],
      [["decode", "VAEDecode", {}], ["save", "SaveImage", { filename_prefix: "sampler_lab_sd35" }]],
    ],
    links: [["ckpt", 0, "shift", "model"], ["shift", 0, "sched", "model"], ["shift", 0, "guider", "model"],
      ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"], ["pos", 0, "guider", "positive"],
      ["neg", 0, "guider", "negative"], ["noise", 0, "run", "noise"], ["guider", 0, "run", "guider"],
      ["sampler", 0, "run", "sampler"], ["sched", 0, "run", "sigmas"],
      ["latent", 0, "run", "latent_image"], ["run", 0, "decode", "samples"],
      ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
  // Restart sampling as A1111 offers it: Heun on Karras sigmas; "default"
  // picks A1111's segment by step count (here one restart of 9 steps).
  "SDXL restart sampling - Sampler Lab KSampler": {
    columns: [
      [["ckpt", "CheckpointLoaderSimple", { ckpt_name: "sd_xl_base_1.0.safetensors" }]],
      [["pos", "CLIPTextEncode", { text: "a spiral staircase in an old library, volumetric light, detailed" }],
        ["neg", "CLIPTextEncode", { text: "blurry, low quality, watermark" }],
        ["latent", "EmptyLatentImage", { width: 1024, height: 1024, batch_size: 1 }]],
      [["k", "SamplerLabKSampler", { seed: 7, control_after_generate: "fixed", steps: 24, cfg: 6.0,
        sampler_name: "heun", scheduler: "karras", denoise: 1.0, noise_strength: -1,
        s_noise: 1.0, restart: "default" }]],
      [["decode", "VAEDecode", {}], ["save", "SaveImage", { filename_prefix: "sampler_lab_restart" }]],
    ],
    links: [["ckpt", 0, "k", "model"], ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["pos", 0, "k", "positive"], ["neg", 0, "k", "negative"], ["latent", 0, "k", "latent_image"],
      ["k", 0, "decode", "samples"], ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
  // CFG++ (Chung et al. 2024): guidance of about 1 instead of 7
  "SD1.5 CFG++ sampling - Sampler Lab KSampler": {
    columns: [
      [["ckpt", "CheckpointLoaderSimple", { ckpt_name: "v1-5-pruned-emaonly.safetensors" }]],
      [["pos", "CLIPTextEncode", { text: "a bowl of ramen on a wooden table, steam, photograph" }],
        ["neg", "CLIPTextEncode", { text: "blurry, low quality" }],
        ["latent", "EmptyLatentImage", { width: 512, height: 512, batch_size: 1 }]],
      [["k", "SamplerLabKSampler", { seed: 3, control_after_generate: "fixed", steps: 20, cfg: 1.0,
        sampler_name: "euler_cfg_pp", scheduler: "normal", denoise: 1.0, noise_strength: -1,
        s_noise: 1.0 }]],
      [["decode", "VAEDecode", {}], ["save", "SaveImage", { filename_prefix: "sampler_lab_cfgpp" }]],
    ],
    links: [["ckpt", 0, "k", "model"], ["ckpt", 1, "pos", "clip"], ["ckpt", 1, "neg", "clip"],
      ["pos", 0, "k", "positive"], ["neg", 0, "k", "negative"], ["latent", 0, "k", "latent_image"],
      ["k", 0, "decode", "samples"], ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
  "SD1.5 optimized schedule - Sampler Lab Optimize Schedule": {
    columns: [
      [["ckpt", "CheckpointLoaderSimple", { ckpt_name: "v1-5-pruned-emaonly.safetensors" }]],
      [["pos", "CLIPTextEncode", { text: "a cosy reading nook by a rainy window, warm lamp light" }],
        ["neg", "CLIPTextEncode", { text: "blurry, low quality" }],
        ["calib", "EmptyLatentImage", { width: 512, height: 512, batch_size: 2 }, "Calibration batch"],
        ["latent", "EmptyLatentImage", { width: 512, height: 512, batch_size: 1 }]],
      [["opt", "SamplerLabOptimizeSchedule", { sampler_name: "dpmpp_2m", steps: 8, cfg: 7.0,
        calibration_seed: 0, budget_calls: 600 }]],
      [["select", "KSamplerSelect", { sampler_name: "dpmpp_2m" }],
        ["run", "SamplerCustom", { add_noise: true, noise_seed: 42, control_after_generate: "fixed",
          cfg: 7.0 }]],
      [["decode", "VAEDecode", {}], ["save", "SaveImage", { filename_prefix: "sampler_lab_optimized" }]],
    ],
    links: [["ckpt", 0, "opt", "model"], ["ckpt", 0, "run", "model"], ["ckpt", 1, "pos", "clip"],
      ["ckpt", 1, "neg", "clip"], ["pos", 0, "opt", "positive"], ["neg", 0, "opt", "negative"],
      ["calib", 0, "opt", "latent_image"], ["pos", 0, "run", "positive"], ["neg", 0, "run", "negative"],
      ["select", 0, "run", "sampler"], ["opt", 0, "run", "sigmas"], ["latent", 0, "run", "latent_image"],
      ["run", 0, "decode", "samples"], ["ckpt", 2, "decode", "vae"], ["decode", 0, "save", "images"]],
  },
};

const context = await chromium.launchPersistentContext(process.env.PROFILE ?? "", {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", headless: true,
  viewport: { width: 1400, height: 960 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
});
const page = context.pages()[0] ?? await context.newPage();
await page.request.post(`${URL_}/api/settings/Comfy.TutorialCompleted`, { data: true }).catch(() => null);
await page.request.post(`${URL_}/api/settings/Comfy.VueNodes.Enabled`, { data: false }).catch(() => null);
await page.request.post(`${URL_}/api/settings/Comfy.Minimap.Visible`, { data: false }).catch(() => null);
await page.goto(URL_, { waitUntil: "domcontentloaded" });
await page.waitForFunction(() => window.app?.graph
  && window.LiteGraph?.registered_node_types?.SamplerLabKSampler, null, { timeout: 90000 });
await page.keyboard.press("Escape");
const made = [];
for (const [name, spec] of Object.entries(EXAMPLES)) {
  const workflow = await page.evaluate(async ([spec, GAP]) => {
    const { app, LiteGraph } = window;
    app.graph.clear();
    const nodes = {};
    for (const column of spec.columns) {
      for (const [key, type, values, title] of column) {
        const node = LiteGraph.createNode(type);
        if (!node) throw new Error(`no node type ${type}`);
        app.graph.add(node);
        for (const [w, v] of Object.entries(values)) {
          const widget = node.widgets?.find((x) => x.name === w);
          if (!widget) throw new Error(`${type} has no widget ${w}`);
          widget.value = v;
          widget.callback?.(v);
        }
        if (title) node.title = title;
        nodes[key] = node;
      }
    }
    for (const [from, slot, to, input] of spec.links) {
      const target = nodes[to];
      const index = target.inputs.findIndex((i) => i.name === input);
      if (index < 0) throw new Error(`${target.type} has no input ${input}`);
      nodes[from].connect(slot, target, index);
    }
    // let the plots and the model hints settle, then lay out by real sizes
    await new Promise((r) => setTimeout(r, 1500));
    let x = 20;
    for (const column of spec.columns) {
      let y = 60, width = 0;
      for (const [key] of column) {
        const node = nodes[key];
        const [w, h] = node.computeSize();
        // a prompt box needs no more than a few lines here
        const prompt = node.type === "CLIPTextEncode";
        node.setSize(prompt ? [400, Math.max(h, 130)] : [Math.max(node.size[0], w), Math.max(h, node.size[1])]);
        node.pos = [x, y];
        y += node.size[1] + LiteGraph.NODE_TITLE_HEIGHT + GAP;
        width = Math.max(width, node.size[0]);
      }
      x += width + GAP;
    }
    app.graph.setDirtyCanvas(true, true);
    await new Promise((r) => setTimeout(r, 500));
    // fit the graph into a 16:9 box for the thumbnail
    const boxes = app.graph._nodes.map((n) => [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT,
      n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
    const x0 = Math.min(...boxes.map((b) => b[0])) - 20, y0 = Math.min(...boxes.map((b) => b[1])) - 20;
    const x1 = Math.max(...boxes.map((b) => b[2])) + 20, y1 = Math.max(...boxes.map((b) => b[3])) + 20;
    const [W, H, left, top] = [1280, 720, 64, 84]; // clear of the side and top bars
    const scale = Math.min(W / (x1 - x0), H / (y1 - y0));
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [left / scale - x0 + (W / scale - (x1 - x0)) / 2,
      top / scale - y0 + (H / scale - (y1 - y0)) / 2];
    app.graph.setDirtyCanvas(true, true);
    await new Promise((r) => setTimeout(r, 800));
    const rect = app.canvas.canvas.getBoundingClientRect();
    spec.clip = { x: rect.left + left, y: rect.top + top, width: W, height: H };
    const out = app.graph.serialize();
    out.extra = { ...(out.extra ?? {}), ds: { scale: 1, offset: [0, 0] } };
    return { workflow: out, clip: spec.clip };
  }, [spec, GAP]);
  writeFileSync(`${OUT}/${name}.json`, `${JSON.stringify(workflow.workflow, null, 1)}\n`);
  // the frontend asks for <name>.jpg beside the workflow
  await page.screenshot({ path: `${OUT}/${name}.jpg`, type: "jpeg", quality: 82, clip: workflow.clip });
  made.push(name);
}
await context.close();
console.log(JSON.stringify(made));
