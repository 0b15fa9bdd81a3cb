// The demo page's behaviour (index.html). Why this file exists: it connects the page's
// controls to the service through the client of risksim.js, and draws what comes back: the
// job's status and progress as its events arrive (over WebSocket or long polling, whichever
// the client manages), every event in the event log, and the result as loss exceedance
// curves (inline SVG, drawn here, no chart library) and a table of quantiles, TVaR and tail
// contributions. Plain ES module, no build step; docs/api.md is the contract it reads.

import { RisksimClient, RisksimError } from "./risksim.js";

// examples/enterprise.json with a third risk, and enough trials for the progress to be seen.
const EXAMPLE_REQUEST = `{
  "name": "Enterprise cyber risk 2027",
  "trials": 5000000,
  "seed": 42,
  "quantiles": [0.5, 0.9, 0.95, 0.99, 0.995, 0.999],
  "root": {
    "id": "enterprise", "name": "Enterprise", "type": "portfolio",
    "children": [
      { "id": "ransomware", "name": "Ransomware", "type": "leaf",
        "frequency": { "type": "bernoulli", "p": 0.2 },
        "severity":  { "type": "lognormal", "lower": 500000, "upper": 8000000, "ci": 0.90 } },
      { "id": "outage", "name": "Cloud outage", "type": "leaf",
        "frequency": { "type": "poisson", "lambda": 1.5 },
        "severity":  { "type": "metalog", "percentiles": [0.1, 0.5, 0.9],
                       "quantiles": [20000, 90000, 600000], "lower": 0 },
        "controls":  [ { "type": "deductible", "amount": 25000 } ] },
      { "id": "breach", "name": "Customer data breach", "type": "leaf",
        "frequency": { "type": "bernoulli", "p": 0.05 },
        "severity":  { "type": "pert", "min": 250000, "mode": 1500000, "max": 20000000 },
        "controls":  [ { "type": "insurance", "deductible": 1000000, "limit": 10000000 } ] }
    ]
  }
}
`;

const TRANSPORTS = ["auto", "websocket", "polling"];
const SVG_NS = "http://www.w3.org/2000/svg";
// The root's curve first (dark), then its children (Okabe-Ito colours, safe for colour blindness).
const COLORS = ["#1f2933", "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"];
const CHART_HEIGHT = 340;
const CHART_MARGIN = { top: 12, right: 20, bottom: 46, left: 58 };
// The least room, in pixels, for one label of the loss axis (labels are thinned out below it).
const LABEL_WIDTH = 44;

const byId = (id) => document.getElementById(id);
const ui = {
  request: byId("request"),
  runSync: byId("run-sync"),
  runAsync: byId("run-async"),
  cancel: byId("cancel"),
  reset: byId("reset"),
  status: byId("status"),
  connection: byId("connection"),
  jobId: byId("job-id"),
  progress: byId("progress"),
  progressText: byId("progress-text"),
  eventLog: byId("event-log"),
  eventCount: byId("event-count"),
  lec: byId("lec"),
  results: byId("results"),
  errorPanel: byId("error-panel"),
  errorsDetail: byId("errors-detail"),
  errors: byId("errors"),
};

const options = pageOptions(new URLSearchParams(location.search));
const client = new RisksimClient({ token: options.token });
const meter = rateMeter();
const page = { watcher: null, jobId: null, result: null, chartWidth: 0 };

// --------------------------------------------------------------------------------------------
// Formatting

const moneyFormat = new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 3 });
const countFormat = new Intl.NumberFormat("en");
const shareFormat = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1 });

function money(value) {
  return value == null ? "—" : moneyFormat.format(value);
}

function share(value) {
  return value == null ? "—" : shareFormat.format(value);
}

