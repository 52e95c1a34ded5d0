// Form fields generated from the DSL's JSON Schema (GET /api/dsl/schema/): one widget per
// shape of schema the DSL uses. Value expressions and templates (docs/dsl.md §3) carry a
// reference picker; `code` gets a code editor.
//
// Each field shows the problems whose JSON Pointer is its own, so a problem the server finds
// lands beside the field it is about.

import { useEffect, useId, useRef, useState } from "react";

import { CodeEditor } from "./code-editor.jsx";
import { escapePointer } from "./document.js";

export function resolve(schema, root) {
  let resolved = schema || {};
  while (resolved.$ref) {
    const name = resolved.$ref.replace("#/$defs/", "");
    resolved = root.$defs[name];
  }
  return resolved;
}

const isTemplate = (schema) => (schema.description || "").includes("a template");
const isExpression = (schema) => (schema.description || "").includes("a value expression");

// A value to start a new entry of `schema` with. List items with an id get a fresh one.
export function blankValue(schema, root, hint = "item", taken = []) {
  const resolved = resolve(schema, root);
  if (resolved.enum) return resolved.enum[0];
  if (resolved.anyOf) return blankValue(resolved.anyOf[0], root, hint, taken);
  if (resolved.type === "object") {
    const value = {};
    for (const key of resolved.required || []) {
      if (key === "id") {
        let n = taken.length + 1;
        while (taken.includes(`${hint}_${n}`)) n += 1;
        value.id = `${hint}_${n}`;
      } else {
        value[key] = blankValue(resolved.properties?.[key], root, key);
      }
    }
    if (resolved.properties?.op && !value.right) value.right = "";
    return value;
  }
  return { string: "", number: 0, integer: 0, boolean: false, array: [] }[resolved.type] ?? "";
}

function FieldProblems({ problems }) {
  if (!problems.length) return null;
  return (
    <ul className="field-problems" role="alert">
      {problems.map((problem, index) => <li key={index}><code>{problem.code}</code> {problem.message}</li>)}
    </ul>
  );
}

// Keeps what a person types while it is not (yet) a value — "1." in a number, half-typed
// JSON — and follows the document when it changes from elsewhere (undo, the JSON view).
function useDraft(value, format, parse) {
  const [draft, setDraft] = useState(() => format(value));
  const shown = useRef(value);
  useEffect(() => {
    if (JSON.stringify(value) !== JSON.stringify(shown.current)) {
      shown.current = value;
      setDraft(format(value));
    }
  }, [value]); // eslint-disable-line react-hooks/exhaustive-deps
  const change = (text, onChange) => {
    setDraft(text);
    const parsed = parse(text);
    if (parsed.ok) {
      shown.current = parsed.value;
      onChange(parsed.value);
    }
    return parsed;
  };
  return [draft, change];
}

// A list whose choice is an action (insert, connect). A click acts at once; from the
// keyboard the arrows only move through it (Chromium fires `change` on each) and Enter acts.
const MOVES = ["ArrowUp", "ArrowDown", "Home", "End", "PageUp", "PageDown"];

export function ActionSelect({ label, className, onPick, children }) {
  const [value, setValue] = useState("");
  const byKeys = useRef(false);
  const act = (chosen) => {
    setValue("");
    if (chosen) onPick(chosen);
  };
  return (
    <select className={className} aria-label={label} value={value}
      onKeyDown={(event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          act(value);
        } else if (MOVES.includes(event.key)) {
          byKeys.current = true;
        }
      }}
      onPointerDown={() => { byKeys.current = false; }}
      onBlur={() => { byKeys.current = false; }}
      onChange={(event) => (byKeys.current ? setValue(event.target.value) : act(event.target.value))}>
      {children}
    </select>
  );
}

function ReferencePicker({ label, references, secrets, onPick }) {
  if (!references.length && !secrets.length) return null;
  return (
    <ActionSelect className="reference-picker" label={`Insert a reference into ${label}`}
      onPick={(chosen) => onPick(`{{${chosen}}}`)}>
      <option value="">Insert a reference…</option>
      {references.length > 0 && (
        <optgroup label="Outputs and run facts">
          {references.map((reference) => <option key={reference} value={reference}>{`{{${reference}}}`}</option>)}
        </optgroup>
      )}
      {secrets.length > 0 && (
        <optgroup label="Secrets">
          {secrets.map((name) => <option key={name} value={`secrets.${name}`}>{`{{secrets.${name}}}`}</option>)}
        </optgroup>
      )}
    </ActionSelect>
  );
}

