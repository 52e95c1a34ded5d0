// Positions for the nodes that have none (`ui`, docs/dsl.md §2): a layered layout, left to
// right, from dagre. Nodes with a position keep it; the others take dagre's.
import dagre from "@dagrejs/dagre";

import { handlesOf } from "./document.js";

export const NODE_WIDTH = 176;

export function nodeHeight(node) {
  return Math.max(64, 40 + handlesOf(node).filter((handle) => handle.label).length * 22);
}

export function layeredPositions(graph) {
  const layered = new dagre.graphlib.Graph();
  layered.setGraph({ rankdir: "LR", nodesep: 26, ranksep: 56, marginx: 20, marginy: 20 });
  layered.setDefaultEdgeLabel(() => ({}));
  const nodes = graph.nodes || [];
  const known = new Set();
  for (const node of nodes) {
    if (typeof node?.id !== "string" || known.has(node.id)) continue;
    known.add(node.id);
    layered.setNode(node.id, { width: NODE_WIDTH, height: nodeHeight(node) });
  }
  for (const edge of graph.edges || []) {
    if (known.has(edge?.from) && known.has(edge?.to)) layered.setEdge(edge.from, edge.to);
  }
  dagre.layout(layered);
  const positions = new Map();
  for (const id of known) {
    const box = layered.node(id);
    positions.set(id, { x: Math.round(box.x - box.width / 2), y: Math.round(box.y - box.height / 2) });
  }
  return positions;
}

// Each node's position: its own `ui`, else the layered one.
export function positionsOf(graph) {
  const layered = layeredPositions(graph);
  return new Map((graph.nodes || []).map((node) => [node.id,
    isPosition(node.ui) ? { x: node.ui.x, y: node.ui.y } : layered.get(node.id) || { x: 0, y: 0 }]));
}

function isPosition(ui) {
  return ui && typeof ui.x === "number" && typeof ui.y === "number";
}
