// The flow document (docs/dsl.md) and the edits the editor makes to it. Pure functions: each
// takes a document and returns a new one, never changing its argument, so that undo keeps
// the earlier documents as they were.
//
// A "graph path" names the graph being edited: [] is the flow itself, ["loop"] the body of
// the iteration node `loop`, ["loop", "inner"] a body inside that body.

// The palette's order: how a flow is read, from its ends to its inner workings. Types the
// schema names and this list does not come last.
const PALETTE_ORDER = ["start", "end", "template", "if_else", "aggregate", "code", "http", "llm",
  "iteration", "question", "subflow", "wait"];

// What the schema (GET /api/dsl/schema/) says of each node type: its one-line summary and the
// outputs every node of it has (null: each node declares its own, as `code` does).
export function nodeTypes(schema) {
  const types = new Map(schema.$defs.node.allOf.map((check) => [check.if.properties.type.const,
    { summary: check.then.description || "", outputs: check.then["x-outputs"] ?? null }]));
  const order = [...PALETTE_ORDER.filter((type) => types.has(type)),
    ...[...types.keys()].filter((type) => !PALETTE_ORDER.includes(type))];
  return new Map(order.map((type) => [type, types.get(type)]));
}

export const SYS_REFERENCES = ["sys.run_id", "sys.flow", "sys.flow_version", "sys.started_at"];
const ID_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;
const RESERVED_IDS = ["sys", "item", "index"];

// --- reading -------------------------------------------------------------------------------

export function graphAt(doc, path) {
  let graph = doc;
  for (const id of path) {
    const node = (graph.nodes || []).find((each) => each.id === id);
    graph = node?.params?.body;
    if (!graph) return null;
  }
  return graph;
}

// The JSON Pointer of the graph at `path` ("" for the flow itself).
export function graphPointer(doc, path) {
  let graph = doc;
  let pointer = "";
  for (const id of path) {
    const index = graph.nodes.findIndex((each) => each.id === id);
    pointer += `/nodes/${index}/params/body`;
    graph = graph.nodes[index].params.body;
  }
  return pointer;
}

export function escapePointer(key) {
  return String(key).replaceAll("~", "~0").replaceAll("/", "~1");
}

// Where a problem's pointer lands: the graph path, and the node (id) and edge (index) of
// that graph it names, for each level from the flow down. The deepest level is last.
export function locate(doc, pointer) {
  const levels = [];
  let graph = doc;
  const path = [];
  const rest = pointer.split("/").slice(1);
  let i = 0;
  while (graph && i < rest.length) {
    const [kind, index] = [rest[i], Number(rest[i + 1])];
    if (kind === "edges" && Number.isInteger(index)) {
      levels.push({ path: [...path], edge: index });
      break;
    }
    if (kind !== "nodes" || !Number.isInteger(index)) break;
    const node = Array.isArray(graph.nodes) ? graph.nodes[index] : undefined;
    if (!node || typeof node.id !== "string") break;
    levels.push({ path: [...path], node: node.id });
    if (rest[i + 2] === "params" && rest[i + 3] === "body") {
      path.push(node.id);
      graph = node.params?.body;
      i += 4;
    } else {
      break;
    }
  }
  return levels;
}

// The handles a node's outgoing edges may name: [{id, label}]. A plain output is "out" (an
// edge without `branch`).
export function handlesOf(node) {
  if (node.type === "end") return [];
  const params = node.params || {};
  let handles;
  if (node.type === "if_else") {
    handles = (params.cases || []).map((each) => each?.id).filter(Boolean);
    handles.push("else");
  } else if (node.type === "question" && (params.options?.length || "timeout_s" in params)) {
    handles = (params.options || []).map((each) => each?.id).filter(Boolean);
    if ("timeout_s" in params) handles.push("timeout");
  } else {
    handles = ["out"];
  }
  if (node.on_error === "branch") handles.push("error");
  return handles.map((id) => ({ id, label: id === "out" ? "" : id }));
}

// A node's outputs (docs/dsl.md §2, §5): a start node's are the run's inputs it declares;
// `types` (nodeTypes) gives the others, or says the node declares its own.
export function outputsOf(node, types) {
  const fixed = types.get(node.type)?.outputs;
  let names;
  if (node.type === "start") names = Object.keys(node.params?.inputs || {});
  else if (fixed === null) names = Object.keys(node.outputs || {});
  else names = fixed || [];
  return node.on_error === "branch" ? [...names, "error"] : names;
}

function ancestorIds(graph, id) {
  const parents = new Map();
  for (const edge of graph.edges || []) {
    if (!parents.has(edge.to)) parents.set(edge.to, []);
    parents.get(edge.to).push(edge.from);
  }
  const seen = new Set();
  const queue = [...(parents.get(id) || [])];
  while (queue.length) {
    const next = queue.shift();
    if (seen.has(next) || next === id) continue;
    seen.add(next);
    queue.push(...(parents.get(next) || []));
  }
  return seen;
}

