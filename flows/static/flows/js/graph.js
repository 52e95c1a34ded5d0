// A flow drawn as plain SVG: nodes in columns by topological level (the longest path from
// `start`), edges as curves from column to column with their branch labels.
//
// drawGraph() builds the SVG once; paintGraph() only changes attributes and texts, so it is
// cheap enough to call on every animation frame of a live run.

import { edgeState, FINISHED } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";
export const NODE_W = 172;
export const NODE_H = 64;
const GAP_X = 64;
const GAP_Y = 22;
const PAD = 20;
const MIN_SCALE = 0.6;
const TEXT_WIDTH = NODE_W - 22;

const LABEL_CHARS = 14;

// The width of a branch label's pill (its text cut at LABEL_CHARS).
function labelWidth(branch) {
  return 10 + Math.min(String(branch).length, LABEL_CHARS) * 6.6;
}

// Levels and positions: {levels: Map id→level, boxes: Map id→{x, y}, width, height, gapX}.
// The gap between columns is wide enough for the longest branch label, which sits in it.
export function layout(doc) {
  const ids = doc.nodes.map((node) => node.id);
  const known = new Set(ids);
  const edges = doc.edges.filter((edge) => known.has(edge.from) && known.has(edge.to));
  const incoming = new Map(ids.map((id) => [id, []]));
  const outgoing = new Map(ids.map((id) => [id, []]));
  for (const edge of edges) {
    incoming.get(edge.to).push(edge.from);
    outgoing.get(edge.from).push(edge.to);
  }
  // Kahn's order; a level is one more than the highest level of the node's predecessors.
  const levels = new Map(ids.map((id) => [id, 0]));
  const waiting = new Map(ids.map((id) => [id, incoming.get(id).length]));
  const queue = ids.filter((id) => waiting.get(id) === 0);
  while (queue.length) {
    const id = queue.shift();
    for (const next of outgoing.get(id)) {
      levels.set(next, Math.max(levels.get(next), levels.get(id) + 1));
      waiting.set(next, waiting.get(next) - 1);
      if (waiting.get(next) === 0) queue.push(next);
    }
  }
  const columns = [];
  for (const id of ids) {
    const level = levels.get(id);
    (columns[level] = columns[level] || []).push(id);
  }
  // Order each column by the mean row of its predecessors, which uncrosses most edges.
  const row = new Map();
  columns.forEach((column, level) => {
    if (!column) return;
    if (level > 0) {
      const weight = (id) => {
        const rows = incoming.get(id).filter((from) => row.has(from)).map((from) => row.get(from));
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Infinity;
      };
      column.sort((a, b) => weight(a) - weight(b));
    }
    column.forEach((id, index) => row.set(id, index - (column.length - 1) / 2));
  });
  const labels = edges.filter((edge) => edge.branch != null).map((edge) => labelWidth(edge.branch));
  const gapX = Math.max(GAP_X, Math.max(0, ...labels) + 24);
  const tallest = Math.max(1, ...columns.map((column) => (column ? column.length : 0)));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const boxes = new Map();
  for (const id of ids) {
    boxes.set(id, {
      x: PAD + levels.get(id) * (NODE_W + gapX),
      y: height / 2 - NODE_H / 2 + row.get(id) * (NODE_H + GAP_Y),
    });
  }
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * gapX;
  return { levels, boxes, edges, width, height, gapX };
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text != null) node.textContent = text;
  return node;
}

function fit(text, chars) {
  return text.length > chars ? `${text.slice(0, chars - 1)}…` : text;
}

// Write `text` into an SVG text element, cut with "…" to `width` pixels as rendered.
function setFitted(element, text, width = TEXT_WIDTH) {
  if (element.dataset.text === text) return;
  element.dataset.text = text;
  element.textContent = text;
  let kept = text;
  while (kept.length > 1 && element.getComputedTextLength() > width) {
    kept = kept.slice(0, -1).trimEnd();
    element.textContent = `${kept}…`;
  }
}

