// Small DOM helpers: elements from plain data (never from HTML strings), JSON highlighting.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) { el.replaceChildren(); append(el, children); return el; }

export function problemBox(error) {
  const p = error.problem || {};
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, p.title || 'Error'), ` (${error.status || '?'}): `, p.detail || error.message,
    p.actualRevision !== undefined ? h('div', {}, `The stream's actual revision is ${p.actualRevision}.`) : null);
}

// JSON pretty-printed with spans per token kind.
export function jsonView(value) {
  const pre = h('pre', { class: 'json' });
  const text = JSON.stringify(value, null, 2);
  if (text === undefined) { pre.textContent = 'undefined'; return pre; }
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const m of text.matchAll(token)) {
    pre.append(text.slice(last, m.index));
    if (m[1]) {
      pre.append(h('span', { class: m[2] ? 'j-key' : 'j-str' }, m[1]));
      if (m[2]) pre.append(m[2]);
    } else if (m[3]) pre.append(h('span', { class: 'j-lit' }, m[3]));
    else pre.append(h('span', { class: 'j-num' }, m[4]));
    last = m.index + m[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

export function base64ToHex(b64, max = 4096) {
  const binary = atob(b64);
  const out = [];
  for (let i = 0; i < Math.min(binary.length, max); i++) {
    out.push(binary.charCodeAt(i).toString(16).padStart(2, '0'));
    if (i % 16 === 15) out.push('\n'); else out.push(' ');
  }
  if (binary.length > max) out.push(`… (${binary.length} bytes)`);
  return out.join('');
}

export function fmt(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function confirmNaming(what, name) {
  const typed = prompt(`${what}\n\nType the stream's name (${name}) to confirm:`);
  return typed === name;
}
