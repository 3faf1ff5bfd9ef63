import { backoffDelay } from "/live-client.js";

export default async function () {
  const out = [];
  for (let attempt = 0; attempt < 12; attempt++)
    out.push([backoffDelay(attempt, { baseMs: 250, maxMs: 8000 }, () => 0),
              backoffDelay(attempt, { baseMs: 250, maxMs: 8000 }, () => 0.999)]);
  return out;
}