// Text with references: the picker inserts at the cursor (or at the end).
function TextWithReferences({ id, label, value, onChange, multiline, template, ctx, fieldPath,
  children }) {
  const element = useRef(null);
  // Where the cursor was when the text last had focus; null: insert at the end.
  const cursor = useRef(null);
  const text = value ?? "";
  const remember = () => {
    cursor.current = [element.current.selectionStart, element.current.selectionEnd];
  };
  const insert = (reference) => {
    const [from, to] = cursor.current && cursor.current[1] <= text.length ? cursor.current
      : [text.length, text.length];
    onChange(text.slice(0, from) + reference + text.slice(to));
    cursor.current = [from + reference.length, from + reference.length];
  };
  const Tag = multiline ? "textarea" : "input";
  return (
    <div className="with-references">
      <Tag id={id} ref={element} value={text} rows={multiline ? 3 : undefined}
        onSelect={remember} onKeyUp={remember} onClick={remember}
        onChange={(event) => onChange(event.target.value)} spellCheck={false} />
      <div className="field-tools">
        <ReferencePicker label={label} references={ctx.references(fieldPath, template)}
          secrets={ctx.secretsFor(fieldPath)} onPick={insert} />
        {children}
      </div>
    </div>
  );
}

const parseJson = (text) => {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: error.message };
  }
};

// A value expression: any JSON, usually a string with references. "Text" keeps what is typed
// as a string; "JSON" parses it (numbers, lists, objects).
function ExpressionField({ id, label, value, onChange, ctx, fieldPath }) {
  const [mode, setMode] = useState(value === undefined || typeof value === "string" ? "text" : "json");
  const [error, setError] = useState(null);
  const [draft, change] = useDraft(value, (v) => (v === undefined ? "" : JSON.stringify(v)), parseJson);
  useEffect(() => {
    if (value !== undefined && typeof value !== "string") setMode("json");
  }, [value]);
  const modeSelect = (
    <select className="mode" aria-label={`Kind of value of ${label}`} value={mode}
      onChange={(event) => {
        setMode(event.target.value);
        setError(null);
        if (event.target.value === "text") onChange(typeof value === "string" ? value : "");
      }}>
      <option value="text">text</option>
      <option value="json">JSON</option>
    </select>
  );
  if (mode === "text") {
    return (
      <TextWithReferences id={id} label={label} value={typeof value === "string" ? value : ""}
        onChange={onChange} ctx={ctx} fieldPath={fieldPath}>
        {modeSelect}
      </TextWithReferences>
    );
  }
  return (
    <div className="with-references">
      <input id={id} className={error ? "invalid" : ""} value={draft} spellCheck={false}
        aria-invalid={Boolean(error)}
        onChange={(event) => setError(change(event.target.value, onChange).error || null)} />
      <div className="field-tools">{modeSelect}</div>
      {error && <p className="field-note">Not JSON yet: {error}</p>}
    </div>
  );
}

function JsonField({ id, value, onChange }) {
  const [error, setError] = useState(null);
  const [draft, change] = useDraft(value, (v) => (v === undefined ? "" : JSON.stringify(v, null, 2)),
    (text) => (text.trim() === "" ? { ok: true, value: undefined } : parseJson(text)));
  return (
    <>
      <textarea id={id} rows={4} value={draft} spellCheck={false} aria-invalid={Boolean(error)}
        onChange={(event) => setError(change(event.target.value, onChange).error || null)} />
      {error && <p className="field-note">Not JSON yet: {error}</p>}
    </>
  );
}

