// An inline SVG step chart of the price in force over time. Built with DOM calls, no markup strings.
const SVG = "http://www.w3.org/2000/svg";
const H = 220;
const PAD = { left: 56, right: 12, top: 12, bottom: 24 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

// points: [{ at: ISO string, price: decimal string }], oldest first; drawn at the container's width so
// text is never stretched.
export function priceChart(points, width = 800, now = Date.now()) {
  const W = Math.max(320, Math.round(width));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Price history" });
  const data = points
    .map((p) => ({ t: Date.parse(p.at), v: Number(p.price) }))
    .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v));
  if (!data.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No price history"));
    return root;
  }
  const t0 = data[0].t;
  const t1 = Math.max(now, data[data.length - 1].t + 1);
  let lo = Math.min(...data.map((p) => p.v));
  let hi = Math.max(...data.map((p) => p.v));
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  const steps = [];
  data.forEach((p, i) => {
    if (i > 0) steps.push(`${x(p.t)},${y(data[i - 1].v)}`); // the old price holds until the change
    steps.push(`${x(p.t)},${y(p.v)}`);
  });
  steps.push(`${x(t1)},${y(data[data.length - 1].v)}`);
  root.append(
    svg("line", { class: "axis", x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom }),
    svg("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom }),
    svg("text", { x: PAD.left - 6, y: y(hi) + 4, "text-anchor": "end" }, String(hi)),
    svg("text", { x: PAD.left - 6, y: y(lo) + 4, "text-anchor": "end" }, String(lo)),
    svg("text", { x: PAD.left, y: H - 6 }, new Date(t0).toLocaleString()),
    svg("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end" }, new Date(t1).toLocaleString()),
    svg("polyline", { class: "line", points: steps.join(" ") }),
  );
  for (const p of data) {
    const dot = svg("circle", { class: "dot", cx: x(p.t), cy: y(p.v), r: 3 });
    dot.append(svg("title", {}, `${new Date(p.t).toLocaleString()}: ${p.v}`));
    root.append(dot);
  }
  return root;
}