function duration(seconds) {
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - 60 * minutes)} s`;
}

// --------------------------------------------------------------------------------------------
// DOM helpers

// An element of namespace ns (null: HTML) with attributes and children (nodes or strings).
function make(ns, tag, attrs = {}, children = []) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value != null) node.setAttribute(name, String(value));
  }
  node.append(...children);
  return node;
}

const html = (tag, attrs, ...children) => make(null, tag, attrs, children);
const svg = (tag, attrs, ...children) => make(SVG_NS, tag, attrs, children);

// --------------------------------------------------------------------------------------------
// The page's options and state

function pageOptions(query) {
  const transport = query.get("transport") || "auto";
  return {
    job: query.get("job"),
    token: query.get("token"),
    transport: TRANSPORTS.includes(transport) ? transport : "auto",
    badTransport: TRANSPORTS.includes(transport) ? null : transport,
  };
}

// The page's own URL following job id (so that a reload follows the job again).
function urlForJob(id) {
  const url = new URL(location.href);
  url.searchParams.set("job", id);
  return url;
}

// Trials per second from the timestamps of the events of one run of a job (a run that starts
// again from 0 trials, after its worker died, starts a new measurement).
function rateMeter() {
  let first = null;
  let last = null;
  return {
    reset() {
      first = last = null;
    },
    add(ev) {
      const t = Date.parse(ev.ts);
      if (!Number.isFinite(t) || typeof ev.trialsDone !== "number") return null;
      if (!first || ev.trialsDone < last.n) first = { t, n: ev.trialsDone };
      last = { t, n: ev.trialsDone };
      const seconds = (last.t - first.t) / 1000;
      return seconds > 0 && last.n > first.n ? (last.n - first.n) / seconds : null;
    },
  };
}

// --------------------------------------------------------------------------------------------
// Status, progress, event log

function showStatus(status) {
  ui.status.textContent = status;
  ui.status.dataset.status = status;
}

function showConnection(state) {
  ui.connection.textContent = state;
  ui.connection.dataset.state = state;
}

function progressText(ev, rate) {
  const parts = [`${(100 * ev.progress).toFixed(1)} %`];
  if (typeof ev.trials === "number") {
    parts.push(`${countFormat.format(ev.trialsDone)} of ${countFormat.format(ev.trials)} trials`);
  }
  if (ev.phase === "aggregating") parts.push("aggregating");
  if (rate) {
    parts.push(`${moneyFormat.format(rate)} trials/s`);
    if (ev.trials > ev.trialsDone) parts.push(`ETA ${duration((ev.trials - ev.trialsDone) / rate)}`);
  }
  return parts.join(" · ");
}

function showProgress(ev, measure) {
  ui.progress.value = ev.progress;
  ui.progressText.textContent = progressText(ev, measure ? meter.add(ev) : null);
}

function eventSummary(ev) {
  switch (ev.type) {
    case "status": return `${ev.status}, ${(100 * ev.progress).toFixed(1)} %`;
    case "progress": return `${(100 * ev.progress).toFixed(1)} % (${ev.phase})`;
    case "complete": return ev.result ? `mean loss ${money(ev.result.nodes[0].mean)}` : "";
    case "error": return `${ev.error.code}: ${ev.error.message}`;
    default: return "";
  }
}

// One entry per event. A job found ended without its last event (see risksim.js) gets an entry
// marked synthetic, without a seq.
function logEvent(ev) {
  const time = ev.ts ? ev.ts.slice(11, 23) : "";
  ui.eventLog.append(html("li", { "data-seq": ev.seq, "data-type": ev.type, "data-synthetic": ev.synthetic },
    html("span", { class: "seq" }, ev.seq === undefined ? "#—" : `#${ev.seq}`), " ",
    html("time", { datetime: ev.ts }, time), " ",
    html("strong", {}, ev.type), " ", eventSummary(ev)));
  ui.eventCount.textContent = String(ui.eventLog.childElementCount);
}

// --------------------------------------------------------------------------------------------
// Problems

// The problems of an error as [{where, code, text}]: each broken rule of a 422 with its JSON
// pointer, each bad query parameter, or the error as a whole.
function problemItems(error) {
  if (!(error instanceof RisksimError)) return [{ text: String(error?.message ?? error) }];
  const problem = error.problem;
  if (problem?.errors?.length) {
    return problem.errors.map((e) => ({
      where: e.pointer ?? (e.parameter ? `?${e.parameter}` : null),
      code: e.code,
      text: e.message ?? e.detail ?? "",
    }));
  }
  if (problem) {
    return [{ text: `${problem.title}${problem.detail ? `: ${problem.detail}` : ""} (HTTP ${error.status})` }];
  }
  if (error.status === 0) return [{ text: `The service cannot be reached (${error.message}).` }];
  return [{ text: `HTTP ${error.status}: ${error.message}` }];
}