function NumberField({ id, schema, value, onChange }) {
  const parse = (text) => {
    if (text.trim() === "") return { ok: true, value: undefined };
    const number = Number(text);
    if (!Number.isFinite(number) || (schema.type === "integer" && !Number.isInteger(number))) {
      return { ok: false };
    }
    return { ok: true, value: number };
  };
  const [draft, change] = useDraft(value, (v) => (v === undefined ? "" : String(v)), parse);
  return (
    <input id={id} type="number" value={draft} min={schema.minimum} max={schema.maximum}
      step={schema.type === "integer" ? 1 : "any"}
      onChange={(event) => change(event.target.value, onChange)} />
  );
}

// Plain text; where the page knows what the field usually names (a subflow's flow, an llm's
// provider), those are offered in a list the person may still type past.
function TextField({ id, value, required, onChange, choices }) {
  const listId = `${id}-choices`;
  return (
    <>
      <input id={id} value={value ?? ""} spellCheck={false} list={choices.length ? listId : undefined}
        onChange={(event) => onChange(event.target.value === "" && !required ? undefined : event.target.value)} />
      {choices.length > 0 && (
        <datalist id={listId}>
          {choices.map((choice) => <option key={choice} value={choice} />)}
        </datalist>
      )}
    </>
  );
}

// A number, or text (a reference, or a word such as "published").
function LooseField({ id, value, onChange }) {
  const parse = (text) => {
    if (text.trim() === "") return { ok: true, value: undefined };
    const number = Number(text);
    return { ok: true, value: /^-?[0-9.]+$/.test(text.trim()) && Number.isFinite(number) ? number : text };
  };
  const [draft, change] = useDraft(value, (v) => (v === undefined ? "" : String(v)), parse);
  return <input id={id} value={draft} onChange={(event) => change(event.target.value, onChange)} />;
}

function ChoiceField({ id, options, value, onChange, required }) {
  return (
    <select id={id} value={value === undefined ? "" : JSON.stringify(value)}
      onChange={(event) => onChange(event.target.value === "" ? undefined : JSON.parse(event.target.value))}>
      {(!required || value === undefined) && <option value="">{required ? "choose…" : "(default)"}</option>}
      {options.map((option) => (
        <option key={JSON.stringify(option)} value={JSON.stringify(option)}>{String(option)}</option>
      ))}
    </select>
  );
}

// An object whose keys a person chooses (inputs, headers, outputs): rows of key and value.
function MapField({ label, schema, value, onChange, pointer, fieldPath, ctx, root }) {
  const entries = Object.entries(value || {});
  const valueSchema = resolve(schema.additionalProperties, root);
  const box = useRef(null);
  const refocus = useRefocus(box);
  const rename = (from, to, byEnter) => {
    if (!to || to === from || (value && to in value)) return false;
    onChange(Object.fromEntries(entries.map(([key, each]) => [key === from ? to : key, each])));
    if (byEnter) refocus.current = to;
    return true;
  };
  const add = () => {
    let n = entries.length + 1;
    while (value && `name_${n}` in value) n += 1;
    onChange({ ...(value || {}), [`name_${n}`]: blankValue(valueSchema, root, "name") });
  };
  return (
    <div className="map-field" ref={box}>
      {entries.length === 0 && <p className="field-note">None yet.</p>}
      {entries.map(([key, each]) => (
        <div className="map-row" key={key}>
          <KeyInput label={`Name in ${label}`} value={key} onRename={(to) => rename(key, to)} />
          <Field label={`${label}: ${key}`} schema={valueSchema} root={root} value={each}
            pointer={`${pointer}/${escapePointer(key)}`} fieldPath={[...fieldPath, key]} ctx={ctx}
            hideLabel
            onChange={(next) => onChange({ ...value, [key]: next === undefined ? blankValue(valueSchema, root) : next })} />
          <button type="button" className="icon" aria-label={`Remove ${key} from ${label}`}
            onClick={() => onChange(Object.fromEntries(entries.filter(([name]) => name !== key)))}>×</button>
        </div>
      ))}
      <button type="button" className="small" onClick={add}>Add to {label}</button>
    </div>
  );
}

