// Everything on the run page except the graph: the header (status, elapsed time, progress,
// connection), the selected node's panel, the open questions, the streamed text, the run's
// result and messages. Data is always written as text (never as HTML).

import { formatMs, itemsText, since, statusLine } from "./graph.js";
import { FINISHED, isFinished, progress, runStatus } from "./state.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

function section(title, ...content) {
  return h("section", { class: "panel-section" }, h("h3", {}, title), ...content);
}

// An error object (docs/dsl.md §7); texts in its details (a traceback) are shown as text.
export function errorBox(error) {
  if (!error) return null;
  const where = error.node ? ` (node ${error.node}${error.attempt ? `, attempt ${error.attempt}` : ""})` : "";
  const details = error.details;
  let shown = null;
  if (typeof details === "string") shown = h("pre", { class: "details" }, details);
  else if (details && !Array.isArray(details) && typeof details === "object") {
    shown = Object.entries(details).map(([key, value]) => [h("div", { class: "details-key" }, key),
      h("pre", { class: "details" }, typeof value === "string" ? value : JSON.stringify(value, null, 2))]);
  } else if (Array.isArray(details) && details.length) {
    shown = h("pre", { class: "details" }, JSON.stringify(details, null, 2));
  }
  return h("div", { class: "error-box", "data-error-code": error.code },
    h("strong", {}, error.code || "error"), `: ${error.message || ""}${where}`, shown);
}

// A value as the page shows outputs: strings as they are, anything else as JSON.
function valueView(value) {
  if (typeof value === "string") return h("div", { class: "text-value" }, value);
  if (value !== null && typeof value === "object") return json(value);
  return h("code", {}, JSON.stringify(value));
}

function outputsList(outputs) {
  if (!outputs || typeof outputs !== "object" || Array.isArray(outputs)) return json(outputs);
  const list = h("dl", { class: "outputs", "data-outputs": "" });
  for (const [name, value] of Object.entries(outputs)) {
    list.append(h("dt", {}, name), h("dd", { "data-output": name }, valueView(value)));
  }
  return list;
}

export class Renderer {
  constructor(root, doc, actions) {
    this.root = root;
    this.doc = doc;
    this.docNodes = new Map(doc.nodes.map((node) => [node.id, node]));
    this.actions = actions; // {answer(node, text, option)}
    this.find = (name) => root.querySelector(`[data-${name}]`);
    this.keys = {};
    this.questionForms = new Map();
  }

  changed(name, key) {
    if (this.keys[name] === key) return false;
    this.keys[name] = key;
    return true;
  }

  render(state, ui, now = Date.now()) {
    // The parts are keyed by seq; the replayed state that replaces the snapshot may have the
    // snapshot's very seq (a page opened once the run paused), yet holds what the snapshot
    // lacks (streamed text): a new state draws every part again.
    if (state !== this.drawn) {
      this.keys = {};
      this.drawn = state;
    }
    const tick = Math.floor(now / 1000);
    const running = !isFinished(state);
    this.header(state, ui, now);
    if (this.changed("panel", `${state.seq}|${ui.selected}|${running ? tick : ""}`)) {
      this.panel(state, ui.selected, now);
    }
    this.questions(state, ui);
    if (this.changed("streams", `${state.seq}`)) this.streams(state);
    if (this.changed("result", `${state.seq}|${state.status}`)) this.result(state);
  }

  header(state, ui, now) {
    const status = runStatus(state);
    const badge = this.find("run-badge");
    badge.textContent = status;
    badge.className = `badge status-${status}`;
    this.root.dataset.runStatus = status;
    let elapsed = "";
    if (state.finishedAt && state.elapsedMs != null) elapsed = `${formatMs(state.elapsedMs)} executing`;
    else if (state.startedAt) elapsed = `${formatMs(since(state.startedAt, now))} so far`;
    else elapsed = "not started yet";
    this.find("run-elapsed").textContent = elapsed;
    const { done, total } = progress(state);
    const bar = this.find("progress-bar");
    bar.style.width = `${total ? (100 * done) / total : 0}%`;
    bar.parentElement.setAttribute("aria-valuenow", String(done));
    bar.parentElement.setAttribute("aria-valuemax", String(total));
    this.find("progress-text").textContent = `${done} / ${total} nodes finished`;
    const cancel = this.find("cancel");
    if (isFinished(state)) {
      cancel.hidden = true;
      // Re-run any finished run; retry one that failed or was cancelled.
      this.root.querySelector("[data-when-finished]").hidden = false;
      this.root.querySelector("[data-when-failed]").hidden =
        state.status !== "failed" && state.status !== "cancelled";
    }
    const connection = this.find("connection");
    connection.dataset.connection = ui.connection;
    connection.textContent = ui.connectionText;
  }

