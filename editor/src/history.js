// Undo and redo: the documents before and after the present one. Edits that come in a
// stream — the keystrokes in one part of a node, the frames of one drag — share a `coalesce`
// key and make one step while they come less than PAUSE_MS apart.

const LIMIT = 200;
const PAUSE_MS = 1000;

export function initialHistory(doc) {
  return { doc, past: [], future: [], coalesce: null, at: 0 };
}

export function history(state, action) {
  switch (action.type) {
    case "commit":
    case "edit": {
      const doc = action.type === "edit" ? action.change(state.doc) : action.doc;
      if (doc === state.doc) return state;
      const at = action.at ?? 0;
      if (action.coalesce && action.coalesce === state.coalesce && at - state.at < PAUSE_MS) {
        return { ...state, doc, future: [], at };
      }
      return { doc, past: [...state.past, state.doc].slice(-LIMIT), future: [],
        coalesce: action.coalesce || null, at };
    }
    case "undo":
      if (!state.past.length) return state;
      return { doc: state.past.at(-1), past: state.past.slice(0, -1), future: [state.doc, ...state.future], coalesce: null, at: 0 };
    case "redo":
      if (!state.future.length) return state;
      return { doc: state.future[0], past: [...state.past, state.doc], future: state.future.slice(1), coalesce: null, at: 0 };
    default:
      throw new Error(`unknown history action ${action.type}`);
  }
}
