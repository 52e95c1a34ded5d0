// The visual flow editor (docs/editor.md). The page hands over the draft and the addresses it
// needs in <script id="editor-boot" type="application/json">; the document is the one state
// that matters: the canvas and the forms show it and change it, undo walks its history, the
// server validates it (POST /api/flows/validate/) and stores it (PUT /api/flows/{slug}/).

import "@xyflow/react/dist/style.css";
import "./editor.css";

import { ReactFlowProvider, useReactFlow } from "@xyflow/react";
import { StrictMode, useCallback, useEffect, useMemo, useReducer, useRef, useState } from "react";
import { createRoot } from "react-dom/client";

import { call } from "./api.js";
import { Canvas, FIT } from "./canvas.jsx";
import {
  addNode, connect, followHandleRename, graphAt, graphPointer, locate, moveNodes, newNode, nodeTypes,
  removeItems, renameNode, setIn, withNodeAt,
} from "./document.js";
import { layeredPositions, NODE_WIDTH, positionsOf } from "./layout.js";
import { FlowPanel, NodePanel, ProblemList } from "./panels.jsx";
import { history, initialHistory } from "./history.js";

const boot = JSON.parse(document.getElementById("editor-boot").textContent);
const csrf = boot.csrf;

// Below `wanted`, the first place no node of the graph covers, so that new nodes do not pile up.
function freeSpot(graph, wanted) {
  const taken = positionsOf(graph);
  const covered = (spot) => [...taken.values()].some((each) =>
    Math.abs(each.x - spot.x) < NODE_WIDTH && Math.abs(each.y - spot.y) < 80);
  const spot = { ...wanted };
  while (covered(spot)) spot.y += 90;
  return spot;
}

function isTyping(target) {
  return target.closest?.("input, textarea, select, [contenteditable=true]");
}

function Palette({ types, onAdd }) {
  return (
    <nav className="palette" aria-label="Add a node">
      <h2>Add a node</h2>
      <ul>
        {[...types].map(([type, { summary: description }]) => (
          <li key={type}>
            <button type="button" className="palette-item" data-type={type} draggable
              onDragStart={(event) => {
                event.dataTransfer.setData("application/x-astron-node", type);
                event.dataTransfer.effectAllowed = "copy";
              }}
              onClick={() => onAdd(type)} aria-describedby={`palette-${type}`}>
              <span className={`type-dot type-${type}`} aria-hidden="true" />
              <span className="palette-name">{type}</span>
              <span className="palette-description" id={`palette-${type}`}>{description}</span>
            </button>
          </li>
        ))}
      </ul>
    </nav>
  );
}

function JsonView({ doc, onApply, onClose }) {
  const [text, setText] = useState(() => JSON.stringify(doc, null, 2));
  const [error, setError] = useState(null);
  // The text follows the document while it holds no edits of its own; edited, it is kept, and
  // a note says the document has changed beside it.
  const shown = useRef(text);
  const [behind, setBehind] = useState(false);
  useEffect(() => {
    const now = JSON.stringify(doc, null, 2);
    if (now === shown.current) return;
    if (text === shown.current) {
      shown.current = now;
      setText(now);
    } else {
      setBehind(true);
    }
  }, [doc]); // eslint-disable-line react-hooks/exhaustive-deps
  const apply = () => {
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (problem) {
      setError(`Not JSON: ${problem.message}`);
      return;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      setError("A flow is a JSON object.");
      return;
    }
    const objects = (list) => Array.isArray(list)
      && list.every((each) => each && typeof each === "object" && !Array.isArray(each));
    if (!objects(parsed.nodes) || !objects(parsed.edges)) {
      // The graph cannot be drawn from it; the text stays here to be mended.
      setError('To be drawn, a flow needs "nodes" and "edges": lists of objects.');
      return;
    }
    setError(null);
    onApply(parsed);
  };
  return (
    <section className="json-view" aria-label="The document as JSON">
      <div className="json-view-head">
        <label htmlFor="json-text">The document as JSON (docs/dsl.md)</label>
        <div>
          <button type="button" onClick={apply}>Apply the JSON</button>
          <button type="button" className="secondary" onClick={onClose}>Back to the graph</button>
        </div>
      </div>
      {error && <p className="field-problems" role="alert">{error}</p>}
      {behind && <p className="field-note" role="status">The document changed since this text was edited: applying it replaces those changes.</p>}
      <textarea id="json-text" value={text} spellCheck={false} onChange={(event) => setText(event.target.value)} />
    </section>
  );
}