  panel(state, selected, now) {
    const panel = this.find("panel");
    const node = selected ? state.nodes.get(selected) : null;
    if (!node) {
      panel.replaceChildren(
        h("h2", {}, "Run"),
        h("p", { class: "muted" }, "Select a node in the graph to see its inputs, outputs, streamed text and error."),
        section("Inputs", state.inputs == null ? h("p", { class: "muted" }, "—") : json(state.inputs)),
      );
      return;
    }
    const docNode = this.docNodes.get(node.id);
    const facts = h("dl", { class: "facts" },
      h("dt", {}, "node"), h("dd", {}, h("code", {}, node.id)),
      h("dt", {}, "type"), h("dd", {}, node.type),
      h("dt", {}, "status"), h("dd", {}, h("span", { class: `badge state-${node.status}` }, node.status)),
      h("dt", {}, "attempts"), h("dd", { "data-attempts": "" }, String(node.attempts)),
      h("dt", {}, "elapsed"), h("dd", {}, FINISHED.has(node.status)
        ? formatMs(node.elapsedMs) || "—"
        : node.startedAt ? `${formatMs(since(node.startedAt, now))} so far` : "—"),
      node.items ? [h("dt", {}, "items"), h("dd", { "data-items": "" }, itemsText(node.items))] : null,
    );
    const content = [
      h("h2", {}, docNode.title || node.id), h("p", { class: "status-line" }, statusLine(node, now)), facts,
    ];
    if (node.retrying) {
      content.push(section(`Retrying: attempt ${node.retrying.attempt} failed`,
        h("p", { class: "muted" }, `next attempt after ${formatMs(node.retrying.delayMs)}`),
        errorBox(node.retrying.error)));
    }
    if (node.text) {
      content.push(section("Streamed text", h("pre", { class: "stream", "data-stream": node.id }, node.text)));
    }
    content.push(section("Inputs", node.inputs == null
      ? h("p", { class: "muted" }, node.status === "pending" ? "not started yet" : "—") : json(node.inputs)));
    if (node.outputs != null) content.push(section("Outputs", json(node.outputs)));
    if (node.error) content.push(section("Error", errorBox(node.error)));
    panel.replaceChildren(...content);
  }

  // One form per open question; a form stays as it is (with what was typed) while it is open.
  questions(state, ui) {
    const box = this.find("questions");
    const open = new Set(state.waiting.map((question) => question.node));
    for (const [node, form] of this.questionForms) {
      if (!open.has(node)) {
        form.remove();
        this.questionForms.delete(node);
        ui.answering.delete(node);
      }
    }
    for (const question of state.waiting) {
      let form = this.questionForms.get(question.node);
      if (!form) {
        form = this.questionForm(question);
        this.questionForms.set(question.node, form);
        box.append(form);
      }
      const sending = ui.answering.has(question.node);
      form.classList.toggle("sending", sending);
      for (const control of form.querySelectorAll("button, textarea")) control.disabled = sending;
      form.querySelector(".sending-note").hidden = !sending;
    }
    box.hidden = state.waiting.length === 0;
  }

  questionForm(question) {
    const docNode = this.docNodes.get(question.node);
    const options = question.options || [];
    const text = h("textarea", { name: "answer", rows: 2,
      placeholder: options.length ? "A note with your choice (optional)" : "Your answer" });
    const send = (option) => (event) => {
      event.preventDefault();
      const typed = text.value.trim();
      const label = options.find((o) => o.id === option);
      this.actions.answer(question.node, typed || (label ? label.label : ""), option);
    };
    const buttons = options.length
      ? options.map((option, index) => h("button", { type: "submit",
        class: index === 0 ? "option" : "option secondary",
        "data-option": option.id, onclick: send(option.id) }, option.label || option.id))
      : [h("button", { type: "submit", class: "option", onclick: send(null) }, "Answer")];
    const deadline = question.timeout_at
      ? h("p", { class: "muted" }, `Answer by ${new Date(question.timeout_at).toLocaleString()}; then the run takes its timeout branch.`)
      : null;
    return h("form", { class: "question card", "data-question": question.node,
      onsubmit: (event) => event.preventDefault() },
    h("div", { class: "question-head" }, h("span", { class: "badge state-waiting" }, "question"),
      h("strong", {}, docNode ? docNode.title || docNode.id : question.node)),
    h("p", { class: "question-text" }, question.question),
    deadline, text,
    h("div", { class: "question-actions" }, ...buttons,
      h("span", { class: "sending-note muted", hidden: true }, "Sent; the run continues…")));
  }

  streams(state) {
    const box = this.find("streams");
    const list = this.find("stream-list");
    const named = state.streams.filter((id) => state.nodes.get(id).text);
    box.hidden = named.length === 0;
    list.replaceChildren(...named.map((id) => {
      const node = state.nodes.get(id);
      const docNode = this.docNodes.get(id);
      return h("div", { class: "stream-item" },
        h("div", { class: "stream-head" }, h("strong", {}, docNode.title || id),
          h("span", { class: `badge state-${node.status}` }, node.status)),
        h("pre", { class: "stream", "data-stream": id }, node.text));
    }));
  }

  result(state) {
    const box = this.find("result");
    if (!isFinished(state)) {
      box.replaceChildren(h("h2", {}, "Result"),
        h("p", { class: "muted" }, "The run's outputs appear here when it finishes."));
      return;
    }
    const content = [h("h2", {}, "Result ", h("span", { class: `badge status-${state.status}` }, state.status))];
    if (state.recovered) content.push(h("p", { class: "muted" }, `${state.recovered} node(s) recovered from an error.`));
    if (state.error) content.push(errorBox(state.error));
    if (state.outputs != null) content.push(h("h3", {}, "Outputs"), outputsList(state.outputs));
    if (state.answer != null) content.push(h("h3", {}, "Answer"), h("pre", { class: "stream", "data-answer": "" }, state.answer));
    box.replaceChildren(...content);
  }

  message(text, kind = "error") {
    const box = this.find("messages");
    const item = h("div", { class: `message ${kind}`, role: "alert" }, text,
      h("button", { type: "button", class: "dismiss", "aria-label": "Dismiss",
        onclick: () => item.remove() }, "×"));
    box.append(item);
    if (kind !== "error") setTimeout(() => item.remove(), 6000);
  }
}