// The references a node may use (docs/dsl.md §3): its ancestors' outputs (inside a body,
// the body's own first, then the iteration node's ancestors outside), `item` and `index`
// inside a body, and `sys.*`.
export function referencesFor(doc, path, nodeId, types) {
  const found = [];
  let graph = graphAt(doc, path);
  let id = nodeId;
  for (let depth = path.length; graph; depth -= 1) {
    const ancestors = ancestorIds(graph, id);
    for (const node of graph.nodes || []) {
      if (!ancestors.has(node.id)) continue;
      for (const output of outputsOf(node, types)) found.push(`${node.id}.${output}`);
    }
    if (depth === 0) break;
    if (depth === path.length) found.push("item", "index");
    id = path[depth - 1];
    graph = graphAt(doc, path.slice(0, depth - 1));
  }
  return [...found, ...SYS_REFERENCES];
}

// Where `{{secrets.NAME}}` is allowed: the params of http nodes and llm.params.api_key.
export function allowsSecrets(node, fieldPath) {
  if (fieldPath[0] !== "params") return false;
  if (node.type === "http") return true;
  return node.type === "llm" && fieldPath[1] === "api_key";
}

// What a plain text field may offer to pick from (`choices` comes with the page): the
// person's other flows for a subflow's `flow`, the server's providers for an llm's.
export function choicesFor(node, fieldPath, choices) {
  if (fieldPath.length !== 2 || fieldPath[0] !== "params" || !choices) return [];
  if (node.type === "subflow" && fieldPath[1] === "flow") return choices.flows || [];
  if (node.type === "llm" && fieldPath[1] === "provider") return choices.providers || [];
  return [];
}

// --- editing -------------------------------------------------------------------------------

// A copy of `doc` whose graph at `path` is `change(graph)`.
export function withGraph(doc, path, change) {
  if (path.length === 0) return change(doc);
  const [first, ...rest] = path;
  return {
    ...doc,
    nodes: doc.nodes.map((node) => node.id !== first ? node : {
      ...node,
      params: { ...node.params, body: withGraph(node.params.body, rest, change) },
    }),
  };
}

// The node at `index` of the graph at `path`, changed: by place, not id, so that of two nodes
// sharing an id (a document pasted in the JSON view) only the one edited changes.
export function withNodeAt(doc, path, index, change) {
  return withGraph(doc, path, (graph) => ({
    ...graph, nodes: graph.nodes.map((node, at) => (at === index ? change(node) : node)),
  }));
}

export function freeId(graph, base) {
  const taken = new Set([...(graph.nodes || []).map((node) => node.id), ...RESERVED_IDS]);
  if (!taken.has(base)) return base;
  for (let n = 2; ; n += 1) {
    if (!taken.has(`${base}_${n}`)) return `${base}_${n}`;
  }
}

// A new node of `type` with the params a person fills in next.
export function newNode(graph, type, position, inBody) {
  const id = freeId(graph, type === "if_else" ? "branch" : type);
  const node = { id, type };
  const params = {
    start: inBody ? undefined : { inputs: {} },
    template: { template: "" },
    if_else: { cases: [{ id: "case_1", conditions: [] }] },
    aggregate: { sources: [] },
    code: { code: "def main():\n    return {}\n" },
    http: { url: "" },
    llm: { provider: "echo", model: "echo-1", prompt: "" },
    iteration: {
      items: "",
      body: {
        nodes: [{ id: "item_start", type: "start", ui: { x: 0, y: 0 } },
          { id: "item_end", type: "end", inputs: {}, ui: { x: 320, y: 0 } }],
        edges: [{ from: "item_start", to: "item_end" }],
      },
    },
    question: { question: "" },
    subflow: { flow: "" },
    wait: { seconds: 1 },
  }[type];
  if (params) node.params = params;
  if (type === "code") node.outputs = {};
  if (type === "end") node.inputs = {};
  node.ui = { x: Math.round(position.x), y: Math.round(position.y) };
  return node;
}

export function addNode(doc, path, node) {
  return withGraph(doc, path, (graph) => ({ ...graph, nodes: [...graph.nodes, node] }));
}

export function removeItems(doc, path, nodeIds, edgeIndexes) {
  const gone = new Set(nodeIds);
  const cut = new Set(edgeIndexes);
  return withGraph(doc, path, (graph) => ({
    ...graph,
    nodes: graph.nodes.filter((node) => !gone.has(node.id)),
    edges: graph.edges.filter((edge, index) => !cut.has(index) && !gone.has(edge.from)
      && !gone.has(edge.to)),
  }));
}

export function edgeFor(from, handle, to) {
  return handle && handle !== "out" ? { from, to, branch: handle } : { from, to };
}

export function sameEdge(a, b) {
  return a.from === b.from && a.to === b.to && (a.branch || null) === (b.branch || null);
}

// Adds the edge unless the graph has it already (then the document is returned unchanged).
export function connect(doc, path, edge) {
  const graph = graphAt(doc, path);
  if (edge.from === edge.to || graph.edges.some((each) => sameEdge(each, edge))) return doc;
  return withGraph(doc, path, (g) => ({ ...g, edges: [...g.edges, edge] }));
}

