// A hand-drawn SVG line chart of the last N samples.
const NS = 'http://www.w3.org/2000/svg';

export class Chart {
  constructor(label, capacity = 60) {
    this.capacity = capacity;
    this.values = [];
    this.svg = document.createElementNS(NS, 'svg');
    this.svg.setAttribute('class', 'chart');
    this.svg.setAttribute('viewBox', `0 0 ${capacity - 1} 100`);
    this.svg.setAttribute('preserveAspectRatio', 'none');
    this.svg.setAttribute('role', 'img');
    this.svg.setAttribute('aria-label', label);
    const base = document.createElementNS(NS, 'line');
    base.setAttribute('x1', 0); base.setAttribute('x2', capacity); base.setAttribute('y1', 99); base.setAttribute('y2', 99);
    this.line = document.createElementNS(NS, 'polyline');
    this.svg.append(base, this.line);
  }

  push(value) {
    this.values.push(Number.isFinite(value) ? value : 0);
    if (this.values.length > this.capacity) this.values.shift();
    const max = Math.max(1e-9, ...this.values);
    const offset = this.capacity - this.values.length;
    const points = this.values.map((v, i) => `${i + offset},${(98 - (v / max) * 94).toFixed(1)}`);
    this.line.setAttribute('points', points.join(' '));
  }
}
