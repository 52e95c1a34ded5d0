// A flow's page: its graph, and the definition of the node chosen in it.

import { drawGraph, paintGraph } from "./graph.js";

const root = document.getElementById("flow-page");
const doc = JSON.parse(document.getElementById("flow-document").textContent);
const svg = root.querySelector("svg[data-graph]");
const panel = root.querySelector("[data-node-definition]");
let selected = null;

function show() {
  paintGraph(svg, doc, null, selected);
  const node = doc.nodes.find((candidate) => candidate.id === selected);
  const title = panel.querySelector("h2");
  const body = panel.querySelector("pre");
  if (!node) {
    title.textContent = "Nodes";
    body.textContent = "Select a node to see its definition.";
    return;
  }
  title.textContent = node.title ? `${node.title} (${node.id})` : node.id;
  body.textContent = JSON.stringify(node, null, 2);
}

drawGraph(svg, doc, (id) => {
  selected = selected === id ? null : id;
  show();
});
show();
