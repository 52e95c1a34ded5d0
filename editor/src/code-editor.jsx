// The `code` param's editor: CodeMirror 6 with Python. Tab stays with the page's focus order
// (CodeMirror's default), so the form remains usable from the keyboard.
import { python } from "@codemirror/lang-python";
import { basicSetup, EditorView } from "codemirror";
import { useEffect, useRef } from "react";

export function CodeEditor({ id, label, value, onChange }) {
  const host = useRef(null);
  const view = useRef(null);
  const latest = useRef(onChange);
  latest.current = onChange;
  useEffect(() => {
    view.current = new EditorView({
      doc: value,
      parent: host.current,
      extensions: [
        basicSetup,
        python(),
        EditorView.contentAttributes.of({ "aria-label": label, id: `${id}-code` }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) latest.current(update.state.doc.toString());
        }),
      ],
    });
    return () => view.current.destroy();
  }, []); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    const current = view.current.state.doc.toString();
    if (current !== value) {
      view.current.dispatch({ changes: { from: 0, to: current.length, insert: value } });
    }
  }, [value]);
  return <div className="code-editor" ref={host} id={id} />;
}
