// A moving line chart of probabilities (0..1) over the last `span` seconds, drawn on a canvas. No library.
"use strict";
class ProbChart {
  constructor(canvas, series, span = 30) {
    this.canvas = canvas; this.ctx = canvas.getContext("2d"); this.series = series; this.span = span;
    this.reset();
  }
  reset() {
    this.points = Object.fromEntries(this.series.map(s => [s.key, []]));
    this.tMax = 0;
    this.draw();
  }
  add(t, values) {
    for (const s of this.series) {
      const v = values[s.key];
      this.points[s.key].push([t, (v === null || v === undefined) ? null : v]);
      const pts = this.points[s.key];
      while (pts.length && pts[0][0] < t - this.span * 2) pts.shift();
    }
    this.tMax = t;
    this.draw();
  }
  draw() {
    const { ctx, canvas } = this, W = canvas.width, H = canvas.height;
    const L = 40, R = 110, T = 10, B = 28, w = W - L - R, h = H - T - B;
    const t1 = Math.max(this.tMax || 0, this.span), t0 = t1 - this.span;
    const x = t => L + (t - t0) / this.span * w, y = p => T + (1 - p) * h;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#50575e"; ctx.strokeStyle = "#dcdcde"; ctx.lineWidth = 1;
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      ctx.beginPath(); ctx.moveTo(L, y(p)); ctx.lineTo(L + w, y(p)); ctx.stroke();
      ctx.fillText(p.toFixed(2), 4, y(p) + 4);
    }
    for (let s = Math.ceil(t0 / 5) * 5; s <= t1; s += 5) ctx.fillText(`${s}s`, x(s) - 8, H - 8);
    ctx.save(); ctx.beginPath(); ctx.rect(L, T, w, h); ctx.clip();
    for (const s of this.series) {
      ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5; ctx.setLineDash(s.dash || []);
      ctx.beginPath(); let pen = false;
      for (const [t, v] of this.points[s.key]) {
        if (v === null) { pen = false; continue; }
        if (pen) ctx.lineTo(x(t), y(v)); else { ctx.moveTo(x(t), y(v)); pen = true; }
      }
      ctx.stroke();
    }
    ctx.restore(); ctx.setLineDash([]);
    this.series.forEach((s, i) => {
      ctx.fillStyle = s.color; ctx.fillRect(L + w + 12, T + 8 + i * 20, 14, 4);
      ctx.fillStyle = "#1d2327"; ctx.fillText(s.label, L + w + 32, T + 13 + i * 20);
    });
  }
}
