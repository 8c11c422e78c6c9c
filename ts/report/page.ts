/**
 * Self-contained HTML pages: plots are Vega-Lite specs rendered to static SVG on the server (vega's headless View,
 * no canvas, no browser), styles and the table script are inlined, nothing is fetched when the page opens. Used by
 * the run report (ts/report/run.ts) and the utility benchmark's report (bench/utility/html.ts).
 */

/** A Vega-Lite spec (kept loose: vega-lite's own types pull in vega's whole typing). */
export type VegaLiteSpec = Record<string, unknown>;

const FONT = "DejaVu Sans, Helvetica, Arial, sans-serif";

/** The categorical colours of every plot (Tableau 10, vega's default), so a method keeps its colour across pages. */
export const PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"];

interface VegaModule {
  parse(spec: unknown, config?: unknown): unknown;
  View: new (runtime: unknown, opts: { renderer: string }) => { toSVG(): Promise<string>; finalize(): void };
}
interface VegaLiteModule {
  compile(spec: unknown): { spec: unknown };
}

let modules: { vega: VegaModule; vl: VegaLiteModule } | null = null;
function vegaModules(): { vega: VegaModule; vl: VegaLiteModule } {
  // loaded on first use: `gradmm synth` without a report never pays for them
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  modules ??= { vega: require("vega") as VegaModule, vl: require("vega-lite") as VegaLiteModule };
  return modules;
}

/** Renders a Vega-Lite spec to an SVG string (deterministic: no timers, no randomness, no network). */
export async function vegaLiteSvg(spec: VegaLiteSpec): Promise<string> {
  const { vega, vl } = vegaModules();
  const full = {
    background: "white",
    ...spec,
    config: { font: FONT, axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11 }, range: { category: PALETTE }, ...(spec.config as object | undefined) },
  };
  const compiled = vl.compile(full).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export function esc(s: unknown): string {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A plot as a figure with a caption; `name` becomes data-plot (the browser test checks every plot has marks). */
export async function figure(name: string, caption: string, spec: VegaLiteSpec): Promise<string> {
  const svg = await vegaLiteSvg(spec);
  return `<figure class="plot" data-plot="${esc(name)}">${svg}<figcaption>${caption}</figcaption></figure>`;
}

/** A number for a table cell: fixed digits, or an en dash for null/NaN. */
export function fmt(x: unknown, digits = 3): string {
  if (typeof x !== "number" || !Number.isFinite(x)) return "–";
  if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 10 ** -digits)) return x.toExponential(2);
  return x.toFixed(digits);
}

export interface Column {
  title: string;
  /** num: sorted as numbers (the cell's data-v), text: sorted as text. */
  type?: "num" | "text";
  className?: string;
}

/** A key–value table. */
export function kvTable(rows: [string, unknown][], className = "kv"): string {
  return `<table class="${className}"><tbody>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${typeof v === "string" ? esc(v) : esc(JSON.stringify(v))}</td></tr>`).join("")}</tbody></table>`;
}

/**
 * A data table; `sortable` makes its headers sort on click (numbers by value), `search` adds a text box and
 * `filterColumn` a select over one column's values. Cells are { text, v? } (v: the value to sort by).
 */
export function dataTable(
  id: string,
  columns: Column[],
  rows: { text: string; v?: number | string; html?: boolean }[][],
  o: { sortable?: boolean; search?: boolean; filterColumn?: number; caption?: string } = {},
): string {
  const controls: string[] = [];
  if (o.search) controls.push(`<input type="search" class="table-search" data-table="${esc(id)}" placeholder="search ${rows.length} rows…" aria-label="search the table">`);
  if (o.filterColumn !== undefined) {
    const values = [...new Set(rows.map((r) => r[o.filterColumn!].text))].sort();
    controls.push(
      `<select class="table-filter" data-table="${esc(id)}" data-col="${o.filterColumn}" aria-label="${esc(columns[o.filterColumn].title)}"><option value="">every ${esc(columns[o.filterColumn].title)}</option>${values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("")}</select>`,
    );
  }
  if (controls.length) controls.push(`<span class="table-count" data-table="${esc(id)}">${rows.length} of ${rows.length} rows</span>`);
  const head = columns.map((c, i) => `<th data-col="${i}" data-type="${c.type ?? "text"}"${c.className ? ` class="${c.className}"` : ""}>${esc(c.title)}</th>`).join("");
  const body = rows
    .map(
      (r) =>
        `<tr>${r
          .map((cell, i) => {
            const cls = columns[i].className ? ` class="${columns[i].className}"` : "";
            const v = cell.v !== undefined ? ` data-v="${esc(cell.v)}"` : "";
            return `<td${cls}${v}>${cell.html ? cell.text : esc(cell.text)}</td>`;
          })
          .join("")}</tr>`,
    )
    .join("\n");
  return `${controls.length ? `<div class="table-controls">${controls.join(" ")}</div>` : ""}<div class="table-wrap"><table id="${esc(id)}" class="data${o.sortable ? " sortable" : ""}">${o.caption ? `<caption>${esc(o.caption)}</caption>` : ""}<thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

