// Undo and redo: the documents before and after the present one. Edits that come in a
// stream — the keystrokes of one field, the frames of one drag — share a `coalesce` key and
// make one step.

const LIMIT = 200;

export function initialHistory(doc) {
  return { doc, past: [], future: [], coalesce: null };
}

export function history(state, action) {
  switch (action.type) {
    case "commit":
    case "edit": {
      const doc = action.type === "edit" ? action.change(state.doc) : action.doc;
      if (doc === state.doc) return state;
      if (action.coalesce && action.coalesce === state.coalesce) return { ...state, doc, future: [] };
      return { doc, past: [...state.past, state.doc].slice(-LIMIT), future: [], coalesce: action.coalesce || null };
    }
    case "undo":
      if (!state.past.length) return state;
      return { doc: state.past.at(-1), past: state.past.slice(0, -1), future: [state.doc, ...state.future], coalesce: null };
    case "redo":
      if (!state.future.length) return state;
      return { doc: state.future[0], past: [...state.past, state.doc], future: state.future.slice(1), coalesce: null };
    default:
      throw new Error(`unknown history action ${action.type}`);
  }
}
