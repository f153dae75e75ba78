// Sampler Lab Tune Sampler: keeps the fitted table in the workflow.
//
// After a run the node reports the JSON of its fit (ui
// "sampler_lab_tuned_table"); this file writes it into the node's
// `tuned_table` widget, which is saved with the workflow and sent with every
// queued prompt. The node uses that table instead of a new fit while its
// inputs match the key inside it (nodes/tune.py), so a shared workflow
// reproduces on a machine without the cache. The widget is an ordinary
// STRING widget kept out of sight (its value still serializes); without this
// file it simply shows, and pasting a table into it works the same.
import { app } from "../../scripts/app.js";

const NODE = "SamplerLabTuneSampler";
const WIDGET = "tuned_table";
const HIDDEN_TYPE = "sampler_lab_hidden"; // the old frontend's way to hide a widget

function tableWidget(node) {
  return node?.widgets?.find((w) => w && w.name === WIDGET);
}

function hide(node, w) {
  if (!w || w.__labTableHidden) return;
  w.__labTableHidden = true;
  w.computeSize = () => [0, -4]; // -4: the gap the canvas adds after each widget
  if (typeof node.isWidgetVisible === "function") w.hidden = true;
  else if (!String(w.type).startsWith("converted-widget")) w.type = HIDDEN_TYPE;
  // Vue nodes ("Nodes 2.0") leave out widgets whose options say hidden
  w.options = { ...(w.options ?? {}), hidden: true };
  if (typeof node.computeSize === "function" && node.size) {
    const [, h] = node.computeSize();
    node.size[1] = h;
  }
}

app.registerExtension({
  name: "SamplerLab.TuneTable",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE || !nodeType?.prototype) return;
    const before = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (output) {
      const r = before?.apply(this, arguments);
      try {
        const text = output?.sampler_lab_tuned_table?.[0];
        const w = tableWidget(this);
        if (w && typeof text === "string" && w.value !== text) {
          w.value = text;
          w.callback?.(text);
          this.setDirtyCanvas?.(true, true);
          app.graph?.setDirtyCanvas?.(true, true);
        }
      } catch { /* never break the node */ }
      return r;
    };
  },
  nodeCreated(node) {
    if ((node?.comfyClass ?? node?.type) !== NODE) return;
    try { hide(node, tableWidget(node)); } catch { /* then it shows */ }
  },
});
