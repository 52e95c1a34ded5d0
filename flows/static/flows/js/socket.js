// The run's websocket (docs/api.md, "Live events over a websocket"): /ws/runs/{id}/?after=N sends
// the stored events after N, then the live ones, one event envelope per text frame.
//
// After a drop it reconnects by itself with exponential backoff, asking for the events after
// the last seq the page applied (`after()`), so nothing is missed and, with the state's own
// seq check, nothing is applied twice. The server closes with 1000 after `run.finished`:
// that close is final. 4400 (bad request), 4401 (not signed in), 4403 (origin refused) and
// 4404 (no such run) are final too.

const FINAL_CODES = new Set([1000, 4400, 4401, 4403, 4404]);
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;

export class RunSocket {
  // path: "/ws/runs/<id>/"; after(): the last seq applied; handlers: onEvent(envelope),
  // onRefusal(error) for error frames, onConnection(state, detail) for the indicator.
  constructor(path, after, handlers) {
    this.path = path;
    this.after = after;
    this.handlers = handlers;
    this.socket = null;
    this.failures = 0;
    this.timer = null;
    this.stopped = false;
    window.addEventListener("online", () => this.reconnectNow());
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${this.path}?after=${this.after()}`;
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = null;
    this.handlers.onConnection(this.failures ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.addEventListener("open", () => this.handlers.onConnection("live"));
    socket.addEventListener("message", (message) => {
      this.failures = 0; // the server answers: the next drop starts the backoff anew
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame && frame.type === "error" && frame.seq === undefined) {
        this.handlers.onRefusal(frame.error || {});
      } else if (frame && typeof frame.seq === "number") {
        this.handlers.onEvent(frame);
      }
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (FINAL_CODES.has(event.code)) {
        this.stopped = true;
        this.handlers.onConnection("closed", event.code);
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.failures);
    const jittered = Math.round(delay * (0.8 + Math.random() * 0.4));
    this.failures += 1;
    this.handlers.onConnection("waiting", jittered);
    this.timer = setTimeout(() => this.connect(), jittered);
  }

  reconnectNow() {
    if (!this.stopped && !this.socket) this.connect();
  }

  // Send a client message; false when the socket is not open (the caller falls back).
  send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  get open() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
  }
}
