// The client side of docs/live-protocol.md. It owns the per-channel positions (epoch, offset) and all of
// the recovery: the views only ever see "replace with this snapshot" or "apply this event", in order.
//
// Status: connecting (first time) -> live; on loss: reconnecting -> recovered (every channel got exactly
// what it missed) or reloaded (at least one channel had to be replaced by a snapshot); offline when we
// stopped or the relay refused our token.

const OPEN_TIMEOUT_MS = 10000;

export function backoffDelay(attempt, { baseMs = 250, maxMs = 8000 } = {}, random = Math.random) {
  // Equal jitter: never zero (no reconnect storm), never more than the cap.
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}

export class LiveClient {
  constructor({ url, token, channels, handlers, backoff, WebSocketImpl }) {
    this.url = url;
    this.token = token; // () => current access token
    this.channels = channels; // [{ name, filter?, coalesceMs? }]
    // { status(state, detail), snapshot(channel, rows, truncated), pub(channel, event, offset),
    //   authFailed(reason) }
    this.handlers = handlers;
    this.backoff = backoff || {};
    this.WebSocket = WebSocketImpl || WebSocket;
    this.positions = new Map(channels.map((c) => [c.name, { epoch: null, offset: 0 }]));
    this.pending = new Set();
    this.attempt = 0;
    this.everConnected = false;
    this.cycle = { reconnect: false, reloaded: false };
    this.ws = null;
    this.timers = new Set();
    this.stopped = true;
    this.state = "offline";
  }

  start() {
    this.stopped = false;
    this.setStatus(this.everConnected ? "reconnecting" : "connecting");
    this.open();
  }

  stop() {
    this.stopped = true;
    this.teardown();
    this.setStatus("offline");
  }

  // --- socket lifecycle -------------------------------------------------------------------------------

  open() {
    const ws = new this.WebSocket(this.url);
    this.ws = ws;
    this.lastSeen = Date.now();
    this.later(OPEN_TIMEOUT_MS, () => ws.readyState !== 1 && this.drop(ws, "open timeout"));
    ws.onopen = () => ws.send(JSON.stringify({ type: "connect", token: this.token() }));
    ws.onmessage = (message) => {
      this.lastSeen = Date.now();
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      this.onFrame(frame);
    };
    ws.onclose = (event) => this.closed(ws, event.code, event.reason);
  }