// A name or id that is saved when it is left or Enter is pressed, not at each keystroke:
// half-typed, it would collide with its neighbours (`case_1` on the way to `case_10`).
// `data-refocus` lets the field that redraws it under its new name give it the focus back.
function KeyInput({ label, value, onRename, id, className = "key" }) {
  const [draft, setDraft] = useState(value);
  useEffect(() => setDraft(value), [value]);
  const done = (byEnter) => {
    if (draft.trim() === value) return;
    if (!onRename(draft.trim(), byEnter)) setDraft(value);
  };
  return (
    <input id={id} className={className} aria-label={id ? undefined : label} value={draft}
      spellCheck={false} data-name={value}
      onChange={(event) => setDraft(event.target.value)} onBlur={() => done(false)}
      onKeyDown={(event) => event.key === "Enter" && done(true)} />
  );
}

// A case's or an option's id: it names a handle, whose edges follow a new id once it is
// complete (document.js, followHandleRename).
function IdInput({ id, value, onChange }) {
  const holder = useRef(null);
  const refocus = useRefocus(holder);
  return (
    <span ref={holder} className="id-input">
      <KeyInput id={id} className="" value={value} onRename={(to, byEnter) => {
        if (!to) return false;
        onChange(to);
        if (byEnter) refocus.current = to;
        return true;
      }} />
    </span>
  );
}

// After a rename by Enter, the renamed row's name input (a new element) gets the focus.
function useRefocus(container) {
  const wanted = useRef(null);
  useEffect(() => {
    if (wanted.current === null) return;
    const input = container.current?.querySelector(`input[data-name="${CSS.escape(wanted.current)}"]`);
    wanted.current = null;
    input?.focus();
  });
  return wanted;
}

// Keys that stay with a list's items when one of them is removed, so that what a row keeps
// beside the document (an expression's "JSON" mode, half-typed JSON, a "Not JSON yet" note)
// stays with its item instead of passing to the row that moves up. A list changed from
// elsewhere (the JSON view) gets new keys, and its rows start afresh.
function useItemKeys(count) {
  const state = useRef({ keys: [], next: 0 });
  const known = state.current;
  if (known.keys.length !== count) {
    known.keys = Array.from({ length: count }, () => known.next++);
  }
  return {
    keys: known.keys,
    removed: (index) => { known.keys = known.keys.filter((_, at) => at !== index); },
    added: () => { known.keys = [...known.keys, known.next++]; },
  };
}

function ListField({ label, schema, value, onChange, pointer, fieldPath, ctx, root }) {
  const items = Array.isArray(value) ? value : [];
  const itemKeys = useItemKeys(items.length);
  const itemSchema = resolve(schema.items, root);
  const noun = { cases: "case", options: "option", conditions: "condition", sources: "source" }[fieldPath[fieldPath.length - 1]] || "item";
  const add = () => {
    const taken = items.map((item) => item?.id).filter(Boolean);
    itemKeys.added();
    onChange([...items, blankValue(itemSchema, root, noun, taken)]);
  };
  return (
    <div className="list-field">
      {items.map((item, index) => (
        <div className="list-item" key={itemKeys.keys[index]}>
          <div className="list-item-head">
            <span>{noun} {index + 1}{item?.id ? `: ${item.id}` : ""}</span>
            <button type="button" className="icon" aria-label={`Remove ${noun} ${index + 1} of ${label}`}
              onClick={() => {
                itemKeys.removed(index);
                onChange(items.filter((_, at) => at !== index));
              }}>×</button>
          </div>
          <Field label={`${noun} ${index + 1}`} schema={itemSchema} root={root} value={item} hideLabel
            pointer={`${pointer}/${index}`} fieldPath={[...fieldPath, index]} ctx={ctx}
            onChange={(next) => onChange(items.map((each, at) => (at === index ? next : each)))} />
        </div>
      ))}
      <button type="button" className="small" onClick={add}>Add a {noun}</button>
    </div>
  );
}