// The summary above a list of broken rules ("2 rules of the request are broken.").
function problemDetail(error) {
  const problem = error instanceof RisksimError ? error.problem : null;
  if (!problem?.errors?.length) return "";
  return `${problem.detail || problem.title} (HTTP ${error.status})`;
}

function problemElement({ where, code, text }) {
  const item = html("li", { "data-pointer": where ?? undefined });
  if (where != null) item.append(html("code", { class: "pointer" }, where === "" ? "(the request)" : where), " ");
  item.append(html("span", { class: "message" }, text));
  if (code) item.append(" ", html("span", { class: "code" }, `(${code})`));
  return item;
}

function showProblems(items, detail = "") {
  ui.errors.replaceChildren(...items.map(problemElement));
  ui.errorsDetail.textContent = detail;
  ui.errorPanel.hidden = items.length === 0;
}

function showError(error) {
  showProblems(problemItems(error), problemDetail(error));
}

function clearProblems() {
  showProblems([]);
}

// --------------------------------------------------------------------------------------------
// The loss exceedance chart

// The curves of the root and its direct children: points with a loss above 0.
function chartSeries(result) {
  const root = result.nodes[0];
  return result.nodes
    .filter((node) => node === root || node.parent === root.id)
    .map((node, i) => ({
      name: node.name,
      color: COLORS[i % COLORS.length],
      points: (node.lec || []).filter((p) => p.loss > 0),
    }))
    .filter((series) => series.points.length > 0);
}

// The whole decades around the losses, for a log scale with a tick at each.
function lossDomain(series) {
  const losses = series.flatMap((s) => s.points.map((p) => p.loss));
  const low = Math.floor(Math.log10(Math.min(...losses)));
  const high = Math.max(low + 1, Math.ceil(Math.log10(Math.max(...losses))));
  return [low, high];
}

// 0 to a round percentage above the highest exceedance, and the step of its ticks.
function exceedanceDomain(series) {
  const top = 100 * Math.max(...series.flatMap((s) => s.points.map((p) => p.exceedance)));
  const step = top <= 10 ? 2 : top <= 25 ? 5 : top <= 60 ? 10 : 20;
  return { max: Math.min(100, Math.max(step, Math.ceil(top / step) * step)), step };
}

function range(from, to, step = 1) {
  const out = [];
  for (let v = from; v <= to + 1e-9; v += step) out.push(v);
  return out;
}

function chartScales(series, width) {
  const [low, high] = lossDomain(series);
  const { max, step } = exceedanceDomain(series);
  const left = CHART_MARGIN.left;
  const right = width - CHART_MARGIN.right;
  const top = CHART_MARGIN.top;
  const bottom = CHART_HEIGHT - CHART_MARGIN.bottom;
  return {
    x: (loss) => left + ((Math.log10(loss) - low) / (high - low)) * (right - left),
    y: (exceedance) => bottom - ((100 * exceedance) / max) * (bottom - top),
    xTicks: range(low, high).map((d) => 10 ** d),
    yTicks: range(0, max, step).map((pct) => pct / 100),
    box: { left, right, top, bottom },
  };
}

function stepPath(points, x, y) {
  return points
    .map((p, i) => (i === 0 ? `M${x(p.loss).toFixed(1)},${y(p.exceedance).toFixed(1)}`
      : `H${x(p.loss).toFixed(1)}V${y(p.exceedance).toFixed(1)}`))
    .join("");
}

function xAxis({ x, xTicks, box }) {
  const every = Math.ceil(LABEL_WIDTH / ((box.right - box.left) / Math.max(1, xTicks.length - 1)));
  return svg("g", { class: "axis x" },
    ...xTicks.map((loss, i) => svg("g", { transform: `translate(${x(loss).toFixed(1)},0)` },
      svg("line", { class: "grid", y1: box.top, y2: box.bottom }),
      i % every === 0 ? svg("text", { y: box.bottom + 16, "text-anchor": "middle" }, money(loss)) : "")),
    svg("text", { class: "title", x: (box.left + box.right) / 2, y: box.bottom + 38,
      "text-anchor": "middle" }, "Annual loss (log scale)"));
}