// Writes the nodes' `ui`; the same document when none of them moves (the last event of a
// drag repeats its last position, and must not make an undo step of its own).
export function moveNodes(doc, path, positions) {
  const graph = graphAt(doc, path);
  const moves = graph.nodes.some((node) => positions.has(node.id)
    && (node.ui?.x !== positions.get(node.id).x || node.ui?.y !== positions.get(node.id).y));
  if (!moves) return doc;
  return withGraph(doc, path, (graph) => ({
    ...graph,
    nodes: graph.nodes.map((node) => positions.has(node.id)
      ? { ...node, ui: positions.get(node.id) } : node),
  }));
}

function referencePattern(id) {
  return new RegExp(`(\\{\\{\\s*)${id}(?=[\\s.\\[}])`, "g");
}

function renameReferences(value, pattern, to) {
  if (typeof value === "string") return value.replace(pattern, `$1${to}`);
  if (Array.isArray(value)) return value.map((each) => renameReferences(each, pattern, to));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value)
      .map(([key, each]) => [key, renameReferences(each, pattern, to)]));
  }
  return value;
}

// A node's references to `from`, renamed: its inputs and params, and the nodes of its body,
// unless the body has a node `from` of its own, which its references mean (dsl.md §5.9).
function renameIn(node, from, pattern, to) {
  if (!node || typeof node !== "object") return node;
  const { body, ...params } = node.params && typeof node.params === "object" ? node.params : {};
  const renamed = { ...node };
  if (node.inputs !== undefined) renamed.inputs = renameReferences(node.inputs, pattern, to);
  if (node.params !== undefined) {
    renamed.params = typeof node.params === "object" && node.params
      ? renameReferences(params, pattern, to) : node.params;
    if (body !== undefined) {
      const shadowed = Array.isArray(body?.nodes) && body.nodes.some((each) => each?.id === from);
      renamed.params.body = shadowed || !Array.isArray(body?.nodes) ? body
        : { ...body, nodes: body.nodes.map((each) => renameIn(each, from, pattern, to)) };
    }
  }
  return renamed;
}

// Renames the node at `index` of the graph at `path`. When it is the only node of that id,
// its edges follow, and so do the references to it in the nodes of that graph (bodies
// included). An id that is taken, reserved or breaks the id rule is refused (null), so an
// edit never loses an edge.
export function renameNode(doc, path, index, to) {
  const graph = graphAt(doc, path);
  const from = graph.nodes[index]?.id;
  if (!ID_PATTERN.test(to) || RESERVED_IDS.includes(to)
    || graph.nodes.some((node) => node.id === to)) return null;
  const alone = graph.nodes.filter((node) => node.id === from).length === 1;
  const pattern = referencePattern(from);
  return withGraph(doc, path, (g) => ({
    ...g,
    nodes: g.nodes.map((node, at) => {
      const renamed = at === index ? { ...node, id: to } : node;
      return alone ? renameIn(renamed, from, pattern, to) : renamed;
    }),
    edges: alone ? g.edges.map((edge) => ({
      ...edge, from: edge.from === from ? to : edge.from, to: edge.to === from ? to : edge.to,
    })) : g.edges,
  }));
}

// Sets (or, with `undefined`, removes) the value at `fieldPath` inside a node.
export function setIn(value, fieldPath, next) {
  if (fieldPath.length === 0) return next;
  const [key, ...rest] = fieldPath;
  const container = Array.isArray(value) ? [...value] : { ...(value || {}) };
  const inner = setIn(container[key], rest, next);
  if (inner === undefined && !Array.isArray(container)) delete container[key];
  else container[key] = inner;
  return container;
}

export function getIn(value, fieldPath) {
  return fieldPath.reduce((each, key) => (each == null ? undefined : each[key]), value);
}

export function startingDocument(name) {
  return {
    dsl: "astron/v1",
    name,
    nodes: [
      { id: "start", type: "start", params: { inputs: {} }, ui: { x: 0, y: 0 } },
      { id: "end", type: "end", inputs: {}, ui: { x: 360, y: 0 } },
    ],
    edges: [{ from: "start", to: "end" }],
  };
}

// When an edit renames one of a branch node's handles (a case or option id typed anew), its
// edges follow; any other change of handles leaves the edges alone.
export function followHandleRename(doc, path, before, after) {
  // Ids as typed, empty ones too: a field being retyped passes through "".
  const ids = (node) => ((node.type === "if_else" ? node.params?.cases
    : node.type === "question" ? node.params?.options : null) || []).map((each) => String(each?.id ?? ""));
  const old = ids(before);
  const now = ids(after);
  if (old.length !== now.length) return doc;
  const changed = old.map((id, index) => [id, now[index]]).filter(([a, b]) => a !== b);
  if (changed.length !== 1) return doc;
  const [[from, to]] = changed;
  // Another case already has the old or the new id: whose edges these are is unclear.
  if (old.filter((id) => id === from).length > 1 || now.filter((id) => id === to).length > 1) return doc;
  return withGraph(doc, path, (graph) => ({
    ...graph,
    edges: graph.edges.map((edge) => (edge.from === after.id && edge.branch === from
      ? { ...edge, branch: to } : edge)),
  }));
}