  teardown() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    clearInterval(this.watchdog);
    if (this.ws) {
      const ws = this.ws;
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState <= 1) ws.close(1000);
      this.ws = null;
    }
    this.pending.clear();
  }

  drop(ws, why) {
    // A silent socket may take minutes to report its death; treat it as closed now.
    if (ws === this.ws) this.closed(ws, 4000, why);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.teardown();
    if (this.stopped) return;
    if (code === 1008 && /unauthori|expired/i.test(reason || "")) {
      this.stopped = true;
      this.setStatus("offline", reason);
      this.call("authFailed", reason);
      return;
    }
    this.cycle = { reconnect: true, reloaded: false };
    this.setStatus("reconnecting", reason || `closed ${code}`);
    const delay = backoffDelay(this.attempt++, this.backoff);
    this.later(delay, () => this.open());
  }

  later(ms, fn) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  // --- frames -----------------------------------------------------------------------------------------

  onFrame(frame) {
    switch (frame.type) {
      case "connected":
        return this.onConnected(frame);
      case "subscribed":
        return this.onSubscribed(frame);
      case "pub":
        return this.onPub(frame);
      case "reset":
        return this.onReset(frame.channel);
      case "ping":
        return this.send({ type: "pong" });
      case "error":
        return this.onError(frame);
      default:
        return undefined;
    }
  }

  onConnected(frame) {
    const intervalMs = (frame.ping_interval_s || 15) * 1000;
    const ws = this.ws;
    // The relay pings every interval; two missed pings mean the path is dead even if TCP has not noticed.
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastSeen > 2.5 * intervalMs) this.drop(ws, "no ping");
    }, 1000);
    for (const channel of this.channels) this.subscribe(channel.name);
  }

  // A renewed token goes to the open connection at once; a reconnect reads `token()` anyway.
  updateToken(token) {
    this.send({ type: "refresh", token });
  }

  subscribe(name) {
    const channel = this.channels.find((c) => c.name === name);
    const position = this.positions.get(name);
    const frame = { type: "subscribe", channel: name };
    if (channel.filter) frame.filter = channel.filter;
    if (channel.coalesceMs) frame.coalesce_ms = channel.coalesceMs;
    if (position.epoch !== null) frame.recover = { epoch: position.epoch, offset: position.offset };
    this.pending.add(name);
    this.send(frame);
  }

  resubscribe(name) {
    this.send({ type: "unsubscribe", channel: name });
    this.subscribe(name);
  }

  onSubscribed(frame) {
    const name = frame.channel;
    const position = this.positions.get(name);
    if (!position || !this.pending.has(name)) return;
    if (frame.recovered) {
      for (const publication of frame.publications || []) {
        const event = publication.event || publication;
        this.call("pub", name, event, publication.offset);
      }
    } else {
      // A first subscription always gets a snapshot; only a failed recovery counts as "reloaded".
      if (position.epoch !== null) this.cycle.reloaded = true;
      this.call("snapshot", name, frame.snapshot || [], Boolean(frame.truncated));
    }
    position.epoch = frame.epoch;
    position.offset = frame.offset;
    this.pending.delete(name);
    if (this.pending.size === 0) this.settled();
  }

  settled() {
    this.attempt = 0;
    this.everConnected = true;
    const { reconnect, reloaded } = this.cycle;
    this.cycle = { reconnect: false, reloaded: false };
    if (reloaded) this.setStatus("reloaded");
    else if (reconnect) this.setStatus("recovered");
    else if (this.state !== "recovered" && this.state !== "reloaded") this.setStatus("live");
  }

  onPub(frame) {
    const name = frame.channel;
    const position = this.positions.get(name);
    // While a (re)subscription is in flight, its reply brings everything after its offset.
    if (!position || this.pending.has(name)) return;
    if (frame.epoch !== position.epoch) {
      this.resubscribe(name);
      return;
    }
    if (frame.offset <= position.offset) return; // already applied (a duplicate or a replay)
    const channel = this.channels.find((c) => c.name === name);
    // Filtered and coalescing subscriptions skip offsets on purpose: theirs only increase.
    if (!channel.filter && !channel.coalesceMs && frame.offset !== position.offset + 1) {
      this.resubscribe(name); // a gap: recover from our last position
      return;
    }
    position.offset = frame.offset;
    this.call("pub", name, frame.event, frame.offset);
  }

  onReset(name) {
    // The relay cannot vouch for continuity: ask with our position; the relay answers with what we
    // missed if its history still holds it, else with a snapshot.
    if (this.positions.has(name)) this.resubscribe(name);
  }

  onError(frame) {
    console.warn("live relay error", frame.code, frame.message);
    // The relay could not reach Redis or PostgreSQL for a subscribe: retry what is pending, later.
    if (frame.code !== "unavailable" || this.pending.size === 0) return;
    const retry = [...this.pending];
    const ws = this.ws;
    this.later(backoffDelay(this.attempt++, this.backoff), () => {
      if (ws !== this.ws) return;
      for (const name of retry) if (this.pending.has(name)) this.subscribe(name);
    });
  }

  setStatus(state, detail) {
    if (state === this.state && state !== "offline") return;
    this.state = state;
    this.call("status", state, detail);
  }

  call(name, ...args) {
    const handler = this.handlers[name];
    if (!handler) return;
    try {
      handler(...args);
    } catch (error) {
      // One bad row must not cost the connection its position.
      console.error(`live ${name} handler failed`, error);
    }
  }
}
