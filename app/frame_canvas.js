// The Annotate page's frame (app/frame_canvas.py): the frame and its points drawn here, in the page,
// from the server's numbers. A click or a drag is drawn at once and sent to the server; when the
// server's answer comes back (a new `data`), the canvas shows exactly the server's points again.

const DRAG_PX = 3; // a press that travels less than this many display pixels is a click, not a drag

// The last view made. A rerun of the whole page mounts the canvas anew; the new view carries on with
// the old one's events, numbering and decoded frame (no grey flash while the same frame decodes again).
let previous = null;

// Streamlit calls the default export again with the same parentElement whenever `data` changes, so
// the canvas and its listeners are made once and kept on the canvas element.
export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const canvas = parentElement.querySelector("canvas.ssn3d-frame");
  if (!canvas) return;
  if (!canvas.__view) canvas.__view = previous = new FrameView(canvas, previous);
  canvas.__view.send = setTriggerValue;
  canvas.__view.update(data);
}

class FrameView {
  constructor(canvas, before) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.token = before ? before.token : Math.random().toString(36).slice(2) + Date.now().toString(36);
    this.seq = before ? before.seq : 0;
    this.pending = before ? before.pending : []; // events sent and not yet answered, oldest first
    this.data = before ? before.data : null;
    this.points = [];
    this.selected = 0;
    this.image = before ? before.image : null;
    this.imageSrc = before ? before.imageSrc : null;
    this.hover = null; // the pointer in frame pixels, while it is over the canvas
    this.drag = null; // {part, startX, startY, moved} while a point is pressed
    this.resendWait = 0;
    if (this.pending.length) this.scheduleResend(); // the old canvas's unanswered events, from this one now
    canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    canvas.addEventListener("pointermove", (e) => this.onMove(e));
    canvas.addEventListener("pointerup", (e) => this.onUp(e));
    canvas.addEventListener("pointercancel", () => this.onCancel());
    canvas.addEventListener("pointerleave", () => {
      this.hover = null;
      this.draw();
    });
  }

  // ------------------------------------------------------------------ the server's state

  update(data) {
    if (this.data && this.data.frame !== data.frame) this.pending = []; // those were for another frame
    const ack = data.ack;
    if (ack && ack.token === this.token) this.pending = this.pending.filter((ev) => ev.seq > ack.seq);
    if (!this.pending.length) {
      clearTimeout(this.resendTimer);
      this.resendWait = 0;
    }
    this.data = data;
    this.rebuild();
    this.resize();
    if (data.image !== this.imageSrc) {
      this.imageSrc = data.image;
      const img = new Image();
      img.onload = () => {
        if (this.imageSrc === data.image) {
          this.image = img;
          this.draw();
        }
      };
      img.src = data.image;
      this.image = null; // never the last frame's pixels under this frame's points
    }
    this.canvas.dataset.frame = data.frame;
    this.canvas.dataset.answered = ack && ack.token === this.token ? String(ack.seq) : "0";
    this.draw();
  }

  // The server's points with the events it has not answered yet applied on top, by the server's rules.
  rebuild() {
    this.points = this.data.points.map((p) => p.slice());
    this.selected = this.data.selected;
    for (const ev of this.pending) this.apply(ev);
    const d = this.drag;
    if (d && d.moved && this.points[d.part][2] === 2) this.points[d.part] = [d.at[0], d.at[1], 2];
    this.canvas.dataset.pending = String(this.pending.length);
  }

  apply(ev) {
    const pts = this.points;
    if (ev.kind === "move") {
      if (pts[ev.part][2] === 2) pts[ev.part] = [ev.x, ev.y, 2];
      return;
    }
    if (this.data.mode === "delete") {
      const hit = this.nearest(ev.x, ev.y);
      if (hit !== null) {
        pts[hit] = [0, 0, 0];
        this.selected = hit;
      }
      return;
    }
    pts[this.selected] = [ev.x, ev.y, 2];
    const n = pts.length;
    for (let step = 1; step <= n; step++) {
      const i = (this.selected + step) % n;
      if (pts[i][2] === 0) {
        this.selected = i;
        return;
      }
    }
  }

  emit(ev) {
    ev.seq = ++this.seq;
    ev.frame = this.data.frame;
    this.pending.push(ev);
    this.apply(ev);
    this.canvas.dataset.pending = String(this.pending.length);
    this.canvas.dataset.sent = String(ev.seq);
    this.draw();
    this.resendWait = 0;
    this.sendPending();
  }

  sendPending() {
    this.send("event", { token: this.token, events: this.pending });
    this.scheduleResend();
  }

  // A trigger that reaches the server while the page is being rebuilt can be lost, and then no answer
  // comes (nor a new `data`, when nothing changed). The events still unanswered are sent again after a
  // wait that doubles each time; the server hands each numbered event on once, so a repeat is harmless.
  scheduleResend() {
    clearTimeout(this.resendTimer);
    if (!this.pending.length) return;
    this.resendWait = Math.min(8000, (this.resendWait || 500) * 2);
    this.resendTimer = setTimeout(() => {
      if (this.pending.length && this.canvas.isConnected && this.send) this.sendPending();
    }, this.resendWait);
  }

  // ------------------------------------------------------------------ geometry

  // display pixels per frame pixel as the canvas is shown now (a fitted canvas may be shrunk by CSS)
  shownScale() {
    const rect = this.canvas.getBoundingClientRect();
    return rect.width > 0 ? rect.width / this.data.size[0] : this.data.scale;
  }

  framePoint(e) {
    const rect = this.canvas.getBoundingClientRect();
    const [w, h] = this.data.size;
    const x = ((e.clientX - rect.left) / rect.width) * w;
    const y = ((e.clientY - rect.top) / rect.height) * h;
    return [Math.min(Math.max(x, 0), w - 0.01), Math.min(Math.max(y, 0), h - 0.01)];
  }

  nearest(x, y) {
    const radius = this.data.pick / this.shownScale();
    let best = null;
    let bestD = radius;
    this.points.forEach(([px, py, v], i) => {
      const d = Math.hypot(px - x, py - y);
      if (v === 2 && d <= bestD) {
        best = i;
        bestD = d;
      }
    });
    return best;
  }

  // ------------------------------------------------------------------ the pointer

  onDown(e) {
    if (e.button !== 0 || !this.data) return;
    const [x, y] = this.framePoint(e);
    const hit = this.nearest(x, y);
    if (hit === null) {
      this.emit({ kind: "click", x, y }); // nothing to drag here: the click counts at once
      return;
    }
    this.drag = { part: hit, startX: e.clientX, startY: e.clientY, x, y, moved: false };
    this.canvas.setPointerCapture(e.pointerId);
  }

  onMove(e) {
    if (!this.data) return;
    this.hover = this.framePoint(e);
    const d = this.drag;
    if (d) {
      if (!d.moved && Math.hypot(e.clientX - d.startX, e.clientY - d.startY) >= DRAG_PX) d.moved = true;
      if (d.moved) {
        d.at = this.hover;
        this.points[d.part] = [d.at[0], d.at[1], 2];
      }
    }
    this.draw();
  }

  onUp(e) {
    const d = this.drag;
    if (!d) return;
    this.drag = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    if (d.moved) {
      const [x, y] = this.framePoint(e);
      this.rebuild(); // the server's points again, then the move on top of them as an event
      this.emit({ kind: "move", part: d.part, x, y });
    } else {
      this.emit({ kind: "click", x: d.x, y: d.y }); // pressed and released on a point: a click there
    }
  }

  onCancel() {
    if (!this.drag) return;
    this.drag = null;
    this.rebuild();
    this.draw();
  }

  // ------------------------------------------------------------------ drawing

  resize() {
    const { size, scale, fit } = this.data;
    const cssW = Math.max(1, Math.round(size[0] * scale));
    const cssH = Math.max(1, Math.round(size[1] * scale));
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(cssW * dpr);
    const h = Math.round(cssH * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.canvas.style.width = `${cssW}px`;
    this.canvas.classList.toggle("fit", Boolean(fit));
    this.cssW = cssW;
    this.cssH = cssH;
    this.dpr = dpr;
  }

  draw() {
    if (!this.data) return;
    const { ctx, cssW, cssH } = this;
    const { scale, colors, radius } = this.data;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.imageSmoothingEnabled = false; // frame pixels stay sharp squares, for precise clicks
    if (this.image) ctx.drawImage(this.image, 0, 0, cssW, cssH);
    else {
      ctx.fillStyle = "#808080";
      ctx.fillRect(0, 0, cssW, cssH);
    }
    const pts = this.points;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = Math.max(1, Math.round(radius / 2));
    for (const [a, b] of this.data.skeleton) {
      if (pts[a] && pts[b] && pts[a][2] === 2 && pts[b][2] === 2) {
        ctx.beginPath();
        ctx.moveTo(pts[a][0] * scale, pts[a][1] * scale);
        ctx.lineTo(pts[b][0] * scale, pts[b][1] * scale);
        ctx.stroke();
      }
    }
    this.drawSuggestions();
    pts.forEach(([x, y, v], i) => {
      if (v !== 2) return;
      const cx = x * scale;
      const cy = y * scale;
      if (i === this.selected) ring(ctx, cx, cy, radius + 2, "#fff", 2);
      ctx.beginPath();
      ctx.arc(cx, cy, radius, 0, 2 * Math.PI);
      ctx.fillStyle = rgb(colors[i]);
      ctx.fill();
      ctx.lineWidth = 1;
      ctx.strokeStyle = "#000";
      ctx.stroke();
    });
    this.drawTag();
    this.drawCursor();
  }

  // a detector's suggestion: a hollow ring in its part's colour with its confidence (a label is a dot);
  // thin when the detector was unsure; none where the part is labeled already
  drawSuggestions() {
    const sug = this.data.suggestion;
    if (!sug) return;
    const { ctx } = this;
    const { scale, colors, radius } = this.data;
    const r = radius + 1;
    ctx.font = `${Math.max(9, Math.round(radius * 2.2))}px sans-serif`;
    ctx.textBaseline = "top";
    sug.points.forEach(([x, y, v], i) => {
      if (v === 0 || this.points[i][2] !== 0) return;
      const cx = x * scale;
      const cy = y * scale;
      ring(ctx, cx, cy, r + 1, "#000", 1);
      ring(ctx, cx, cy, r, rgb(colors[i]), v === 2 ? Math.max(2, Math.round(radius / 2)) : 1);
      label(ctx, sug.confidence[i].toFixed(2), cx + r + 2, cy - r, rgb(colors[i]));
    });
  }

  // the part the next click places, named in its colour in the top-left corner, and the hidden parts
  drawTag() {
    const { ctx, cssH } = this;
    const { names, colors, mode, hidden } = this.data;
    const lines = [`${mode}: ${names[this.selected]}`];
    if (hidden.length) lines.push(`hidden: ${hidden.join(", ")}`);
    const size = Math.max(10, Math.floor(cssH / 40));
    ctx.font = `${size}px sans-serif`;
    ctx.textBaseline = "top";
    const width = Math.max(...lines.map((t) => ctx.measureText(t).width));
    const color = colors[this.selected];
    ctx.fillStyle = rgb(color);
    ctx.fillRect(0, 0, width + 6, lines.length * (size + 2) + 4);
    ctx.fillStyle = ink(color);
    lines.forEach((t, k) => ctx.fillText(t, 3, 2 + k * (size + 2)));
  }

  // under the pointer: the selected part's name beside a ring cursor in its colour; over a point, the
  // part a drag would move
  drawCursor() {
    const { names, colors, scale } = this.data;
    const over = this.drag ? this.drag.part : this.hover ? this.nearest(...this.hover) : null;
    const color = colors[this.selected];
    this.canvas.style.cursor = this.drag?.moved
      ? "grabbing"
      : over !== null
        ? "grab"
        : `url("${ringCursor(color)}") 12 12, crosshair`;
    if (!this.hover) return;
    const { ctx } = this;
    const [x, y] = this.hover;
    const text = over !== null ? `move ${names[over]}` : names[this.selected];
    ctx.font = "13px sans-serif";
    ctx.textBaseline = "top";
    label(ctx, text, x * scale + 14, y * scale + 10, rgb(over !== null ? colors[over] : color));
  }
}