function RunDialog({ doc, onStart, onClose, busy }) {
  const form = useRef(null);
  // Focus goes into the dialog, Escape closes it, and focus comes back where it was.
  useEffect(() => {
    const before = document.activeElement;
    form.current.querySelector("input, button")?.focus();
    const onKey = (event) => event.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    return () => {
      window.removeEventListener("keydown", onKey);
      before?.focus?.();
    };
  }, [onClose]);
  const inputs = Object.entries(doc.nodes.find((node) => node.type === "start")?.params?.inputs || {});
  const [values, setValues] = useState(() => Object.fromEntries(inputs.map(([name, spec]) => [name,
    spec.default === undefined ? "" : (spec.type === "string" ? spec.default : JSON.stringify(spec.default))])));
  const [error, setError] = useState(null);
  const start = (event) => {
    event.preventDefault();
    const given = {};
    for (const [name, spec] of inputs) {
      const text = values[name];
      if (text === "") continue;
      if (spec.type === "string") {
        given[name] = text;
      } else {
        try {
          given[name] = JSON.parse(text);
        } catch {
          setError(`${name}: not JSON (a ${spec.type})`);
          return;
        }
      }
    }
    onStart(given).catch((problem) => setError(problem.message));
  };
  return (
    <div className="dialog-backdrop">
      <form className="dialog" ref={form} role="dialog" aria-modal="true" aria-labelledby="run-title" onSubmit={start}>
        <h2 id="run-title">Start a run of the draft</h2>
        {inputs.length === 0 && <p className="muted">This flow takes no inputs.</p>}
        {inputs.map(([name, spec]) => (
          <div className="field" key={name}>
            <label htmlFor={`run-input-${name}`}>{name} <small className="muted">{spec.type}{spec.required ? ", required" : ""}</small></label>
            <input id={`run-input-${name}`} value={values[name]}
              onChange={(event) => setValues({ ...values, [name]: event.target.value })} />
          </div>
        ))}
        {error && <p className="field-problems" role="alert">{error}</p>}
        <div className="dialog-actions">
          <button type="submit" disabled={busy}>Start the run</button>
          <button type="button" className="secondary" onClick={onClose}>Cancel</button>
        </div>
      </form>
    </div>
  );
}

function NewFlowFields({ slug, onSlug, problem }) {
  return (
    <div className="field inline">
      <label htmlFor="flow-slug">Slug</label>
      <input id="flow-slug" value={slug} onChange={(event) => onSlug(event.target.value)}
        placeholder="my-flow" spellCheck={false} aria-describedby="flow-slug-note" />
      <span id="flow-slug-note" className={problem ? "field-problems" : "muted"}>
        {problem || "lower case letters, digits and -; the flow's address"}
      </span>
    </div>
  );
}

