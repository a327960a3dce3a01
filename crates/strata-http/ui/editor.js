// A code editor without a library: a textarea whose own text is transparent, over a <pre>
// that shows the same text highlighted token by token. Typing, selection, undo, the
// clipboard and accessibility stay the browser's own textarea; the <pre> is redrawn from
// the textarea's value on every input (aria-hidden: screen readers read the textarea).
//
// The tokenizer is one regular expression for JavaScript (projection queries) that also
// covers JSON (connector definitions): comments, strings (a string followed by `:` is a
// key), numbers, keywords and literals, and names called as functions. It never has to be
// right about the whole language: an unterminated string or comment runs to the end of
// the line, everything else is plain text, and the text shown is always exactly the
// textarea's (only its colours can be off).
import { h } from './view.js';

const KEYWORDS = new Set(['break', 'case', 'catch', 'const', 'continue', 'default', 'delete', 'do', 'else',
  'for', 'function', 'if', 'in', 'instanceof', 'let', 'new', 'of', 'return', 'switch', 'this', 'throw',
  'try', 'typeof', 'var', 'void', 'while', 'true', 'false', 'null', 'undefined']);

// 1 line comment, 2 block comment (or its unterminated rest), 3 string (or an unterminated
// one up to the end of the line), 4 the colon after a string, 5 number, 6 name, 7 the `(`
// (a call) or `:` (an object key, as `$init:`; a ternary's `b :` is coloured so too) after it.
const TOKEN = new RegExp([
  '(\\/\\/[^\\n]*)',
  '(\\/\\*[\\s\\S]*?(?:\\*\\/|$))',
  '("(?:\\\\.|[^"\\\\\\n])*"?|\'(?:\\\\.|[^\'\\\\\\n])*\'?|`(?:\\\\[\\s\\S]|[^`\\\\])*`?)(\\s*:)?',
  '(-?\\b\\d+(?:\\.\\d+)?(?:[eE][+-]?\\d+)?\\b)',
  '([A-Za-z_$][\\w$]*)(\\s*\\(|\\s*:)?',
].join('|'), 'g');

// The highlighted nodes of `text`: plain strings and spans of classes j-com, j-str, j-key,
// j-num, j-lit (keywords and literals), j-fn (calls): the JSON view's colours, plus comments
// and calls.
export function highlight(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    const [whole, line, block, str, colon, num, name, after] = m;
    if (line !== undefined || block !== undefined) out.push(h('span', { class: 'j-com' }, whole));
    else if (str !== undefined) {
      out.push(h('span', { class: colon ? 'j-key' : 'j-str' }, str));
      if (colon) out.push(colon);
    } else if (num !== undefined) out.push(h('span', { class: 'j-num' }, num));
    else if (KEYWORDS.has(name)) { out.push(h('span', { class: 'j-lit' }, name)); if (after) out.push(after); }
    else if (after) out.push(h('span', { class: after.endsWith('(') ? 'j-fn' : 'j-key' }, name), after);
    else out.push(name);
    last = m.index + whole.length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

// A highlighted textarea named `name` holding `text`. Tab indents two spaces (Escape then
// Tab leaves the editor, for the keyboard). `label` is its accessible name.
export function codeEditor(name, text, { label, rows = 12, id } = {}) {
  const helpId = `${name}-editor-help`;
  const shown = h('pre', { class: 'code-hl', 'aria-hidden': 'true' });
  let escaped = false;
  const area = h('textarea', {
    name, id, class: 'code', rows, spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off',
    'aria-label': label, 'aria-describedby': helpId,
    onkeydown: (e) => {
      if (e.key === 'Escape') { escaped = true; return; }
      if (e.key === 'Tab' && !escaped && !e.shiftKey) {
        e.preventDefault();
        area.setRangeText('  ', area.selectionStart, area.selectionEnd, 'end');
        redraw();
      }
      escaped = false;
    },
    oninput: () => redraw(),
  }, text);
  // A trailing newline needs a character after it in the <pre> to take up its line.
  // The textarea grows with its text (no scroll bar of its own, so both wrap alike).
  function redraw() {
    shown.replaceChildren(...highlight(area.value), '\n ');
    fit();
  }
  function fit() {
    if (!area.isConnected) return;
    area.style.height = 'auto';
    area.style.height = `${area.scrollHeight + 2}px`;
  }
  // Playwright's fill() and scripts set .value without an input event: watch for it too.
  const descriptor = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value');
  Object.defineProperty(area, 'value', {
    get() { return descriptor.get.call(this); },
    set(v) { descriptor.set.call(this, v); redraw(); },
  });
  redraw();
  // Once on the page, and whenever its width changes, the height follows the wrapped text
  // (in the next frame, so the observer never sees its own change).
  let width = 0;
  new ResizeObserver(([entry]) => {
    if (entry.contentRect.width === width) return;
    width = entry.contentRect.width;
    requestAnimationFrame(fit);
  }).observe(area);
  return h('span', { class: 'editor-wrap' },
    h('span', { class: 'editor' }, shown, area),
    h('small', { id: helpId, class: 'muted' }, 'Tab indents; press Escape then Tab to leave the editor.'));
}