function rgb([r, g, b]) {
  return `rgb(${r},${g},${b})`;
}

// dark text on light parts, light on dark (as the part buttons are filled)
function ink([r, g, b]) {
  return r + g + b > 380 ? "#000" : "#fff";
}

function ring(ctx, cx, cy, r, color, width) {
  ctx.beginPath();
  ctx.arc(cx, cy, r, 0, 2 * Math.PI);
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.stroke();
}

function label(ctx, text, x, y, color) {
  ctx.lineWidth = 3;
  ctx.strokeStyle = "#000";
  ctx.strokeText(text, x, y);
  ctx.fillStyle = color;
  ctx.fillText(text, x, y);
}

// a ring with a centre dot in the part's colour, hot spot at the centre
function ringCursor([r, g, b]) {
  const c = `rgb(${r},${g},${b})`;
  const svg =
    "<svg xmlns='http://www.w3.org/2000/svg' width='24' height='24'>" +
    `<circle cx='12' cy='12' r='8' fill='none' stroke='${c}' stroke-width='3'/>` +
    "<circle cx='12' cy='12' r='8' fill='none' stroke='black' stroke-width='1'/>" +
    `<circle cx='12' cy='12' r='1.5' fill='${c}'/></svg>`;
  return `data:image/svg+xml;utf8,${svg}`;
}