function yAxis({ y, yTicks, box }) {
  return svg("g", { class: "axis y" },
    ...yTicks.map((p) => svg("g", { transform: `translate(0,${y(p).toFixed(1)})` },
      svg("line", { class: "grid", x1: box.left, x2: box.right }),
      svg("text", { x: box.left - 6, dy: "0.32em", "text-anchor": "end" }, share(p)))),
    svg("text", { class: "title", transform: `translate(14,${(box.top + box.bottom) / 2}) rotate(-90)`,
      "text-anchor": "middle" }, "Chance of exceeding"));
}

function legend(series) {
  return html("ul", { class: "legend" },
    ...series.map((s) => html("li", {},
      html("span", { class: "swatch", style: `background:${s.color}`, "aria-hidden": "true" }),
      s.name)));
}

function renderChart(result) {
  const series = chartSeries(result);
  if (series.length === 0) {
    ui.lec.replaceChildren(html("p", { class: "hint" }, "No losses in any trial: nothing to draw."));
    return;
  }
  const width = Math.max(320, Math.round(ui.lec.clientWidth || 720));
  const scales = chartScales(series, width);
  const names = series.map((s) => s.name).join(", ");
  ui.lec.replaceChildren(
    svg("svg", { viewBox: `0 0 ${width} ${CHART_HEIGHT}`, width, height: CHART_HEIGHT,
      role: "img", "aria-labelledby": "lec-svg-title" },
      svg("title", { id: "lec-svg-title" },
        `Loss exceedance curves of ${names}: the chance that the annual loss exceeds each amount.`),
      yAxis(scales),
      xAxis(scales),
      ...series.map((s) => svg("path", { class: "curve", d: stepPath(s.points, scales.x, scales.y),
        stroke: s.color, "data-name": s.name }))),
    legend(series));
  page.chartWidth = width;
}

// --------------------------------------------------------------------------------------------
// The results table

const COLUMN_GROUPS = [
  { title: "Value at risk (quantile)", key: "quantiles", format: money },
  { title: "TVaR (mean beyond the quantile)", key: "tvar", format: money },
  { title: "Share of the parent's tail", key: "tailContribution", format: share },
];

function nodeDepths(nodes) {
  const depth = new Map();
  for (const node of nodes) depth.set(node.id, node.parent == null ? 0 : depth.get(node.parent) + 1);
  return depth;
}

function tableHead(levels) {
  return html("thead", {},
    html("tr", {},
      html("th", { scope: "col", rowspan: 2 }, "Node"),
      html("th", { scope: "col", rowspan: 2 }, "Mean"),
      ...COLUMN_GROUPS.map((g) => html("th", { scope: "colgroup", colspan: levels.length }, g.title))),
    html("tr", {},
      ...COLUMN_GROUPS.flatMap(() => levels.map((level) => html("th", { scope: "col" }, level)))));
}

function tableRow(node, depth, levels) {
  return html("tr", { "data-node": node.id },
    html("th", { scope: "row", style: `padding-left:${0.5 + 1.25 * depth}em`, title: node.id }, node.name),
    html("td", {}, money(node.mean)),
    ...COLUMN_GROUPS.flatMap((g) => levels.map((level) => html("td", {}, g.format(node[g.key]?.[level])))));
}

function renderTable(result) {
  const levels = Object.keys(result.nodes[0].quantiles);
  const depth = nodeDepths(result.nodes);
  const seconds = (result.durationMs / 1000).toFixed(2);
  ui.results.replaceChildren(
    html("caption", {},
      `${result.name}: ${countFormat.format(result.trials)} trials, seed ${result.seed}, ${seconds} s`),
    tableHead(levels),
    html("tbody", {}, ...result.nodes.map((node) => tableRow(node, depth.get(node.id), levels))));
}

function showResult(result) {
  page.result = result;
  renderChart(result);
  renderTable(result);
}

function clearResult() {
  page.result = null;
  ui.lec.replaceChildren();
  ui.results.replaceChildren();
}

// --------------------------------------------------------------------------------------------
// Jobs

function setFollowing(following) {
  ui.cancel.disabled = !following;
}

function showJob(id) {
  page.jobId = id;
  ui.jobId.textContent = id ?? "";
}