function bezier(x1, y1, x2, y2) {
  const dx = Math.max(28, (x2 - x1) / 2);
  const at = (t) => {
    const u = 1 - t;
    return {
      x: u * u * u * x1 + 3 * u * u * t * (x1 + dx) + 3 * u * t * t * (x2 - dx) + t * t * t * x2,
      y: u * u * u * y1 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t * t * t * y2,
    };
  };
  return { d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`, at };
}

// The point where a curve crosses the middle of the first gap after its source, so that a
// label never sits on a node of a column it passes.
function labelPoint(curve, x) {
  let low = 0;
  let high = 1;
  for (let i = 0; i < 30; i += 1) {
    const mid = (low + high) / 2;
    if (curve.at(mid).x < x) low = mid;
    else high = mid;
  }
  return curve.at((low + high) / 2);
}

// Draw `doc` into `svg`; `onSelect(id)` is called when a node is clicked or chosen by key.
export function drawGraph(svg, doc, onSelect) {
  const shape = layout(doc);
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${shape.width} ${shape.height}`);
  svg.setAttribute("role", "group");
  const defs = el("defs");
  for (const kind of ["idle", "taken", "skipped"]) {
    const marker = el("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", class: `arrow arrow-${kind}` });
    marker.append(el("path", { d: "M0,0 L10,5 L0,10 z" }));
    defs.append(marker);
  }
  svg.append(defs);
  const edgeLayer = el("g", { class: "edges" });
  const labelLayer = el("g", { class: "edge-labels" });
  const nodeLayer = el("g", { class: "nodes" });
  shape.edges.forEach((edge, index) => {
    const from = shape.boxes.get(edge.from);
    const to = shape.boxes.get(edge.to);
    const curve = bezier(from.x + NODE_W, from.y + NODE_H / 2, to.x, to.y + NODE_H / 2);
    const path = el("path", { d: curve.d, class: "edge", "data-edge": index, "data-from": edge.from,
      "data-to": edge.to, "data-state": "idle", "marker-end": "url(#arrow-idle)" });
    if (edge.branch != null) path.setAttribute("data-branch", edge.branch);
    edgeLayer.append(path);
    if (edge.branch != null) {
      const point = labelPoint(curve, from.x + NODE_W + shape.gapX / 2);
      const label = el("g", { class: "edge-label", "data-edge": index,
        transform: `translate(${point.x},${point.y})` });
      const text = fit(String(edge.branch), LABEL_CHARS);
      const width = labelWidth(text);
      label.append(el("rect", { x: -width / 2, y: -9, width, height: 18, rx: 9 }),
        el("text", { "text-anchor": "middle", y: 4 }, text));
      labelLayer.append(label);
    }
  });
  for (const node of doc.nodes) {
    const box = shape.boxes.get(node.id);
    const title = node.title || node.id;
    const group = el("g", { class: "node", "data-node": node.id, "data-type": node.type,
      "data-level": shape.levels.get(node.id), "data-state": "idle",
      transform: `translate(${box.x},${box.y})`, tabindex: 0, role: "button",
      "aria-label": `${title} (${node.type})` });
    group.append(
      el("title", {}, `${title}\n${node.type} · ${node.id}`),
      el("rect", { class: "node-box", width: NODE_W, height: NODE_H, rx: 9 }),
      el("rect", { class: "node-accent", width: 5, height: NODE_H - 16, x: 0, y: 8, rx: 2 }),
      el("text", { class: "node-title", x: 14, y: 21, "data-fit": title }),
      el("text", { class: "node-kind", x: 14, y: 37,
        "data-fit": node.id === title ? node.type : `${node.type} · ${node.id}` }),
      el("text", { class: "node-status", x: 14, y: 54 }, ""),
    );
    if (onSelect) {
      group.addEventListener("click", () => onSelect(node.id));
      group.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          onSelect(node.id);
        }
      });
    }
    nodeLayer.append(group);
  }
  svg.append(edgeLayer, labelLayer, nodeLayer);
  for (const text of svg.querySelectorAll("text[data-fit]")) setFitted(text, text.dataset.fit);
  scaleToFit(svg, shape);
  new ResizeObserver(() => scaleToFit(svg, shape)).observe(svg.parentElement);
  return shape;
}

// A wide graph shrinks to its box, down to 60 % (smaller would be unreadable: it scrolls).
function scaleToFit(svg, shape) {
  const room = svg.parentElement.clientWidth - 2;
  const scale = room > 0 ? Math.max(MIN_SCALE, Math.min(1, room / shape.width)) : 1;
  svg.setAttribute("width", Math.round(shape.width * scale));
  svg.setAttribute("height", Math.round(shape.height * scale));
}

export function formatMs(ms) {
  if (ms == null || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  if (minutes < 60) return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function since(ts, now = Date.now()) {
  const start = Date.parse(ts);
  return Number.isNaN(start) ? null : Math.max(0, now - start);
}

export function itemsText(items, compact = false) {
  if (!items) return "";
  const done = items.counted ? String(items.done.size) : "…";
  const total = items.total == null ? "?" : items.total;
  const failed = items.failed.size ? `, ${items.failed.size} failed` : "";
  return compact ? `${done}/${total} items` : `${done} / ${total} items${failed}`;
}

// The status line of a node: its state, attempts, items and time.
export function statusLine(node, now = Date.now(), compact = false) {
  const parts = [node.retrying ? "retrying" : node.status];
  if (node.items && node.status !== "pending" && node.status !== "skipped") {
    parts.push(itemsText(node.items, compact));
  }
  if (node.retrying) parts.push(`attempt ${node.retrying.attempt + 1}`);
  else if (node.attempts > 1) parts.push(`${node.attempts} attempts`);
  if (node.reused) {
    parts.push("reused");
  } else if (FINISHED.has(node.status)) {
    if (node.elapsedMs != null && node.status !== "skipped") parts.push(formatMs(node.elapsedMs));
  } else if ((node.status === "running" || node.status === "waiting") && node.startedAt) {
    parts.push(formatMs(since(node.startedAt, now)));
  }
  return parts.join(" · ");
}

// Bring the drawing up to date with `state` (omit it for a flow's static graph).
export function paintGraph(svg, doc, state, selected, now = Date.now()) {
  const byId = new Map(doc.nodes.map((node) => [node.id, node]));
  for (const group of svg.querySelectorAll("g.node")) {
    const id = group.dataset.node;
    group.classList.toggle("selected", id === selected);
    if (!state) continue;
    const node = state.nodes.get(id);
    if (group.dataset.state !== node.status) group.dataset.state = node.status;
    // Taken over from the run this one retries: drawn apart from what executed here.
    group.classList.toggle("reused", Boolean(node.reused));
    group.dataset.attempts = node.attempts;
    if (node.items) {
      group.dataset.itemsDone = node.items.done.size;
      group.dataset.itemsTotal = node.items.total == null ? "" : node.items.total;
    }
    setFitted(group.querySelector(".node-status"), statusLine(node, now, true));
  }
  if (!state) return;
  for (const path of svg.querySelectorAll("path.edge")) {
    const edge = { from: path.dataset.from, to: path.dataset.to, branch: path.dataset.branch };
    const kind = edgeState(state, edge, byId.get(edge.from));
    if (path.dataset.state !== kind) {
      path.dataset.state = kind;
      path.setAttribute("marker-end", `url(#arrow-${kind})`);
      const label = svg.querySelector(`g.edge-label[data-edge="${path.dataset.edge}"]`);
      if (label) label.dataset.state = kind;
    }
  }
}
