// The live run page: wires the state machine (state.js), the drawing (graph.js, render.js)
// and the websocket (socket.js).
//
// The page starts from the server's snapshot so its first paint is right. The socket then
// replays the run's events from the beginning (the snapshot holds no streamed text and no
// iteration counts) into a fresh state, which replaces the snapshot on screen as soon as it
// has caught up with it (seq ≥ the snapshot's last_seq); from then on every event shows live.

import { drawGraph, paintGraph } from "./graph.js";
import { Renderer } from "./render.js";
import { RunSocket } from "./socket.js";
import { EVENT, applyEvent, createState, fromSnapshot, isFinished } from "./state.js";

const root = document.getElementById("run-page");
const doc = JSON.parse(document.getElementById("run-document").textContent);
const snapshot = JSON.parse(document.getElementById("run-state").textContent);

const live = createState(doc);
let shown = snapshot.last_seq > 0 ? fromSnapshot(doc, snapshot) : live;
const ui = { selected: null, connection: "connecting", connectionText: "connecting…",
  answering: new Set() };

const svg = root.querySelector("svg[data-graph]");
const renderer = new Renderer(root, doc, { answer });
drawGraph(svg, doc, (id) => {
  ui.selected = ui.selected === id ? null : id;
  schedule();
});

let frame = 0;
function schedule() {
  if (!frame) frame = requestAnimationFrame(draw);
}
function draw() {
  frame = 0;
  const now = Date.now();
  paintGraph(svg, doc, shown, ui.selected, now);
  renderer.render(shown, ui, now);
}

const CONNECTION_TEXT = {
  connecting: () => "connecting…",
  reconnecting: () => "reconnecting…",
  live: () => "live",
  waiting: (ms) => `connection lost; retrying in ${Math.ceil(ms / 1000)} s`,
  closed: (code) => (code === 1000 ? "finished" : code === 4401 ? "signed out" : "closed"),
};

const socket = new RunSocket(root.dataset.socket, () => live.seq, {
  onEvent(event) {
    if (!applyEvent(live, event)) return;
    if (shown !== live && live.seq >= snapshot.last_seq) shown = live;
    if (event.type === EVENT.RUN_RESUMED) ui.answering.delete(event.data.node);
    schedule();
  },
  onRefusal(error) {
    ui.answering.clear(); // an answer may have been refused: let the person try again
    renderer.message(`Refused: ${error.message || error.code || "the server said no"}`);
    resetCancel();
    schedule();
  },
  onConnection(kind, detail) {
    ui.connection = kind;
    ui.connectionText = CONNECTION_TEXT[kind](detail);
    if (kind === "closed" && detail === 4401) {
      renderer.message("You are signed out: sign in again and reload the page to follow the run.");
    } else if (kind === "closed" && detail === 4404) {
      renderer.message("The server does not know this run (or it is not yours).");
    }
    schedule();
  },
});
socket.connect();

// --- Actions: over the socket, or through the REST API when the socket is down ---------------

function csrfToken() {
  const field = root.querySelector("input[name=csrfmiddlewaretoken]");
  return field ? field.value : "";
}

async function post(url, body) {
  try {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body),
    });
    if (response.ok) return;
    const answer = await response.json().catch(() => ({}));
    const error = answer.error || { message: `HTTP ${response.status}` };
    ui.answering.clear();
    renderer.message(`Refused: ${error.message || error.code}`);
    resetCancel();
  } catch (failure) {
    ui.answering.clear();
    renderer.message(`The server cannot be reached (${failure.message}); try again.`);
    resetCancel();
  }
  schedule();
}

function answer(node, text, option) {
  ui.answering.add(node);
  const message = { type: "answer", node, answer: text, option };
  if (!socket.send(message)) post(root.dataset.answerUrl, { node, answer: text, option });
  schedule();
}

const cancelButton = root.querySelector("[data-cancel]");
let confirmTimer = 0;
function resetCancel() {
  if (isFinished(shown)) return;
  cancelButton.disabled = false;
  cancelButton.textContent = "Cancel run";
  cancelButton.classList.remove("confirm");
}

function cancel() {
  if (!cancelButton.classList.contains("confirm")) {
    // A second click within a few seconds confirms: a run cannot be un-cancelled.
    cancelButton.classList.add("confirm");
    cancelButton.textContent = "Click again to cancel";
    clearTimeout(confirmTimer);
    confirmTimer = setTimeout(resetCancel, 4000);
    return;
  }
  clearTimeout(confirmTimer);
  cancelButton.disabled = true;
  cancelButton.textContent = "Cancelling…";
  if (!socket.send({ type: "cancel" })) post(root.dataset.cancelUrl, {});
}
cancelButton.addEventListener("click", cancel);

// Running nodes show their elapsed time: redraw once a second while the run goes on.
setInterval(() => {
  if (!isFinished(shown)) schedule();
}, 1000);
schedule();
