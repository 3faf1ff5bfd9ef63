// Inline SVG charts built with DOM calls, no markup strings: step lines of values over time (a price or a
// stock level holds until the next change) and a small sparkline for the overview strip.
const SVG = "http://www.w3.org/2000/svg";
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// series: [{ name, cls, points: [{ t: epoch ms, v: number }] oldest first, dots }]. Drawn at the container's
// width so text is never stretched; the last value of each series holds until `now`.
export function stepChart(series, { label, empty, width = 800, now = Date.now() }) {
  const W = Math.max(320, Math.round(width));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  const drawn = series
    .map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v)) }))
    .filter((s) => s.points.length);
  if (!drawn.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, empty));
    return root;
  }
  const all = drawn.flatMap((s) => s.points);
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(now, Math.max(...all.map((p) => p.t)) + 1);
  let lo = Math.min(...all.map((p) => p.v));
  let hi = Math.max(...all.map((p) => p.v));
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  root.append(
    svg("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }),
    svg("text", { x: PAD.left - 6, y: y(hi) + 4, "text-anchor": "end" }, String(hi)),
    svg("text", { x: PAD.left - 6, y: y(lo) + 4, "text-anchor": "end" }, String(lo)),
    svg("text", { x: PAD.left, y: H - 6 }, new Date(t0).toLocaleString()),
    svg("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end" }, new Date(t1).toLocaleString()),
  );
  drawn.forEach((s, index) => {
    const data = s.points;
    const steps = [];
    data.forEach((p, i) => {
      if (i > 0) steps.push(`${x(p.t)},${y(data[i - 1].v)}`); // the old value holds until the change
      steps.push(`${x(p.t)},${y(p.v)}`);
    });
    steps.push(`${x(t1)},${y(data[data.length - 1].v)}`);
    root.append(svg("polyline", { class: `line ${s.cls}`, "data-series": s.name, points: steps.join(" ") }));
    if (s.dots) {
      for (const p of data) {
        const dot = svg("circle", { class: "dot", cx: x(p.t), cy: y(p.v), r: 3 });
        dot.append(svg("title", {}, `${new Date(p.t).toLocaleString()}: ${p.v}`));
        root.append(dot);
      }
    }
    if (drawn.length > 1) {
      const lx = W - PAD.right - 110;
      const ly = PAD.top + 10 + index * 16;
      root.append(
        svg("line", { class: `key ${s.cls}`, x1: lx, y1: ly - 4, x2: lx + 18, y2: ly - 4 }),
        svg("text", { x: lx + 24, y: ly }, s.name),
      );
    }
  });
  return root;
}

// points: [{ at: ISO string, price: decimal string }], oldest first. A dot marks each change.
export function priceChart(points, width = 800, now = Date.now()) {
  const data = points.map((p) => ({ t: Date.parse(p.at), v: Number(p.price) }));
  return stepChart([{ name: "price", cls: "price", points: data, dots: true }], {
    label: "Price history",
    empty: "No price history",
    width,
    now,
  });
}

// entries: ledger rows (created_at, on_hand_after, reserved_after), oldest first. Available is what the
// item can still promise: on hand minus reserved.
export function stockChart(entries, width = 800, now = Date.now()) {
  const at = (e) => Date.parse(e.created_at);
  return stepChart(
    [
      { name: "on hand", cls: "on-hand", points: entries.map((e) => ({ t: at(e), v: e.on_hand_after })) },
      {
        name: "available",
        cls: "available",
        points: entries.map((e) => ({ t: at(e), v: e.on_hand_after - e.reserved_after })),
      },
    ],
    { label: "Stock over time", empty: "No stock movements", width, now },
  );
}

// A sparkline of per-bucket values (oldest first), without axes: the strip's commands/s.
export function sparkline(values, { width = 240, height = 40, label = "" } = {}) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
  if (!values.length) return root;
  const hi = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const points = values.map((v, i) => `${i * step},${height - 2 - (v / hi) * (height - 4)}`);
  root.append(svg("polyline", { class: "spark", points: points.join(" ") }));
  return root;
}