// Forgets the previous run: stops following its job and clears what was shown of it.
function startRun() {
  page.watcher?.stop();
  page.watcher = null;
  meter.reset();
  showJob(null);
  showStatus("");
  showConnection("");
  ui.progress.value = 0;
  ui.progressText.textContent = "";
  ui.eventLog.replaceChildren();
  ui.eventCount.textContent = "0";
  clearProblems();
  clearResult();
  setFollowing(false);
}

// The bar full, and what the run took (the engine's time) in place of the progress text.
function finishProgress(result) {
  ui.progress.value = 1;
  if (result) {
    ui.progressText.textContent =
      `${countFormat.format(result.trials)} trials in ${(result.durationMs / 1000).toFixed(2)} s`;
  }
}

const handlers = {
  status(msg, { snapshot = false } = {}) {
    if (!snapshot) logEvent(msg);
    if (msg.status !== "running") meter.reset();
    showStatus(msg.status);
    showProgress(msg, msg.status === "running");
  },
  progress(ev) {
    logEvent(ev);
    showProgress(ev, true);
  },
  complete(ev) {
    logEvent(ev);
    showStatus("completed");
    finishProgress(ev.result);
    if (ev.result) showResult(ev.result);
  },
  error(ev) {
    logEvent(ev);
    showStatus("failed");
    showProblems([{ code: ev.error.code, text: ev.error.message }], "The job failed.");
  },
  cancelled(ev) {
    logEvent(ev);
    showStatus("cancelled");
  },
  connection: showConnection,
  end() {
    setFollowing(false);
  },
};

function follow(id) {
  showJob(id);
  setFollowing(true);
  const watcher = client.watch(id, handlers, { transport: options.transport });
  page.watcher = watcher;
  watcher.done
    .catch((error) => {
      if (page.watcher === watcher) showError(error);
    })
    .finally(() => {
      if (page.watcher === watcher) setFollowing(false);
    });
}

// The editor's request, or null after showing why it is not JSON.
function editedRequest() {
  try {
    return JSON.parse(ui.request.value);
  } catch (e) {
    showProblems([{ text: `The request is not valid JSON: ${e.message}` }]);
    return null;
  }
}

// Runs action(request) with the run buttons disabled, showing any error it throws.
async function run(action) {
  startRun();
  const request = editedRequest();
  if (request === null) return;
  ui.runSync.disabled = ui.runAsync.disabled = true;
  try {
    await action(request);
  } catch (error) {
    showError(error);
  } finally {
    ui.runSync.disabled = ui.runAsync.disabled = false;
  }
}

async function runNow(request) {
  ui.progress.removeAttribute("value"); // indeterminate while the server runs it
  try {
    const result = await client.submit(request);
    showJob(result.id);
    showStatus(result.status);
    finishProgress(result);
    showResult(result);
  } finally {
    if (!ui.progress.hasAttribute("value")) ui.progress.value = 0;
  }
}

async function runAsJob(request) {
  const job = await client.submit(request, { async: true });
  history.replaceState(null, "", urlForJob(job.id));
  showStatus(job.status);
  follow(job.id);
}

async function cancelJob() {
  if (!page.jobId) return;
  try {
    await client.cancel(page.jobId);
  } catch (error) {
    showError(error);
  }
}

// Redraws the chart when its container's width changes (the page is responsive).
function redrawOnResize() {
  new ResizeObserver(() => {
    if (page.result && Math.round(ui.lec.clientWidth) !== page.chartWidth) renderChart(page.result);
  }).observe(ui.lec);
}

function start() {
  ui.request.value = EXAMPLE_REQUEST;
  ui.runSync.addEventListener("click", () => run(runNow));
  ui.runAsync.addEventListener("click", () => run(runAsJob));
  ui.cancel.addEventListener("click", cancelJob);
  ui.reset.addEventListener("click", () => {
    ui.request.value = EXAMPLE_REQUEST;
  });
  redrawOnResize();
  if (options.badTransport) {
    showProblems([{ where: "?transport", text: `"${options.badTransport}" is not one of ${TRANSPORTS.join(", ")}; using auto.` }]);
  }
  if (options.job) follow(options.job);
}

start();
