// The side panel: the selected node's form, or the flow's own settings; and the list of
// every problem of the document.

import { useEffect, useState } from "react";

import {
  allowsSecrets, choicesFor, edgeFor, escapePointer, graphAt, handlesOf, referencesFor, sameEdge,
} from "./document.js";
import { ActionSelect, Field, resolve } from "./fields.jsx";

export function paramsSchema(root, type) {
  const check = root.$defs.node.allOf.find((each) => each.if.properties.type.const === type);
  return check?.then?.properties?.params;
}

// What the fields of one node need from the editor: problems by pointer, references.
function fieldContext({ problems, doc, path, node, secrets, choices, types }) {
  return {
    problemsAt: (pointer) => problems.filter((problem) => problem.path === pointer),
    // In a template param, the node's own inputs come first (docs/dsl.md §3, rule 6).
    references: (fieldPath, template) => {
      const ownInputs = template && fieldPath[0] === "params" ? Object.keys(node.inputs || {}) : [];
      return [...ownInputs, ...referencesFor(doc, path, node.id, types)];
    },
    secretsFor: (fieldPath) => (allowsSecrets(node, fieldPath) ? secrets : []),
    choicesFor: (fieldPath) => choicesFor(node, fieldPath, choices),
  };
}

function IdField({ value, onRename, problems, pointer }) {
  const [draft, setDraft] = useState(value);
  const [refused, setRefused] = useState(false);
  useEffect(() => {
    setDraft(value);
    setRefused(false);
  }, [value]);
  const done = () => {
    if (draft === value) return;
    const ok = onRename(draft);
    setRefused(!ok);
  };
  return (
    <div className="field" data-pointer={pointer}>
      <label htmlFor="node-id">id</label>
      <input id="node-id" value={draft} spellCheck={false} onChange={(event) => setDraft(event.target.value)}
        onBlur={done} onKeyDown={(event) => event.key === "Enter" && done()}
        aria-describedby="node-id-note" aria-invalid={refused} />
      <p className="field-note" id="node-id-note">
        {refused ? "Not renamed: an id is lower case letters, digits and _, starts with a letter, and is unique in its graph."
          : "Renaming keeps the node's edges and the references to it."}
      </p>
      {problems.map((problem, index) => <p key={index} className="field-problems" role="alert"><code>{problem.code}</code> {problem.message}</p>)}
    </div>
  );
}

function Connections({ graph, node, onConnect, onDisconnect }) {
  const handles = handlesOf(node);
  if (!handles.length) return null;
  const others = graph.nodes.filter((each) => each.id !== node.id && each.type !== "start");
  const known = new Set(handles.map((handle) => (handle.id === "out" ? undefined : handle.id)));
  const stray = graph.edges.map((edge, index) => ({ edge, index }))
    .filter(({ edge }) => edge.from === node.id && !known.has(edge.branch));
  return (
    <fieldset className="field group connections">
      <legend>Connections</legend>
      {stray.map(({ edge, index }) => (
        <div key={`stray-${index}`} className="connection-row">
          <span className="handle-name problem-text">{edge.branch} (no such output) →</span>
          <span className="chip">
            {edge.to}
            <button type="button" className="icon" aria-label={`Disconnect ${edge.branch} from ${edge.to}`}
              onClick={() => onDisconnect(index)}>×</button>
          </span>
        </div>
      ))}
      {handles.map((handle) => {
        const edges = graph.edges.map((edge, index) => ({ edge, index }))
          .filter(({ edge }) => sameEdge(edge, edgeFor(node.id, handle.id, edge.to)));
        const name = handle.label || "output";
        return (
          <div key={handle.id} className="connection-row">
            <span className="handle-name">{name} →</span>
            {edges.map(({ edge, index }) => (
              <span key={index} className="chip">
                {edge.to}
                <button type="button" className="icon" aria-label={`Disconnect ${name} from ${edge.to}`}
                  onClick={() => onDisconnect(index)}>×</button>
              </span>
            ))}
            <ActionSelect label={`Connect ${name} to a node`}
              onPick={(target) => onConnect(edgeFor(node.id, handle.id, target))}>
              <option value="">connect to…</option>
              {others.map((each) => <option key={each.id} value={each.id}>{each.id}</option>)}
            </ActionSelect>
          </div>
        );
      })}
    </fieldset>
  );
}

