// One scenario of the demo page (web/) in headless Chromium, driven by playwright-core.
//
// Why this file exists: the page is the one client that runs in a browser, where the transport
// really is the browser's WebSocket and fetch through the web server. test_browser.py starts
// lighttpd or Apache with the responder and the bridge and runs this once per scenario:
//
//   node page.test.mjs SCENARIO BASE_URL ARTEFACT_DIR LABEL
//
// BASE_URL is the mount point (http://127.0.0.1:PORT/risksim). Scenarios: websocket, fallback,
// forced-polling, bridge-restart, validation, sync, cancel, follow (see README.md). Every line this prints on
// stdout is one JSON object: {"log": text}, {"artefact": path}, {"control": "restart-bridge"}
// (test_browser.py kills the bridge with SIGKILL, starts it again and answers with one line on
// stdin) and finally {"ok": true} or {"ok": false, "error": text}. It fails on any console error
// of the page's own code and any uncaught exception.
//
// Environment: RISKSIM_CHROMIUM (default /usr/bin/chromium), RISKSIM_TRIALS (the trials of the
// normal job, default 10,000,000), RISKSIM_LONG_TRIALS (the job the bridge restart happens
// during, default 20,000,000).

import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [scenario, base, artefactDir, label] = process.argv.slice(2);
const CHROMIUM = process.env.RISKSIM_CHROMIUM || "/usr/bin/chromium";
const TRIALS = Number(process.env.RISKSIM_TRIALS || 10_000_000);
const LONG_TRIALS = Number(process.env.RISKSIM_LONG_TRIALS || 20_000_000);
const JOB_TIMEOUT_MS = 120_000;
const FINAL = ["completed", "failed", "cancelled"];
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// --------------------------------------------------------------------------------------------
// Reporting

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function log(text) {
  emit({ log: `${label} ${scenario}: ${text}` });
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

function sameList(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// --------------------------------------------------------------------------------------------
// The service, directly (the reference the page is compared with)

async function api(path, init = {}) {
  const res = await fetch(base + path, init);
  const body = await res.json();
  check(res.ok, `${init.method || "GET"} ${path}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

// Every event of a finished job from the polling endpoint, as [{seq, type}].
async function polledEvents(id) {
  const events = [];
  let after = 0;
  for (;;) {
    const page = await api(`/simulations/${id}/events?after=${after}`);
    events.push(...page.events.map((e) => ({ seq: e.seq, type: e.type })));
    if (page.events.length === 0) return events;
    after = page.next;
  }
}

async function jobCount() {
  return (await api("/simulations?limit=1000")).jobs.length;
}

// --------------------------------------------------------------------------------------------
// The browser

// Records, from the first moment of every document, each change of the progress bar, the
// connection indicator and the status line, so that short-lived states are not missed.
function recorder() {
  window.__rec = { progress: [], connection: [], status: [] };
  const watch = (id, key, read, options) => {
    const node = document.getElementById(id);
    const push = () => {
      const list = window.__rec[key];
      const value = read(node);
      if (list[list.length - 1] !== value) list.push(value);
    };
    new MutationObserver(push).observe(node, options);
  };
  document.addEventListener("DOMContentLoaded", () => {
    const text = { childList: true, characterData: true, subtree: true };
    watch("progress", "progress", (n) => (n.hasAttribute("value") ? n.value : null),
      { attributes: true, attributeFilter: ["value"] });
    watch("connection", "connection", (n) => n.textContent, text);
    watch("status", "status", (n) => n.textContent, text);
  });
}

// Console errors the browser itself logs for a failed request (a 4xx answer of the API that the
// page expects, a WebSocket handshake that the web server or a killed bridge refuses) are not
// errors of the page; a page file that fails to load is caught by its response instead.
function isNetworkNoise(msg) {
  return /^(Failed to load resource|WebSocket connection to )/.test(msg.text());
}

function isPageFile(url) {
  const path = new URL(url).pathname;
  return path.startsWith("/risksim/") && !/^\/risksim\/(simulations|healthz|metrics)/.test(path);
}

async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await context.addInitScript(recorder);
  const problems = [];
  context.on("weberror", (e) => problems.push(`uncaught: ${e.error()?.stack || e.error()}`));
  context.on("response", (res) => {
    if (isPageFile(res.url()) && res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });
  context.on("console", (msg) => {
    if (msg.type() === "error" && !isNetworkNoise(msg)) problems.push(`console.error: ${msg.text()}`);
    else if (msg.type() === "error") log(`(browser) ${msg.text()}`);
  });
  return { browser, context, problems };
}

async function openPage(context, query = "") {
  const page = await context.newPage();
  const res = await page.goto(`${base}/${query}`, { waitUntil: "load" });
  check(res && res.ok(), `GET ${base}/${query}: HTTP ${res && res.status()}`);
  await page.waitForFunction(() => document.getElementById("request").value.length > 0);
  return page;
}

// --------------------------------------------------------------------------------------------
// The page

async function setRequest(page, edit) {
  const request = JSON.parse(await page.inputValue("#request"));
  edit(request);
  await page.fill("#request", JSON.stringify(request, null, 2));
}

async function submitJob(page, trials) {
  await setRequest(page, (r) => { r.trials = trials; });
  await page.click("#run-async");
  await page.waitForFunction(() => document.getElementById("job-id").textContent.length > 0,
    null, { timeout: 30_000 });
  return page.textContent("#job-id");
}

async function waitForEnd(page) {
  await page.waitForFunction((final) => final.includes(document.getElementById("status").textContent),
    FINAL, { timeout: JOB_TIMEOUT_MS, polling: 100 });
  // The status line changes with the final event; the chart follows in the same task, but
  // give the page a moment to settle before it is read.
  await page.waitForTimeout(100);
}

async function pageState(page) {
  return page.evaluate(() => ({
    status: document.getElementById("status").textContent,
    connection: document.getElementById("connection").textContent,
    events: [...document.querySelectorAll("#event-log li")].map((li) => ({
      seq: Number(li.dataset.seq), type: li.dataset.type })),
    curves: document.querySelectorAll("#lec svg path").length,
    rows: document.querySelectorAll("#results tbody tr").length,
    errors: [...document.querySelectorAll("#errors li")].map((li) => li.textContent),
    rec: window.__rec,
  }));
}

function increases(values) {
  let n = 0;
  for (let i = 1; i < values.length; i++) if (values[i] !== null && values[i] > values[i - 1]) n++;
  return n;
}

// The page's event log must be the job's events exactly: strictly increasing seqs (so no
// repeats) equal to the polling endpoint's, with the same types.
async function checkEventLog(state, id) {
  const seqs = state.events.map((e) => e.seq);
  for (let i = 1; i < seqs.length; i++) {
    check(seqs[i] > seqs[i - 1], `event log not strictly increasing at ${i}: ${seqs.join(",")}`);
  }
  const polled = await polledEvents(id);
  const show = (events) => events.map((e) => `${e.seq}:${e.type}`).join(" ");
  check(sameList(show(state.events).split(" "), show(polled).split(" ")),
    `event log differs from the polling endpoint\n  page:   ${show(state.events)}\n  polled: ${show(polled)}`);
  log(`${seqs.length} events, identical to the polling endpoint (seq ${seqs[0]}..${seqs.at(-1)})`);
}

async function checkCompleted(page, id, { transport, minIncreases = 2 }) {
  const state = await pageState(page);
  check(state.status === "completed", `#status is "${state.status}", not completed`);
  check(state.curves >= 2, `#lec has ${state.curves} SVG paths`);
  const nodes = (await api(`/simulations/${id}`)).result.nodes.length;
  check(state.rows === nodes, `#results has ${state.rows} rows for ${nodes} nodes`);
  const increased = increases(state.rec.progress);
  check(increased >= minIncreases,
    `the progress bar advanced ${increased} times: ${JSON.stringify(state.rec.progress)}`);
  if (transport) {
    const seen = state.rec.connection.filter((s) => s);
    check(seen.length > 0 && seen.every((s) => s === transport),
      `#connection was ${JSON.stringify(seen)}, not only "${transport}"`);
  }
  check(state.errors.length === 0, `#errors shows ${JSON.stringify(state.errors)}`);
  await checkEventLog(state, id);
  log(`completed; progress advanced ${increased} times; connection ${JSON.stringify(state.rec.connection)}`);
  return state;
}

async function screenshot(page, name) {
  mkdirSync(artefactDir, { recursive: true });
  const path = join(artefactDir, `${label}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  emit({ artefact: path });
}

// --------------------------------------------------------------------------------------------
// Scenarios

async function runOverTransport(context, { query = "", transport, shot }) {
  const page = await openPage(context, query);
  const id = await submitJob(page, TRIALS);
  log(`job ${id} submitted from the page`);
  await waitForEnd(page);
  await checkCompleted(page, id, { transport });
  check(new URL(page.url()).searchParams.get("job") === id, `the page's URL does not name the job: ${page.url()}`);
  if (shot) await screenshot(page, shot);
}

async function restartBridgeMidJob(context) {
  const page = await openPage(context);
  const id = await submitJob(page, LONG_TRIALS);
  await page.waitForFunction(() => window.__rec.connection.includes("websocket")
    && document.getElementById("progress").value > 0.05, null, { timeout: 60_000, polling: 50 });
  const before = (await pageState(page)).events.length;
  const job = await api(`/simulations/${id}`);
  check(job.status === "running", `the job is ${job.status} before the restart`);
  emit({ control: "restart-bridge" });
  const answer = await stdinLines.next();
  check(!answer.done && answer.value.trim() === "ok", `the harness answered ${JSON.stringify(answer.value)}`);
  const during = await api(`/simulations/${id}`);
  log(`bridge killed and restarted at ${before} events; job ${during.status} at ${(100 * during.progress).toFixed(0)} %`);
  check(during.status === "running", `the job had already ${during.status} when the bridge was back`);
  await waitForEnd(page);
  const state = await checkCompleted(page, id, { minIncreases: 1 });
  check(state.events.length > before + 1, "no event arrived after the restart");
}

async function validationErrors(context) {
  const page = await openPage(context);
  const jobs = await jobCount();
  // A probability above 1: a 422 naming the field by its JSON pointer; nothing is stored.
  await setRequest(page, (r) => { r.root.children[0].frequency.p = 1.5; });
  await page.click("#run-async");
  await page.waitForSelector("#errors li", { timeout: 30_000 });
  let state = await pageState(page);
  const pointer = "/root/children/0/frequency/p";
  check(state.errors.some((t) => t.includes(pointer) && t.length > pointer.length + 5),
    `#errors does not show ${pointer} with a message: ${JSON.stringify(state.errors)}`);
  check(await page.isVisible("#errors"), "#errors is not visible");
  check(state.events.length === 0 && state.status === "", `a job was followed: ${JSON.stringify(state)}`);
  check(await page.textContent("#job-id") === "", "the page shows a job id");
  check(await jobCount() === jobs, "a job was stored");
  log(`422 shown: ${JSON.stringify(state.errors)}`);
  await screenshot(page, "validation");
  // The synchronous endpoint refuses more than max_sync_trials, at /trials.
  await setRequest(page, (r) => { r.root.children[0].frequency.p = 0.2; r.trials = 5_000_000; });
  await page.click("#run-sync");
  await page.waitForFunction(() => document.querySelector("#errors li code")?.textContent === "/trials",
    null, { timeout: 30_000 });
  // Not JSON at all: said so on the page, nothing sent.
  await page.fill("#request", "{ not json");
  await page.click("#run-async");
  await page.waitForFunction(() => /not valid JSON/.test(document.getElementById("errors").textContent),
    null, { timeout: 10_000 });
  state = await pageState(page);
  check(await jobCount() === jobs, "a job was stored");
  log(`also shown: ${JSON.stringify(state.errors)}`);
}

// Run now: the result straight from the synchronous endpoint, no events.
async function runSynchronously(context) {
  const page = await openPage(context);
  await setRequest(page, (r) => { r.trials = 50_000; });
  await page.click("#run-sync");
  await page.waitForFunction(() => document.getElementById("status").textContent === "completed",
    null, { timeout: 60_000 });
  const state = await pageState(page);
  const id = await page.textContent("#job-id");
  const nodes = (await api(`/simulations/${id}`)).result.nodes.length;
  check(state.curves >= 2 && state.rows === nodes, `chart ${state.curves} paths, table ${state.rows} rows`);
  check(state.events.length === 0 && state.errors.length === 0, `events or errors: ${JSON.stringify(state)}`);
  check(await page.getAttribute("#progress", "value") === "1", "the progress bar is not full");
  log(`job ${id} run synchronously`);
}

// Cancel while the job runs: the page ends "cancelled", with the cancelled event last.
async function cancelRunning(context) {
  const page = await openPage(context);
  const id = await submitJob(page, LONG_TRIALS);
  await page.waitForFunction(() => document.getElementById("progress").value > 0.02, null,
    { timeout: 60_000, polling: 50 });
  check(await page.isEnabled("#cancel"), "#cancel is disabled while the job runs");
  await page.click("#cancel");
  await waitForEnd(page);
  const state = await pageState(page);
  check(state.status === "cancelled", `#status is "${state.status}", not cancelled`);
  check(state.events.at(-1)?.type === "cancelled", "the last event logged is not the cancelled event");
  check(!(await page.isEnabled("#cancel")), "#cancel is still enabled after the end");
  await checkEventLog(state, id);
}

// A job submitted elsewhere (as the run command does), then followed with ?job=ID.
async function followExisting(context) {
  const request = {
    name: "Followed from elsewhere", trials: TRIALS, seed: 7,
    root: { id: "r", type: "portfolio", children: [
      { id: "a", type: "leaf", frequency: { type: "poisson", lambda: 2 },
        severity: { type: "lognormal", lower: 1000, upper: 50000, ci: 0.9 } },
      { id: "b", type: "leaf", frequency: { type: "bernoulli", p: 0.1 },
        severity: { type: "uniform", min: 10000, max: 90000 } }] },
  };
  const job = await api("/simulations/async", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
  });
  const page = await openPage(context, `?job=${job.id}`);
  await waitForEnd(page);
  check(await page.textContent("#job-id") === job.id, "the page follows another job");
  await checkCompleted(page, job.id, { minIncreases: 0 });
}

const SCENARIOS = {
  websocket: (c) => runOverTransport(c, { transport: "websocket", shot: "finished" }),
  fallback: (c) => runOverTransport(c, { transport: "polling", shot: "fallback" }),
  "forced-polling": (c) => runOverTransport(c, { query: "?transport=polling", transport: "polling" }),
  "bridge-restart": restartBridgeMidJob,
  validation: validationErrors,
  cancel: cancelRunning,
  sync: runSynchronously,
  follow: followExisting,
};

async function main() {
  check(SCENARIOS[scenario], `unknown scenario "${scenario}" (${Object.keys(SCENARIOS).join(", ")})`);
  const { browser, context, problems } = await openBrowser();
  try {
    await SCENARIOS[scenario](context);
    check(problems.length === 0, `the page reported errors:\n  ${problems.join("\n  ")}`);
  } finally {
    await browser.close();
  }
}

main().then(
  () => {
    emit({ ok: true });
    process.exit(0);
  },
  (error) => {
    emit({ ok: false, error: error.stack || String(error) });
    process.exit(1);
  },
);
