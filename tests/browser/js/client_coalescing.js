import { LiveClient } from "/live-client.js";
import { FakeSocket } from "./fake_socket.js";

export default async function () {
  FakeSocket.all.length = 0;
  const pubs = [];
  const client = new LiveClient({
    url: "ws://relay.test/v1/live", token: () => "T1",
    channels: [{ name: "inventory", coalesceMs: 250 }],
    backoff: { baseMs: 2, maxMs: 4 }, WebSocketImpl: FakeSocket,
    handlers: { pub: (c, e, offset) => pubs.push(offset), status: () => {}, auth: null, authFailed: () => {} },
  });
  client.start();
  const s = FakeSocket.all[0];
  s.open();
  s.recv({ type: "connected", client: "c", ping_interval_s: 15 });
  s.recv({ type: "subscribed", channel: "inventory", epoch: "E", offset: 2, recovered: false, snapshot: [] });
  for (const offset of [3, 9, 9, 4, 15]) s.recv({ type: "pub", channel: "inventory", epoch: "E", offset, event: {} });
  const result = { pubs, subscribe: s.sent[1], sent: s.sent.length };
  client.stop();
  return result;
}
