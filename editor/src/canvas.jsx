// The canvas: React Flow (@xyflow/react) draws the graph at the current path and does the
// dragging, connecting, selecting, zooming and keyboard moves; every change it reports is
// turned into an edit of the document (document.js).

import {
  applyNodeChanges, Background, Controls, Handle, MiniMap, Position, ReactFlow, useConnection,
  useNodesInitialized, useReactFlow, useUpdateNodeInternals,
} from "@xyflow/react";
import { memo, useCallback, useEffect, useMemo, useRef, useState } from "react";

import { edgeFor, handlesOf } from "./document.js";
import { NODE_WIDTH, nodeHeight, positionsOf } from "./layout.js";

const FlowNode = memo(({ id, data, selected }) => {
  const { node, problems } = data;
  const connection = useConnection();
  // While a connection is being drawn, the whole of every other node takes it.
  const catching = connection.inProgress && connection.fromNode?.id !== id;
  const handles = handlesOf(node);
  // React Flow measures a node's handles when it first draws it; new ones (a case added or
  // renamed) must be measured again before an edge can attach to them.
  // (Not on the first draw, which measures them anyway: one call per node there would
  // redraw the whole canvas once per node.)
  const updateNodeInternals = useUpdateNodeInternals();
  const handleIds = handles.map((handle) => handle.id).join("\n");
  const drawnHandles = useRef(handleIds);
  useEffect(() => {
    if (drawnHandles.current === handleIds) return;
    drawnHandles.current = handleIds;
    updateNodeInternals(id);
  }, [handleIds, id, updateNodeInternals]);
  const labelled = handles.filter((handle) => handle.label);
  return (
    <div className={`flow-node type-${node.type}${selected ? " selected" : ""}${problems ? " has-problems" : ""}`}
      style={{ width: NODE_WIDTH, minHeight: nodeHeight(node) }}
      aria-label={`${node.type} node ${node.id}${problems ? `, ${problems} problems` : ""}`}>
      {node.type !== "start" && (
        <Handle type="target" position={Position.Left} id="in"
          className={catching ? "catch-all" : undefined} aria-label={`Input of ${node.id}`} />
      )}
      <div className="flow-node-head">
        <span className={`type-dot type-${node.type}`} aria-hidden="true" />
        <span className="flow-node-type">{node.type}</span>
        {problems > 0 && <span className="problem-badge" title={`${problems} problems`}>{problems}</span>}
      </div>
      <div className="flow-node-title">{node.title || node.id}</div>
      {node.title && <code className="flow-node-id">{node.id}</code>}
      {node.type === "iteration" && <div className="flow-node-note">body: {node.params?.body?.nodes?.length || 0} nodes</div>}
      {labelled.length > 0 && (
        <div className="flow-node-handles">
          {handles.map((handle) => handle.label && (
            <div key={handle.id} className={`handle-row handle-${handle.id}`}>
              <span>{handle.label}</span>
              <Handle type="source" position={Position.Right} id={handle.id} data-handle={handle.id}
                aria-label={`Output ${handle.label} of ${node.id}`} />
            </div>
          ))}
        </div>
      )}
      {handles.some((handle) => handle.id === "out") && (
        <Handle type="source" position={Position.Right} id="out" data-handle="out"
          className={labelled.length ? "plain-out" : undefined} aria-label={`Output of ${node.id}`} />
      )}
    </div>
  );
});
FlowNode.displayName = "FlowNode";

const NODE_TYPES_MAP = { astron: FlowNode };
export const FIT = { padding: 0.2, maxZoom: 1.1 };

