import { LiveClient } from "/live-client.js";
import { FakeSocket, until } from "./fake_socket.js";

export default async function () {
  const seen = { pubs: [], statuses: [], auth: [] };
  const client = new LiveClient({
    url: "ws://relay.test/v1/live", token: () => "T1",
    channels: [{ name: "alerts", filter: { skus: ["A"] } }],
    backoff: { baseMs: 2, maxMs: 4 }, WebSocketImpl: FakeSocket,
    handlers: { pub: (c, e) => seen.pubs.push(e.n), status: (s) => seen.statuses.push(s),
                auth: null, authFailed: (r) => seen.auth.push(r) },
  });
  client.start();
  const s = FakeSocket.all[0];
  s.open();
  s.recv({ type: "connected", client: "c", ping_interval_s: 15 });
  s.recv({ type: "subscribed", channel: "alerts", epoch: "E", offset: 2, recovered: false, snapshot: [] });
  for (const offset of [3, 7, 7, 5, 20]) s.recv({ type: "pub", channel: "alerts", epoch: "E", offset, event: { n: offset } });
  client.updateToken("T2");
  const refresh = s.sent.at(-1);
  s.die(1008, "token expired");
  // No reconnect may be pending: nothing scheduled, and the client says it stopped.
  const pendingTimers = client.timers.size;
  return { ...seen, refresh, pendingTimers, stopped: client.stopped, subscribe: s.sent[1], sockets: FakeSocket.all.length, sent: s.sent.length };
}
