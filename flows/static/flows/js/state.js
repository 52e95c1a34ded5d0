// The run's state on the page: built from the server's snapshot (the shape of
// GET /api/runs/{id}/ plus `last_seq`) or rebuilt from the run's events (docs/dsl.md §6).
//
// `applyEvent` is the state machine; it ignores an event whose seq it has already seen, so
// a replay after a reconnection never counts anything twice.
//
// Iterations: "done / total" items. done = the distinct items (event `item`) of the
// iteration's body (events with `scope` = the iteration node's id) whose body `end` node
// finished, plus those in which a body node failed (the item failed; `on_item_error`
// decides what the iteration makes of it). total = the length of the resolved `items`
// array: a literal array, or a whole reference (`{{start.words}}`, `{{fetch.body.rows}}`)
// resolved from the run's inputs and the outputs seen so far; when neither works it stays
// unknown ("?") until the iteration finishes, and is then the number of items seen.

// The event types, named as engine/events.py names them (a test keeps the two in step).
export const EVENT = Object.freeze({
  RUN_STARTED: "run.started",
  RUN_WAITING: "run.waiting",
  RUN_RESUMED: "run.resumed",
  RUN_FINISHED: "run.finished",
  NODE_STARTED: "node.started",
  NODE_RETRYING: "node.retrying",
  NODE_CHUNK: "node.chunk",
  NODE_FINISHED: "node.finished",
  NODE_SKIPPED: "node.skipped",
});

export const STATES = ["pending", "running", "waiting", "succeeded", "recovered", "failed",
  "skipped", "cancelled"];
export const FINISHED = new Set(["succeeded", "recovered", "failed", "skipped", "cancelled"]);
const RUN_FINISHED = new Set(["succeeded", "failed", "cancelled"]);

function nodeState(node) {
  return {
    id: node.id, type: node.type, title: node.title || "", status: "pending", attempts: 0,
    inputs: null, outputs: null, error: null, elapsedMs: null, startedAt: null,
    finishedAt: null, retrying: null, text: "",
    // `counted`: false while the items done are unknown (a snapshot holds no body events).
    items: node.type === "iteration"
      ? { done: new Set(), failed: new Set(), total: null, counted: true } : null,
  };
}

export function createState(doc) {
  const nodes = new Map();
  for (const node of doc.nodes) nodes.set(node.id, nodeState(node));
  const startNode = doc.nodes.find((node) => node.type === "start");
  const iterations = new Map();
  for (const node of doc.nodes) {
    if (node.type !== "iteration") continue;
    const body = (node.params && node.params.body) || { nodes: [] };
    const end = body.nodes.find((inner) => inner.type === "end");
    iterations.set(node.id, { items: node.params.items, end: end ? end.id : null });
  }
  return {
    doc, nodes, iterations, startId: startNode ? startNode.id : "start",
    seq: 0, status: "queued", inputs: null, outputs: null, answer: null, error: null,
    elapsedMs: null, startedAt: null, finishedAt: null, recovered: 0, waiting: [],
    streams: [], // ids of the nodes that streamed text, in the order they started to
  };
}

// The state the server rendered the page with: right for the first paint, before any event.
export function fromSnapshot(doc, snapshot) {
  const state = createState(doc);
  Object.assign(state, {
    seq: snapshot.last_seq || 0, status: snapshot.status, inputs: snapshot.inputs,
    outputs: snapshot.outputs, answer: snapshot.answer, error: snapshot.error,
    elapsedMs: snapshot.finished_at ? snapshot.elapsed_ms : null,
    startedAt: snapshot.started_at, finishedAt: snapshot.finished_at,
    recovered: snapshot.recovered || 0, waiting: [...(snapshot.waiting || [])],
  });
  for (const row of snapshot.nodes || []) {
    const node = state.nodes.get(row.node);
    if (!node) continue;
    Object.assign(node, {
      status: row.status, attempts: row.attempts, inputs: row.inputs, outputs: row.outputs,
      error: row.error, elapsedMs: row.elapsed_ms, startedAt: row.started_at,
      finishedAt: row.finished_at, reused: Boolean(row.reused),
    });
    if (node.items) {
      node.items.counted = false;
      settleIterationTotal(state, node);
    }
  }
  for (const question of state.waiting) {
    const node = state.nodes.get(question.node);
    if (node && !FINISHED.has(node.status)) node.status = "waiting";
  }
  return state;
}