// One field of the schema, with its label and its problems.
export function Field({ label, schema, root, value, onChange, pointer, fieldPath, ctx, required,
  hideLabel, skip = [] }) {
  const id = useId();
  const resolved = resolve(schema, root);
  const problems = ctx.problemsAt(pointer);
  const key = fieldPath[fieldPath.length - 1];
  let widget;
  let group = false;
  if (key === "id" && resolved.type === "string") {
    widget = <IdInput id={id} value={value ?? ""} onChange={onChange} />;
  } else if (key === "code" && resolved.type === "string") {
    widget = <CodeEditor id={id} label={label} value={value ?? ""} onChange={onChange} />;
  } else if (resolved.anyOf) {
    widget = <LooseField id={id} value={value} onChange={onChange} />;
  } else if (resolved.enum) {
    widget = <ChoiceField id={id} options={resolved.enum} value={value} onChange={onChange} required={required} />;
  } else if (isExpression(resolved) || (!resolved.type && !resolved.const)) {
    widget = isExpression(resolved)
      ? <ExpressionField id={id} label={label} value={value} onChange={onChange} ctx={ctx} fieldPath={fieldPath} />
      : <JsonField id={id} value={value} onChange={onChange} />;
  } else if (resolved.type === "string") {
    widget = isTemplate(resolved)
      ? <TextWithReferences id={id} label={label} value={value} onChange={onChange} ctx={ctx}
        fieldPath={fieldPath} template multiline={["template", "prompt", "system", "answer", "question"].includes(key)} />
      : key === "description" ? (
        <textarea id={id} rows={2} value={value ?? ""}
          onChange={(event) => onChange(event.target.value === "" && !required ? undefined : event.target.value)} />
      ) : (
        <TextField id={id} value={value} required={required} onChange={onChange}
          choices={ctx.choicesFor(fieldPath)} />
      );
  } else if (resolved.type === "number" || resolved.type === "integer") {
    widget = <NumberField id={id} schema={resolved} value={value} onChange={onChange} />;
  } else if (resolved.type === "boolean") {
    widget = <ChoiceField id={id} options={[true, false]} value={value} onChange={onChange} required={false} />;
  } else if (resolved.type === "object" && resolved.properties && value === undefined && !required) {
    // Left out until asked for: an optional object (retry, settings, an array's `items`)
    // would otherwise open into its own optional objects without end.
    widget = (
      <button type="button" className="small" onClick={() => onChange(blankValue(resolved, root, key))}>
        Set {label}
      </button>
    );
  } else if (resolved.type === "object" && resolved.properties) {
    group = true;
    const object = value && typeof value === "object" ? value : {};
    const fields = Object.entries(resolved.properties).filter(([name]) => !skip.includes(name)).map(([name, inner]) => (
      <Field key={name} label={name} schema={inner} root={root} value={object[name]}
        required={(resolved.required || []).includes(name)} pointer={`${pointer}/${escapePointer(name)}`}
        fieldPath={[...fieldPath, name]} ctx={ctx}
        onChange={(next) => {
          const updated = { ...object };
          if (next === undefined) delete updated[name];
          else updated[name] = next;
          onChange(updated);  // emptied, it stays open: "Remove" takes it away
        }} />
    ));
    widget = (
      <>
        {fields}
        {!required && (
          <button type="button" className="small" onClick={() => onChange(undefined)}>Remove {label}</button>
        )}
      </>
    );
  } else if (resolved.type === "object" && resolved.additionalProperties) {
    group = true;
    widget = <MapField label={label} schema={resolved} root={root} value={value} onChange={onChange}
      pointer={pointer} fieldPath={fieldPath} ctx={ctx} />;
  } else if (resolved.type === "array") {
    group = true;
    widget = <ListField label={label} schema={resolved} root={root} value={value} onChange={onChange}
      pointer={pointer} fieldPath={fieldPath} ctx={ctx} />;
  } else {
    widget = <JsonField id={id} value={value} onChange={onChange} />;
  }
  if (group) {
    return (
      <fieldset className="field group" data-pointer={pointer}>
        <legend className={hideLabel ? "visually-hidden" : undefined}>
          {label}{required && <span className="required" title="required"> *</span>}
        </legend>
        {widget}
        <FieldProblems problems={problems} />
      </fieldset>
    );
  }
  return (
    <div className={`field${problems.length ? " has-problems" : ""}`} data-pointer={pointer}>
      <label htmlFor={id} className={hideLabel ? "visually-hidden" : undefined}>
        {label}{required && <span className="required" title="required"> *</span>}
      </label>
      {widget}
      <FieldProblems problems={problems} />
    </div>
  );
}