const STYLE = `
:root { color-scheme: light; }
body { font-family: ${FONT}; margin: 0 auto; max-width: 1200px; padding: 1.5rem 2rem 4rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.sub { color: #666; margin-top: 0; }
.note { color: #555; font-size: .92rem; max-width: 80ch; }
.warn { background: #fff6e0; border-left: 4px solid #f0b400; padding: .5rem .8rem; }
nav a { margin-right: 1rem; }
figure.plot { display: inline-block; margin: .5rem 1.5rem 1rem 0; vertical-align: top; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { font-size: .88rem; color: #555; max-width: 70ch; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { max-width: 60ch; white-space: pre-wrap; word-break: break-word; }
table.kv th { font-weight: 600; color: #444; white-space: nowrap; }
table.kv td { font-family: DejaVu Sans Mono, monospace; font-size: .85rem; word-break: break-all; }
table.sortable th { cursor: pointer; user-select: none; background: #f6f6f6; position: sticky; top: 0; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; } table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
.table-wrap { max-height: 40rem; overflow: auto; border: 1px solid #e4e4e4; }
.table-controls { margin: .6rem 0; } .table-controls input { width: 22rem; padding: .25rem; } .table-count { color: #666; margin-left: .6rem; }
tr.kept td:first-child { border-left: 3px solid #54a24b; } tr.rejected td:first-child { border-left: 3px solid #e45756; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; } .card { border: 1px solid #ddd; border-radius: 6px; padding: .5rem .9rem; min-width: 9rem; }
.card b { display: block; font-size: 1.3rem; } .card span { color: #666; font-size: .85rem; }
pre { background: #f7f7f7; padding: .8rem; overflow: auto; font-size: .8rem; max-height: 30rem; }
`;

/** Click-to-sort headers, the search box and the column select; no dependencies, runs from file://. */
const SCRIPT = `
(function () {
  function cellValue(td, type) {
    var v = td.getAttribute("data-v"); if (v === null) v = td.textContent;
    if (type === "num") { var x = parseFloat(v); return isNaN(x) ? Infinity : x; }
    return String(v).toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th) {
      th.addEventListener("click", function () {
        var col = +th.getAttribute("data-col"), type = th.getAttribute("data-type");
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a.cells[col], type), y = cellValue(b.cells[col], type);
          return x < y ? -dir : x > y ? dir : 0;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  function apply(id) {
    var table = document.getElementById(id); if (!table) return;
    var q = document.querySelector('.table-search[data-table="' + id + '"]');
    var sel = document.querySelector('.table-filter[data-table="' + id + '"]');
    var text = q ? q.value.trim().toLowerCase() : "", want = sel ? sel.value : "", col = sel ? +sel.getAttribute("data-col") : -1;
    var shown = 0, rows = table.tBodies[0].rows;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var ok = (!text || r.textContent.toLowerCase().indexOf(text) >= 0) && (!want || r.cells[col].textContent === want);
      r.hidden = !ok; if (ok) shown++;
    }
    var count = document.querySelector('.table-count[data-table="' + id + '"]');
    if (count) count.textContent = shown + " of " + rows.length + " rows";
  }
  document.querySelectorAll(".table-search, .table-filter").forEach(function (el) {
    el.addEventListener("input", function () { apply(el.getAttribute("data-table")); });
    el.addEventListener("change", function () { apply(el.getAttribute("data-table")); });
  });
})();
`;

/** The whole page. Only inline styles and script; a Content-Security-Policy forbids the page any fetch at all. */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
<script>${SCRIPT}</script>
</body>
</html>
`;
}