export function NodePanel({ root, types, doc, path, graphPointerText, node, index, problems, secrets, choices,
  onChangeNode, onRename, onConnect, onDisconnect, onDelete, onOpenBody }) {
  const graph = graphAt(doc, path);
  const pointer = `${graphPointerText}/nodes/${index}`;
  const mine = problems.filter((problem) => problem.path === pointer || problem.path.startsWith(`${pointer}/`));
  const ctx = fieldContext({ problems: mine, doc, path, node, secrets, choices, types });
  const nodeSchema = root.$defs.node;
  const set = (key) => (value) => onChangeNode(key, value);
  const props = nodeSchema.properties;
  const common = { root, ctx };
  const params = paramsSchema(root, node.type);
  const inBody = path.length > 0;
  const hasTimeout = !["question", "iteration", "subflow"].includes(node.type);
  // Open at first when the node uses any of it; then as the person leaves it.
  const [errorsOpen, setErrorsOpen] = useState(
    () => Boolean(node.on_error || node.retry || node.timeout_s !== undefined));
  return (
    <section className="panel-section" aria-label={`Node ${node.id}`}>
      <header className="panel-head">
        <p className="node-kind"><span className={`type-dot type-${node.type}`} /> {node.type}</p>
        <p className="muted">{types.get(node.type)?.summary}</p>
      </header>
      {mine.length > 0 && (
        <ul className="node-problems" aria-label="Problems of this node">
          {mine.map((problem, at) => <li key={at}><code>{problem.code}</code> {problem.message} <small>{problem.path.slice(pointer.length) || "/"}</small></li>)}
        </ul>
      )}
      <IdField value={node.id} onRename={onRename} problems={ctx.problemsAt(`${pointer}/id`)}
        pointer={`${pointer}/id`} />
      <Field label="title" schema={props.title} {...common} value={node.title} onChange={set("title")}
        pointer={`${pointer}/title`} fieldPath={["title"]} />
      {node.type !== "start" && (
        <Field label="inputs" schema={props.inputs} {...common} value={node.inputs} onChange={set("inputs")}
          pointer={`${pointer}/inputs`} fieldPath={["inputs"]} />
      )}
      {params && !(node.type === "start" && inBody) && (
        <Field label="params" schema={params} {...common} value={node.params} onChange={set("params")}
          pointer={`${pointer}/params`} fieldPath={["params"]} skip={["body"]}
          required={resolve(params, root).required?.length > 0} />
      )}
      {node.type === "iteration" && (
        <div className="field">
          <button type="button" onClick={() => onOpenBody(node.id)}>Edit the body ({node.params?.body?.nodes?.length || 0} nodes)</button>
        </div>
      )}
      {node.type === "code" && (
        <Field label="outputs" schema={props.outputs} {...common} value={node.outputs} onChange={set("outputs")}
          pointer={`${pointer}/outputs`} fieldPath={["outputs"]} required />
      )}
      {!["start", "end"].includes(node.type) && (
        <details className="errors-section" open={errorsOpen}
          onToggle={(event) => setErrorsOpen(event.currentTarget.open)}>
          <summary>Errors, retries and timeout</summary>
          <Field label="on_error" schema={props.on_error} {...common} value={node.on_error} onChange={set("on_error")}
            pointer={`${pointer}/on_error`} fieldPath={["on_error"]} />
          {node.on_error === "default" && (
            <Field label="default" schema={props.default} {...common} value={node.default} onChange={set("default")}
              pointer={`${pointer}/default`} fieldPath={["default"]} />
          )}
          <Field label="retry" schema={props.retry} {...common} value={node.retry} onChange={set("retry")}
            pointer={`${pointer}/retry`} fieldPath={["retry"]} />
          {hasTimeout && (
            <Field label="timeout_s" schema={props.timeout_s} {...common} value={node.timeout_s}
              onChange={set("timeout_s")} pointer={`${pointer}/timeout_s`} fieldPath={["timeout_s"]} />
          )}
        </details>
      )}
      <Connections graph={graph} node={node} onConnect={onConnect} onDisconnect={onDisconnect} />
      <div className="field">
        <button type="button" className="danger" onClick={onDelete}>Delete this node</button>
      </div>
    </section>
  );
}

export function FlowPanel({ root, doc, problems, onChange, selectedCount }) {
  const ctx = {
    problemsAt: (pointer) => problems.filter((problem) => problem.path === pointer),
    references: () => [],
    secretsFor: () => [],
    choicesFor: () => [],
  };
  const props = root.properties;
  return (
    <section className="panel-section" aria-label="The flow">
      <header className="panel-head">
        <p className="node-kind">The flow</p>
        <p className="muted">
          {selectedCount > 1 ? `${selectedCount} nodes selected: drag them together, or press Delete. `
            : "Select a node to edit it. "}
          These settings are the flow&apos;s own.
        </p>
      </header>
      {["name", "description", "settings"].map((key) => (
        <Field key={key} label={key} schema={props[key]} root={root} ctx={ctx} value={doc[key]}
          required={key === "name"} pointer={`/${escapePointer(key)}`} fieldPath={[key]}
          onChange={(value) => onChange(key, value)} />
      ))}
    </section>
  );
}

export function ProblemList({ problems, checking, onShow }) {
  return (
    <section className="problems" aria-label="Problems" aria-live="polite">
      <h2>
        {problems.length === 0 ? "No problems" : `${problems.length} problem${problems.length === 1 ? "" : "s"}`}
        {checking && <span className="muted"> · checking…</span>}
      </h2>
      {problems.length > 0 && (
        <ul>
          {problems.map((problem, index) => (
            <li key={index}>
              <button type="button" className="link" onClick={() => onShow(problem)}>
                <code>{problem.path || "/"}</code>
              </button>{" "}
              <code className="code">{problem.code}</code> {problem.message}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
