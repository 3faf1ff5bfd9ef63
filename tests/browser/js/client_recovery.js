import { LiveClient } from "/live-client.js";
import { FakeSocket, until } from "./fake_socket.js";

export default async function () {
  const seen = { statuses: [], pubs: [], snapshots: [] };
  const client = new LiveClient({
    url: "ws://relay.test/v1/live", token: () => "T1", channels: [{ name: "inventory" }],
    backoff: { baseMs: 2, maxMs: 4 }, WebSocketImpl: FakeSocket,
    handlers: {
      status: (s) => seen.statuses.push(s),
      snapshot: (c, rows) => seen.snapshots.push(rows.length),
      pub: (c, e, offset) => seen.pubs.push(e.n),
    },
  });
  const pub = (s, offset, epoch = "E1") => s.recv({ type: "pub", channel: "inventory", epoch, offset, event: { n: offset } });
  client.start();
  const s1 = FakeSocket.all[0];
  s1.open();
  s1.recv({ type: "connected", client: "c1", expires_at: "2099-01-01T00:00:00Z", ping_interval_s: 15 });
  s1.recv({ type: "subscribed", channel: "inventory", epoch: "E1", offset: 5, recovered: false, snapshot: [{ sku: "A" }] });
  pub(s1, 6);
  pub(s1, 6);          // duplicate: dropped
  pub(s1, 8);          // gap after 6: resubscribe from 6
  pub(s1, 9);          // while the resubscription is in flight: dropped, the reply brings it
  const gapFrames = s1.sent.slice(2);
  s1.recv({ type: "subscribed", channel: "inventory", epoch: "E1", offset: 9, recovered: true,
            publications: [7, 8, 9].map((o) => ({ offset: o, event: { n: o } })) });
  s1.recv({ type: "ping" });
  const pong = s1.sent.at(-1);
  s1.die(1012, "service restart");
  await until(() => FakeSocket.all.length === 2);
  const s2 = FakeSocket.all[1];
  s2.open();
  s2.recv({ type: "connected", client: "c2", expires_at: "2099-01-01T00:00:00Z", ping_interval_s: 15 });
  const resume = s2.sent[1];
  s2.recv({ type: "subscribed", channel: "inventory", epoch: "E1", offset: 10, recovered: true,
            publications: [{ offset: 10, event: { n: 10 } }] });
  const afterRecovery = seen.statuses.at(-1);
  s2.die(1006, "");
  await until(() => FakeSocket.all.length === 3);
  const s3 = FakeSocket.all[2];
  s3.open();
  s3.recv({ type: "connected", client: "c3", ping_interval_s: 15 });
  s3.recv({ type: "subscribed", channel: "inventory", epoch: "E2", offset: 3, recovered: false, snapshot: [{ sku: "A" }, { sku: "B" }] });
  const afterReload = seen.statuses.at(-1);
  s3.recv({ type: "reset", channel: "inventory" });
  const afterReset = s3.sent.slice(-2);
  s3.recv({ type: "subscribed", channel: "inventory", epoch: "E3", offset: 1, recovered: false, snapshot: [] });
  const afterResetStatus = seen.statuses.at(-1);
  pub(s3, 2, "E-other");  // another epoch: resubscribe
  const afterEpoch = s3.sent.slice(-2);
  const before = s3.sent.length;
  s3.recv({ type: "error", code: "unavailable", message: "redis down" });  // the subscribe failed
  await until(() => s3.sent.length === before + 1);
  const retried = s3.sent.at(-1);
  client.stop();
  return { connect: s1.sent[0], subscribe: s1.sent[1], gapFrames, pong, resume, afterRecovery,
           afterReload, afterReset, afterResetStatus, afterEpoch, retried, ...seen };
}