export function Canvas({ graph, selection, problemsByNode, problemEdges, onSelect, onMove, onConnect,
  onDelete, onDropType }) {
  // The layered layout depends only on the graph's shape: not recomputed while a field is
  // typed into.
  const shape = JSON.stringify([(graph.nodes || []).map((node) => [node?.id, node?.ui, nodeHeight(node || {})]),
    (graph.edges || []).map((edge) => [edge?.from, edge?.to])]);
  const positions = useMemo(() => positionsOf(graph), [shape]); // eslint-disable-line react-hooks/exhaustive-deps
  // React Flow's nodes: the graph's, with what React Flow measured of them kept across edits.
  // A node whose definition, problems, selection and place did not change keeps its object,
  // so that React Flow does not draw it again (a keystroke redraws one node, not all).
  const flowNodes = (previous) => {
    const before = new Map(previous.map((node) => [node.id, node]));
    return (graph.nodes || []).filter((node) => typeof node?.id === "string").map((node) => {
      const was = before.get(node.id);
      const position = positions.get(node.id);
      const problems = problemsByNode.get(node.id) || 0;
      const selected = selection.nodes.includes(node.id);
      if (was && was.data.node === node && was.data.problems === problems && was.selected === selected
        && was.position.x === position.x && was.position.y === position.y) return was;
      return {
        id: node.id,
        type: "astron",
        position,
        data: { node, problems },
        selected,
        measured: was?.measured,
        ariaLabel: `${node.type} node ${node.id}`,
      };
    });
  };
  const [nodes, setNodes] = useState(() => flowNodes([]));
  const dragging = useRef(null);
  // Fit the graph to the screen once React Flow has measured its nodes (a new canvas is
  // mounted for each graph: the flow, or an iteration body).
  const measured = useNodesInitialized();
  const { fitView } = useReactFlow();
  const fitted = useRef(false);
  useEffect(() => {
    if (measured && !fitted.current) {
      fitted.current = true;
      fitView(FIT);
    }
  }, [measured, fitView]);
  useEffect(() => {
    setNodes(flowNodes);
  }, [graph, positions, problemsByNode, selection]); // eslint-disable-line react-hooks/exhaustive-deps
  const edges = useMemo(() => (graph.edges || []).map((edge, index) => ({
    id: `e${index}`,
    source: edge.from,
    target: edge.to,
    sourceHandle: edge.branch || "out",
    targetHandle: "in",
    label: edge.branch,
    selected: selection.edges.includes(index),
    className: problemEdges.has(index) ? "has-problems" : undefined,
    ariaLabel: `Edge from ${edge.from}${edge.branch ? ` (${edge.branch})` : ""} to ${edge.to}`,
  })), [graph, selection, problemEdges]);

  const onNodesChange = useCallback((changes) => {
    setNodes((current) => applyNodeChanges(changes.filter((change) => change.type !== "remove"), current));
    const moved = new Map();
    for (const change of changes) {
      if (change.type === "position" && change.position) {
        moved.set(change.id, { x: Math.round(change.position.x), y: Math.round(change.position.y) });
      }
    }
    if (moved.size) onMove(moved, dragging.current || `keys:${[...moved.keys()].join(",")}`);
    const selects = changes.filter((change) => change.type === "select");
    if (selects.length) onSelect({ nodes: selects });
  }, [onMove, onSelect]);
  const onEdgesChange = useCallback((changes) => {
    const selects = changes.filter((change) => change.type === "select");
    if (selects.length) onSelect({ edges: selects });
  }, [onSelect]);

  return (
    <div className="canvas" onDragOver={(event) => {
      if (event.dataTransfer.types.includes("application/x-astron-node")) event.preventDefault();
    }} onDrop={(event) => {
      const type = event.dataTransfer.getData("application/x-astron-node");
      if (type) {
        event.preventDefault();
        onDropType(type, { x: event.clientX, y: event.clientY });
      }
    }}>
      <ReactFlow nodes={nodes} edges={edges} nodeTypes={NODE_TYPES_MAP}
        onNodesChange={onNodesChange} onEdgesChange={onEdgesChange}
        onConnect={(connection) => onConnect(edgeFor(connection.source, connection.sourceHandle, connection.target))}
        onDelete={({ nodes: gone, edges: cut }) => onDelete(gone.map((node) => node.id),
          cut.map((edge) => Number(edge.id.slice(1))))}
        onNodeDragStart={() => { dragging.current = `drag:${Date.now()}`; }}
        onNodeDragStop={() => { dragging.current = null; }}
        deleteKeyCode={["Delete", "Backspace"]} multiSelectionKeyCode={["Meta", "Control", "Shift"]}
        selectionKeyCode="Shift"
        minZoom={0.05} maxZoom={2} proOptions={{ hideAttribution: true }}>
        <Background gap={20} size={1} />
        <Controls showInteractive={false} />
        <MiniMap pannable zoomable ariaLabel="Overview of the graph" />
      </ReactFlow>
    </div>
  );
}