function Editor({ schema }) {
  const [state, dispatch] = useReducer(history, boot.dsl, initialHistory);
  const { doc } = state;
  const [path, setPath] = useState([]);
  const [selection, setSelection] = useState({ nodes: [], edges: [] });
  const [problems, setProblems] = useState([]);
  const [checking, setChecking] = useState(false);
  const [flow, setFlow] = useState(boot.flow);
  const [slug, setSlug] = useState("");
  const [slugProblem, setSlugProblem] = useState(null);
  // The document as last saved (for a new flow: as it started, which loses nothing if left).
  const [saved, setSaved] = useState(() => JSON.stringify(boot.dsl));
  const [message, setMessage] = useState(null);
  const [busy, setBusy] = useState(false);
  const [jsonView, setJsonView] = useState(false);
  const [running, setRunning] = useState(false);
  const flowApi = useReactFlow();
  const saving = useRef(false);
  const latest = useRef({});
  const types = useMemo(() => nodeTypes(schema), [schema]);
  // A note ("Added …", "Saved …") goes after a while; a refusal stays until the next action.
  useEffect(() => {
    if (!message || message.startsWith("Not ")) return undefined;
    const timer = setTimeout(() => setMessage(null), 6000);
    return () => clearTimeout(timer);
  }, [message]);

  const graph = graphAt(doc, path) || doc;
  const pointerOfGraph = useMemo(() => (graphAt(doc, path) ? graphPointer(doc, path) : ""), [doc, path]);
  const docText = useMemo(() => JSON.stringify(doc), [doc]);
  const dirty = docText !== saved;

  // A path whose iteration node is gone (undo, delete, the JSON view) falls back to the flow.
  useEffect(() => {
    if (!graphAt(doc, path)) setPath([]);
  }, [doc, path]);

  // Live validation, debounced; an answer for an older document is dropped.
  const asked = useRef(0);
  useEffect(() => {
    const ticket = ++asked.current;
    setChecking(true);
    const timer = setTimeout(() => {
      call("POST", boot.urls.validate, { dsl: doc }, csrf).then((answer) => {
        if (ticket === asked.current) setProblems(answer.errors);
      }).catch((error) => {
        if (ticket === asked.current) setProblems(error.details?.length ? error.details
          : [{ path: "", code: error.code || "error", message: error.message }]);
      }).finally(() => {
        if (ticket === asked.current) setChecking(false);
      });
    }, 300);
    return () => clearTimeout(timer);
  }, [doc]);

  // Problems pinned to the nodes and edges of the graph on the canvas.
  const { problemsByNode, problemEdges } = useMemo(() => {
    const byNode = new Map();
    const edges = new Set();
    for (const problem of problems) {
      const levels = locate(doc, problem.path);
      const here = levels.find((level) => level.path.join("/") === path.join("/"));
      if (!here) continue;
      if (here.node) byNode.set(here.node, (byNode.get(here.node) || 0) + 1);
      if (here.edge !== undefined) edges.add(here.edge);
    }
    return { problemsByNode: byNode, problemEdges: edges };
  }, [problems, doc, path]);

  // Leaving with unsaved changes asks first.
  useEffect(() => {
    const guard = (event) => {
      if (dirty) {
        event.preventDefault();
        event.returnValue = "";
      }
    };
    window.addEventListener("beforeunload", guard);
    return () => window.removeEventListener("beforeunload", guard);
  }, [dirty]);

  const commit = useCallback((next, coalesce) => dispatch({ type: "commit", doc: next, coalesce,
    at: performance.now() }), []);

  const undo = () => {
    dispatch({ type: "undo" });
    setSelection({ nodes: [], edges: [] });
  };
  const redo = () => {
    dispatch({ type: "redo" });
    setSelection({ nodes: [], edges: [] });
  };
  useEffect(() => {
    const onKey = (event) => {
      const mod = event.ctrlKey || event.metaKey;
      const key = event.key.toLowerCase();
      if (mod && key === "s") {
        event.preventDefault();
        // A field that saves on leaving it (an id, a name) saves first; then the save sees it.
        document.activeElement?.blur?.();
        setTimeout(() => latest.current.save(), 0);
        return;
      }
      if (!mod || isTyping(event.target)) return;
      if (key === "z" && !event.shiftKey) {
        event.preventDefault();
        undo();
      } else if ((key === "z" && event.shiftKey) || key === "y") {
        event.preventDefault();
        redo();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const addAt = (type, screenPoint) => {
    const canvas = document.querySelector(".canvas")?.getBoundingClientRect();
    const point = screenPoint || (canvas
      ? { x: canvas.left + canvas.width / 2, y: canvas.top + canvas.height / 2 } : null);
    const at = point ? flowApi.screenToFlowPosition(point) : { x: 0, y: 0 };
    const node = newNode(graph, type, freeSpot(graph, { x: at.x - NODE_WIDTH / 2, y: at.y - 30 }), path.length > 0);
    commit(addNode(doc, path, node));
    setSelection({ nodes: [node.id], edges: [] });
    setMessage(`Added ${type} node "${node.id}".`);
  };

  const onSelect = useCallback(({ nodes, edges }) => {
    setSelection((current) => {
      const next = { nodes: [...current.nodes], edges: [...current.edges] };
      for (const change of nodes || []) {
        next.nodes = next.nodes.filter((id) => id !== change.id);
        if (change.selected) next.nodes.push(change.id);
      }
      for (const change of edges || []) {
        const index = Number(change.id.slice(1));
        next.edges = next.edges.filter((each) => each !== index);
        if (change.selected) next.edges.push(index);
      }
      return next;
    });
  }, []);

  const onMove = useCallback((moved, coalesce) => {
    dispatch({ type: "edit", coalesce, at: performance.now(),
      change: (current) => moveNodes(current, path, moved) });
  }, [path]);

  const remove = (nodeIds, edgeIndexes) => {
    const kept = nodeIds.filter((id) => graph.nodes.some((node) => node.id === id));
    if (!kept.length && !edgeIndexes.length) return;
    commit(removeItems(doc, path, kept, edgeIndexes));
    setSelection({ nodes: [], edges: [] });
  };

  const selectedNode = selection.nodes.length === 1
    ? graph.nodes.findIndex((node) => node.id === selection.nodes[0]) : -1;

  const showProblem = (problem) => {
    const levels = locate(doc, problem.path);
    const last = levels[levels.length - 1];
    setJsonView(false);
    if (!last) {
      setPath([]);
      setSelection({ nodes: [], edges: [] });
      return;
    }
    setPath(last.path);
    setSelection(last.node ? { nodes: [last.node], edges: [] } : { nodes: [], edges: [last.edge] });
    setTimeout(() => {
      const field = document.querySelector(`.side [data-pointer="${CSS.escape(problem.path)}"]`);
      field?.querySelector("input, textarea, select, .cm-content")?.focus();
      if (last.node) flowApi.fitView({ nodes: [{ id: last.node }], maxZoom: 1.1 });
    }, 50);
  };

  const save = async () => {
    if (saving.current) return false;  // one save at a time: a second POST would make a second flow
    saving.current = true;
    setBusy(true);
    setMessage(null);
    try {
      if (flow) {
        await call("PUT", `${boot.urls.flows}${flow.slug}/`, { dsl: doc }, csrf);
      } else {
        const created = await call("POST", boot.urls.flows, { slug: slug.trim() || undefined, dsl: doc }, csrf);
        setFlow({ slug: created.slug, published_version: null });
        window.history.replaceState(null, "", `${boot.urls.pages}${created.slug}/edit/`);
      }
      setSaved(JSON.stringify(doc));
      setSlugProblem(null);
      setMessage("Saved the draft.");
      return true;
    } catch (error) {
      if (error.details?.length) setProblems(error.details);
      if (error.code === "slug_taken" || (error.details || []).some((each) => each.path === "/slug")) {
        setSlugProblem(error.message);
      }
      setMessage(`Not saved: ${error.message}`);
      return false;
    } finally {
      saving.current = false;
      setBusy(false);
    }
  };
  latest.current.save = save;

  const publish = async () => {
    if ((dirty || !flow) && !(await save())) return;
    setBusy(true);
    try {
      const slugNow = flow?.slug || window.location.pathname.split("/").at(-3);
      const answer = await call("POST", `${boot.urls.flows}${slugNow}/publish/`, {}, csrf);
      setFlow((current) => ({ ...current, published_version: answer.version }));
      setMessage(`Published version ${answer.version}.`);
    } catch (error) {
      if (error.details?.length) setProblems(error.details);
      setMessage(`Not published: ${error.message}`);
    } finally {
      setBusy(false);
    }
  };

  const openRun = async () => {
    if ((dirty || !flow) && !(await save())) return;
    setRunning(true);
  };

  const closeRun = useCallback(() => setRunning(false), []);

  const startRun = async (inputs) => {
    setBusy(true);
    try {
      const slugNow = flow?.slug || window.location.pathname.split("/").at(-3);
      const run = await call("POST", `${boot.urls.flows}${slugNow}/runs/`, { inputs, version: "draft" }, csrf);
      window.location.assign(`${boot.urls.runs}${run.id}/`);
    } finally {
      setBusy(false);
    }
  };

  const autoLayout = () => {
    const positions = layeredPositions(graph);
    commit(moveNodes(doc, path, positions));
    setTimeout(() => flowApi.fitView(FIT), 50);
  };

  const breadcrumbs = [{ label: doc.name || "The flow", path: [] },
    ...path.map((id, index) => ({ label: `${id} (body)`, path: path.slice(0, index + 1) }))];

  return (
    <div className="editor" data-dirty={dirty} data-checking={checking}>
      <div className="editor-bar">
        <div className="editor-title">
          <p className="crumbs">
            <a href={boot.urls.pages}>Flows</a> ›{" "}
            {flow ? <a href={`${boot.urls.pages}${flow.slug}/`}>{flow.slug}</a> : "new flow"} › editor
          </p>
          {!flow && <NewFlowFields slug={slug} onSlug={setSlug} problem={slugProblem} />}
        </div>
        <div className="editor-actions" role="toolbar" aria-label="Editor actions">
          <button type="button" className="secondary" onClick={undo} disabled={!state.past.length}
            aria-keyshortcuts="Control+Z" title="Undo (Ctrl+Z)">Undo</button>
          <button type="button" className="secondary" onClick={redo} disabled={!state.future.length}
            aria-keyshortcuts="Control+Shift+Z" title="Redo (Ctrl+Shift+Z)">Redo</button>
          <button type="button" className="secondary" onClick={autoLayout}>Tidy up</button>
          <button type="button" className="secondary" onClick={() => flowApi.fitView(FIT)}>Fit</button>
          <button type="button" className="secondary" aria-pressed={jsonView} onClick={() => setJsonView(!jsonView)}>JSON</button>
          <span className="save-state" aria-live="polite">
            {dirty ? "Unsaved changes" : flow ? "Saved" : "Not saved yet"}
          </span>
          <button type="button" onClick={save} disabled={busy} aria-keyshortcuts="Control+S">Save</button>
          <button type="button" onClick={publish} disabled={busy}>Publish</button>
          <button type="button" onClick={openRun} disabled={busy}>Run</button>
        </div>
      </div>
      {message && <p className="editor-message" role="status">{message}
        {flow?.published_version ? <> · published: version {flow.published_version}</> : null}</p>}
      <div className="editor-body">
        <Palette types={types} onAdd={(type) => addAt(type)} />
        <div className="editor-main">
          <nav className="graph-path" aria-label="Which graph">
            {breadcrumbs.map((crumb, index) => (
              <span key={index}>
                {index > 0 && " › "}
                {index === breadcrumbs.length - 1 ? <strong>{crumb.label}</strong>
                  : <button type="button" className="link" onClick={() => { setPath(crumb.path); setSelection({ nodes: [], edges: [] }); }}>{crumb.label}</button>}
              </span>
            ))}
          </nav>
          {jsonView ? (
            <JsonView doc={doc} onClose={() => setJsonView(false)} onApply={(parsed) => {
              commit(parsed);
              setPath([]);
              setSelection({ nodes: [], edges: [] });
              setJsonView(false);
            }} />
          ) : (
            <Canvas key={path.join("/")} graph={graph} selection={selection}
              problemsByNode={problemsByNode} problemEdges={problemEdges}
              onSelect={onSelect} onMove={onMove}
              onConnect={(edge) => commit(connect(doc, path, edge))}
              onDelete={remove} onDropType={(type, point) => addAt(type, point)} />
          )}
        </div>
        <aside className="side" aria-label="Details">
          {selectedNode >= 0 ? (
            <NodePanel key={`${path.join("/")}:${selectedNode}`} root={schema} types={types} doc={doc} path={path}
              graphPointerText={pointerOfGraph} node={graph.nodes[selectedNode]} index={selectedNode}
              problems={problems} secrets={boot.secrets} choices={boot.choices}
              onChangeNode={(key, value) => {
                const before = graph.nodes[selectedNode];
                const after = setIn(before, [key], value);
                const edited = withNodeAt(doc, path, selectedNode, () => after);
                commit(followHandleRename(edited, path, before, after), `${path.join("/")}:${before.id}:${key}`);
              }}
              onRename={(to) => {
                const renamed = renameNode(doc, path, selectedNode, to);
                if (!renamed) return false;
                commit(renamed);
                setSelection({ nodes: [to], edges: [] });
                return true;
              }}
              onConnect={(edge) => commit(connect(doc, path, edge))}
              onDisconnect={(index) => commit(removeItems(doc, path, [], [index]))}
              onDelete={() => remove([selection.nodes[0]], [])}
              onOpenBody={(id) => { setPath([...path, id]); setSelection({ nodes: [], edges: [] }); }} />
          ) : (
            <FlowPanel root={schema} doc={doc} problems={problems} selectedCount={selection.nodes.length}
              onChange={(key, value) => commit(setIn(doc, [key], value), `flow:${key}`)} />
          )}
          <ProblemList problems={problems} checking={checking} onShow={showProblem} />
        </aside>
      </div>
      {running && <RunDialog doc={doc} busy={busy} onStart={startRun} onClose={closeRun} />}
    </div>
  );
}

function App() {
  const [schema, setSchema] = useState(null);
  const [failure, setFailure] = useState(null);
  useEffect(() => {
    call("GET", boot.urls.schema, undefined, csrf).then(setSchema)
      .catch((error) => setFailure(error.message));
  }, []);
  if (failure) return <p className="field-problems" role="alert">The editor could not load the DSL's schema: {failure}</p>;
  if (!schema) return <p className="muted">Loading the editor…</p>;
  return (
    <ReactFlowProvider>
      <Editor schema={schema} />
    </ReactFlowProvider>
  );
}

createRoot(document.getElementById("editor-root")).render(<StrictMode><App /></StrictMode>);