// Apply one event envelope; false when it was already applied (its seq is not new).
export function applyEvent(state, event) {
  if (typeof event.seq !== "number" || event.seq <= state.seq) return false;
  state.seq = event.seq;
  const data = event.data || {};
  if (event.scope != null) {
    applyBodyEvent(state, event);
    return true;
  }
  const node = data.node != null ? state.nodes.get(data.node) : null;
  switch (event.type) {
    case EVENT.RUN_STARTED:
      state.status = "running";
      state.inputs = data.inputs;
      state.startedAt = event.ts;
      break;
    case EVENT.NODE_STARTED:
      if (!node) break;
      node.status = "running";
      node.attempts = data.attempt;
      node.inputs = data.inputs;
      node.retrying = null;
      node.text = ""; // a new attempt streams its text anew
      if (data.attempt === 1 || !node.startedAt) node.startedAt = event.ts;
      if (node.items) settleIterationTotal(state, node);
      break;
    case EVENT.NODE_RETRYING:
      if (!node) break;
      node.status = "running";
      node.retrying = { attempt: data.attempt, delayMs: data.delay_ms, error: data.error,
        at: event.ts };
      break;
    case EVENT.NODE_CHUNK:
      if (!node) break;
      if (!node.text && !state.streams.includes(node.id)) state.streams.push(node.id);
      node.text += data.text;
      break;
    case EVENT.NODE_FINISHED:
      if (!node) break;
      Object.assign(node, {
        status: data.status, outputs: data.outputs, error: data.error,
        elapsedMs: data.elapsed_ms, attempts: data.attempts, finishedAt: event.ts,
        retrying: null, reused: Boolean(data.reused),
      });
      if (node.items) settleIterationTotal(state, node);
      break;
    case EVENT.NODE_SKIPPED:
      if (!node) break;
      node.status = "skipped";
      node.attempts = 0;
      break;
    case EVENT.RUN_WAITING:
      state.waiting = state.waiting.filter((question) => question.node !== data.node);
      state.waiting.push({ node: data.node, question: data.question, options: data.options,
        timeout_at: data.timeout_at });
      if (node) node.status = "waiting";
      break;
    case EVENT.RUN_RESUMED:
      state.waiting = state.waiting.filter((question) => question.node !== data.node);
      if (node && node.status === "waiting") node.status = "running";
      break;
    case EVENT.RUN_FINISHED:
      Object.assign(state, {
        status: data.status, outputs: data.outputs, answer: data.answer, error: data.error,
        elapsedMs: data.elapsed_ms, recovered: data.recovered || 0, finishedAt: event.ts,
        waiting: [],
      });
      break;
    default:
      break;
  }
  return true;
}

// An event of an iteration body: it only moves its iteration's count of items.
function applyBodyEvent(state, event) {
  const iteration = state.iterations.get(event.scope);
  const node = state.nodes.get(event.scope);
  if (!iteration || !node || !node.items || event.type !== EVENT.NODE_FINISHED) return;
  if (event.data.node === iteration.end) node.items.done.add(event.item);
  else if (event.data.status === "failed") {
    node.items.done.add(event.item);
    node.items.failed.add(event.item);
  }
}

function settleIterationTotal(state, node) {
  const items = node.items;
  if (items.total == null) items.total = resolveLength(state, state.iterations.get(node.id).items);
  if (items.total == null && FINISHED.has(node.status) && node.status !== "skipped") {
    const results = node.outputs && node.outputs.results;
    items.total = Math.max(items.done.size, Array.isArray(results) ? results.length : 0);
  }
}

const WHOLE_REFERENCE = /^\{\{\s*([a-z][a-z0-9_]*)((?:\.[^.[\]\s{}]+|\[\d+\])*)\s*\}\}$/;
const STEP = /\.([^.[\]]+)|\[(\d+)\]/g;

// The length of an iteration's `items` when it can be known on the page, else null.
export function resolveLength(state, expression) {
  if (Array.isArray(expression)) return expression.length;
  if (typeof expression !== "string") return null;
  const match = WHOLE_REFERENCE.exec(expression);
  if (!match) return null;
  let value;
  if (match[1] === state.startId) value = state.inputs;
  else {
    const source = state.nodes.get(match[1]);
    value = source && FINISHED.has(source.status) ? source.outputs : undefined;
  }
  for (const step of match[2].matchAll(STEP)) {
    if (value == null || typeof value !== "object") return null;
    value = step[1] !== undefined ? value[step[1]] : value[Number(step[2])];
  }
  return Array.isArray(value) ? value.length : null;
}

// --- What the page shows, derived -----------------------------------------------------------

export function isFinished(state) {
  return RUN_FINISHED.has(state.status);
}

// The run's status as shown: "waiting" while a question is open and nothing else executes.
export function runStatus(state) {
  if (state.status !== "running" || state.waiting.length === 0) return state.status;
  for (const node of state.nodes.values()) if (node.status === "running") return "running";
  return "waiting";
}

// Finished top-level nodes (succeeded, recovered, failed, cancelled) of those the run can
// still reach: a skipped node is neither, so a run whose branch skipped half the graph ends
// at 100 %, not at the share it happened to take.
export function progress(state) {
  let done = 0;
  let skipped = 0;
  for (const node of state.nodes.values()) {
    if (node.status === "skipped") skipped += 1;
    else if (FINISHED.has(node.status)) done += 1;
  }
  return { done, total: state.nodes.size - skipped };
}

// An edge's state once its source finished (docs/dsl.md §4): "taken", "skipped", or "idle".
export function edgeState(state, edge, sourceDoc) {
  const source = state.nodes.get(edge.from);
  if (!source) return "idle";
  if (source.status === "skipped") return "skipped";
  if (source.status !== "succeeded" && source.status !== "recovered") return "idle";
  const outputs = source.outputs || {};
  let taken;
  if (source.status === "recovered" && sourceDoc.on_error === "branch") {
    taken = edge.branch === "error";
  } else if (source.type === "if_else") {
    taken = edge.branch === outputs.branch;
  } else if (source.type === "question" && edge.branch != null && edge.branch !== "error") {
    taken = edge.branch === outputs.option;
  } else {
    taken = edge.branch !== "error";
  }
  return taken ? "taken" : "skipped";
}
