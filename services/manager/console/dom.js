// Small DOM helpers: elements built from data with textContent only (nothing the API or an
// engine says is ever parsed as HTML), badges, sizes, and a poller that stops with its view.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) element.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const badge = value => h("span", { class: `badge ${value || ""}` }, value || "-");

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "-";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function table(columns, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, columns.map(c => h("th", {}, c)))), h("tbody", {}, rows));
}

// One view at a time: the router stops the previous view's timers when it draws the next.
let timers = [];
export function every(ms, fn) {
  fn();
  timers.push(setInterval(fn, ms));
}
export function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}
