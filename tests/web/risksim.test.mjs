/*
 * Unit tests of web/risksim.js: the HTTP methods and their errors, and the watch's cursor and
 * transport logic (exactly-once delivery across WebSocket/polling switches, reset, the bridge's
 * retry hint, final refusals, forced transports, offline and Retry-After, stop(), tokens).
 *
 * Why this file exists: the watch's promises (every event once, in order, whatever the
 * transport) depend on the order of answers, messages, closes and timers, which a real server
 * does not let a test choose. Run with `node --test tests/web/` (ctest: web_client_unit).
 */
import { test } from "node:test";
import assert from "node:assert/strict";

import { RisksimClient, RisksimError } from "../../web/risksim.js";
import { FakeTimers, fakeFetch, fakeWebSocket, flush } from "./fakes.mjs";

const BASE = "http://risk.test/risksim";
const ID = "2KD3BB766Z31HYEMXQB759A6RY";
const JOB_URL = `${BASE}/simulations/${ID}`;

/** A client on fakes; random() is 0.5, so a backoff of d is 0.75·d. */
function setup({ token = null, base = BASE, honourAbort = true, WebSocket } = {}) {
  const fetch = fakeFetch({ honourAbort });
  const ws = fakeWebSocket();
  const timers = new FakeTimers();
  const client = new RisksimClient({
    base, token, fetch, WebSocket: WebSocket ?? ws.WebSocket,
    setTimeout: timers.setTimeout, clearTimeout: timers.clearTimeout, random: () => 0.5,
  });
  return { client, fetch, ws, timers };
}

/** Handlers that log every call as [name, ...args]. */
function recorder() {
  const log = [];
  const handlers = {};
  for (const name of ["status", "progress", "complete", "error", "cancelled", "connection", "end"])
    handlers[name] = (...args) => log.push([name, ...args]);
  return {
    handlers,
    log,
    /** seqs of the events delivered (not the snapshots, not `end`), in delivery order */
    seqs: () => log.filter(([n, m, info]) => n !== "connection" && n !== "end" && !info?.snapshot).map(([, m]) => m.seq),
    states: () => log.filter(([n]) => n === "connection").map(([, s]) => s),
    names: () => log.map(([n]) => n),
  };
}

function ev(seq, type = "progress", extra = {}) {
  const fields = type === "progress" ? { progress: seq / 10, trialsDone: seq, trials: 10, phase: "sampling" } : {};
  return { seq, jobId: ID, type, ...fields, ts: "2026-11-22T04:46:44.691Z", ...extra };
}

function snapshot(seq, status = "running") {
  return { seq, jobId: ID, type: "status", status, progress: 0, trialsDone: 0, trials: 10, ts: "2026-11-22T04:46:45.000Z" };
}

function page(events, status = "running") {
  return { events, next: events.length ? events[events.length - 1].seq : 0, status };
}

/** "settled" or "pending" for a promise, after letting everything run. */
async function stateOf(promise) {
  let state = "pending";
  promise.then(() => (state = "settled"), () => (state = "settled"));
  await flush();
  return state;
}

/** Starts a watch and waits for its first socket (auto and websocket transports). */
async function watchWithSocket(ctx, handlers = {}, options = {}) {
  const watch = ctx.client.watch(ID, handlers, options);
  await flush();
  return { watch, socket: ctx.ws.sockets.at(-1) };
}

// ---- HTTP methods ------------------------------------------------------------------------------

test("submit posts the request synchronously and resolves to the result", async () => {
  const { client, fetch } = setup();
  const request = { trials: 1000, root: { id: "r", type: "leaf" } };
  const result = client.submit(request);
  const call = await fetch.next();
  assert.equal(call.method, "POST");
  assert.equal(call.url, `${BASE}/simulations`);
  assert.equal(call.headers["Content-Type"], "application/json");
  assert.deepEqual(call.body, request);
  call.reply(200, { id: ID, status: "completed", nodes: [] }, { Location: `/risksim/simulations/${ID}` });
  assert.deepEqual(await result, { id: ID, status: "completed", nodes: [] });
});

test("submit {async: true} posts to /simulations/async and resolves to the 202 job", async () => {
  const { client, fetch } = setup();
  const job = client.submit({ trials: 5 }, { async: true });
  const call = await fetch.next();
  assert.equal(call.url, `${BASE}/simulations/async`);
  call.reply(202, { id: ID, status: "queued", links: { self: `/risksim/simulations/${ID}` } });
  assert.equal((await job).status, "queued");
});

test("get, cancel and events use the job's URLs", async () => {
  const { client, fetch } = setup();
  const got = client.get(ID);
  let call = await fetch.next();
  assert.deepEqual([call.method, call.url, call.body], ["GET", JOB_URL, undefined]);
  call.reply(200, { id: ID, status: "running" });
  assert.equal((await got).status, "running");

  const cancelled = client.cancel(ID);
  call = await fetch.next();
  assert.deepEqual([call.method, call.url], ["DELETE", JOB_URL]);
  call.reply(202, { id: ID, status: "running", cancelRequested: true });
  assert.equal((await cancelled).cancelRequested, true);

  const events = client.events(ID, 7, 25);
  call = await fetch.next();
  assert.equal(call.url, `${JOB_URL}/events?after=7&wait=25`);
  call.reply(200, page([ev(9)]));
  assert.deepEqual((await events).events.map((e) => e.seq), [9]);

  client.events(ID);
  assert.equal((await fetch.next()).url, `${JOB_URL}/events?after=0&wait=0`);
});

test("a job id is percent-encoded in the path", async () => {
  const { client, fetch } = setup();
  client.get("a/b?c");
  assert.equal((await fetch.next()).url, `${BASE}/simulations/a%2Fb%3Fc`);
});

test("a 422 rejects with a RisksimError carrying the problem and its pointers", async () => {
  const { client, fetch } = setup();
  const result = client.submit({ trials: 0 });
  const problem = {
    type: "urn:risksim:problem:validation", title: "The request breaks the rules of the API", status: 422,
    detail: "1 rule of the request is broken.", instance: "/risksim/simulations",
    errors: [{ pointer: "/trials", code: "out_of_range", message: "trials must be at least 1" }],
  };
  (await fetch.next()).reply(422, problem, { "Content-Type": "application/problem+json" });
  await assert.rejects(result, (err) => {
    assert.ok(err instanceof RisksimError);
    assert.ok(err instanceof Error);
    assert.equal(err.status, 422);
    assert.deepEqual(err.problem, problem);
    assert.equal(err.problem.errors[0].pointer, "/trials");
    assert.match(err.message, /1 rule of the request is broken/);
    return true;
  });
});

test("an error without a JSON body has a null problem; a 503 keeps its Retry-After", async () => {
  const { client, fetch } = setup();
  const result = client.submit({}, { async: true });
  (await fetch.next()).reply(503, "<html>busy</html>", { "Retry-After": "5" });
  await assert.rejects(result, (err) => err.status === 503 && err.problem === null && err.retryAfterMs === 5000);
});

test("a network failure rejects with status 0", async () => {
  const { client, fetch } = setup();
  const result = client.get(ID);
  (await fetch.next()).fail(new TypeError("connection refused"));
  await assert.rejects(result, (err) => err instanceof RisksimError && err.status === 0 && err.problem === null);
});

test("a 2xx answer that is not JSON rejects with status 0", async () => {
  const { client, fetch } = setup();
  const result = client.get(ID);
  (await fetch.next()).reply(200, "<html>captive portal</html>");
  await assert.rejects(result, (err) => err instanceof RisksimError && err.status === 0);
});

// ---- Tokens and URLs ---------------------------------------------------------------------------

test("a token goes in the Authorization header on HTTP and in ?token= on the stream", async () => {
  const ctx = setup({ token: "h.c.s" });
  ctx.client.get(ID);
  assert.equal((await ctx.fetch.next()).headers.Authorization, "Bearer h.c.s");

  const { socket } = await watchWithSocket(ctx, {}, { after: 3 });
  const url = new URL(socket.url);
  assert.equal(url.origin + url.pathname, `ws://risk.test/risksim/simulations/${ID}/stream`);
  assert.equal(url.searchParams.get("after"), "3");
  assert.equal(url.searchParams.get("token"), "h.c.s");

  socket.serverClose(1006); // falls back to polling: the poll carries the header too
  await flush();
  const poll = await ctx.fetch.next();
  assert.match(poll.url, /\/events\?after=3&wait=25$/);
  assert.equal(poll.headers.Authorization, "Bearer h.c.s");
  assert.ok(!poll.url.includes("token"));
});

test("without a token there is no Authorization header and no token parameter", async () => {
  const ctx = setup();
  ctx.client.get(ID);
  assert.equal((await ctx.fetch.next()).headers.Authorization, undefined);
  const { socket } = await watchWithSocket(ctx);
  assert.equal(socket.url, `ws://risk.test/risksim/simulations/${ID}/stream?after=0`);
});

test("https becomes wss, and a relative base is resolved against location.href", async () => {
  let ctx = setup({ base: "https://secure.test/risksim" });
  let { socket } = await watchWithSocket(ctx);
  assert.equal(socket.url, `wss://secure.test/risksim/simulations/${ID}/stream?after=0`);

  globalThis.location = { href: "https://app.test/risksim/index.html" };
  try {
    ctx = setup({ base: "/risksim/" }); // a trailing slash is dropped
    ({ socket } = await watchWithSocket(ctx));
    assert.equal(socket.url, `wss://app.test/risksim/simulations/${ID}/stream?after=0`);
  } finally {
    delete globalThis.location;
  }
});

// ---- The WebSocket stream ----------------------------------------------------------------------

test("auto: the snapshot, then every event once, and the end after the terminal handler", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  assert.equal(watch.transport, null);
  socket.message(snapshot(2));
  assert.equal(watch.transport, "websocket");
  socket.message(ev(1, "status", { status: "queued" }));
  socket.message(ev(2, "status", { status: "running" }));
  socket.message(ev(2, "status", { status: "running" })); // a repeat is dropped
  socket.message(ev(3));
  socket.message(ev(5, "complete", { result: { nodes: [] } }));
  const end = await watch.done;
  assert.equal(end.seq, 5);
  assert.deepEqual(rec.names(), ["connection", "status", "status", "status", "progress", "complete", "end"]);
  assert.deepEqual(rec.log[1][2], { snapshot: true });
  assert.deepEqual(rec.log[2][2], { snapshot: false });
  assert.deepEqual(rec.seqs(), [1, 2, 3, 5]);
  assert.equal(watch.after, 5);
  assert.equal(socket.closedWith, 1000);
  assert.deepEqual(ctx.timers.pending(), []);
  assert.equal(ctx.fetch.calls.length, 0);
});

test("heartbeat, pong, bad_message and unparsable messages are not delivered", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  socket.message(snapshot(1));
  socket.message({ type: "heartbeat", ts: "2026-11-22T04:46:45.000Z" });
  socket.message({ type: "pong", ts: "2026-11-22T04:46:45.000Z" });
  socket.message({ type: "error", error: { code: "bad_message", message: "not JSON" } });
  socket.message("not json at all");
  assert.deepEqual(rec.names(), ["connection", "status"]);
  assert.equal(await stateOf(watch.done), "pending");
  socket.message(ev(2, "cancelled"));
  assert.equal((await watch.done).type, "cancelled");
  assert.deepEqual(rec.names(), ["connection", "status", "cancelled", "end"]);
});

test("every event once, in order, across WebSocket -> polling -> WebSocket with overlaps", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket: s1 } = await watchWithSocket(ctx, rec.handlers);
  s1.message(snapshot(2));
  s1.message(ev(1, "status"));
  s1.message(ev(2, "status"));
  s1.serverClose(1006);
  await flush();
  assert.equal(watch.transport, "polling");

  const p1 = await ctx.fetch.next();
  assert.equal(p1.url, `${JOB_URL}/events?after=2&wait=25`);
  p1.reply(200, page([ev(2, "status"), ev(3), ev(4)])); // 2 again: dropped
  await flush();
  const p2 = await ctx.fetch.next();
  assert.equal(p2.url, `${JOB_URL}/events?after=4&wait=25`);

  await ctx.timers.advance(750); // the first retry: retryMinMs 1000, jittered to 750
  assert.equal(ctx.ws.sockets.length, 2);
  const s2 = ctx.ws.sockets[1];
  assert.match(s2.url, /\?after=4$/);
  s2.message(snapshot(5));
  assert.equal(p2.signal.aborted, true); // polling stopped when the session was established
  assert.equal(watch.transport, "websocket");
  s2.message(ev(3)); // the replay overlaps what polling delivered
  s2.message(ev(4));
  s2.message(ev(5));
  s2.message(ev(6, "complete", { result: {} }));
  assert.equal((await watch.done).seq, 6);
  assert.deepEqual(rec.seqs(), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(rec.states(), ["websocket", "polling", "websocket"]);
  await flush();
  assert.equal(ctx.fetch.unclaimed(), 0);
});

test("an answer to an aborted poll is ignored, even when it arrives", async () => {
  const ctx = setup({ honourAbort: false });
  const rec = recorder();
  const { watch, socket: s1 } = await watchWithSocket(ctx, rec.handlers);
  s1.message(snapshot(1));
  s1.message(ev(1));
  s1.serverClose(1011, "job store unavailable, try again");
  await flush();
  const p1 = await ctx.fetch.next();
  await ctx.timers.advance(750);
  const s2 = ctx.ws.sockets[1];
  s2.message(snapshot(3));
  assert.equal(p1.signal.aborted, true);
  p1.reply(200, page([ev(2), ev(3)])); // too late: polling had stopped
  await flush();
  assert.deepEqual(rec.seqs(), [1]);
  s2.message(ev(2));
  s2.message(ev(3, "error", { error: { code: "engine", message: "boom" } }));
  assert.equal((await watch.done).type, "error");
  assert.deepEqual(rec.seqs(), [1, 2, 3]);
  assert.equal(ctx.fetch.calls.length, 1);
});

test("reset sets the cursor to 0 and the events are delivered again from the start", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers, { after: 50 });
  assert.match(socket.url, /\?after=50$/);
  assert.equal(watch.after, 50);
  socket.message({ type: "reset", jobId: ID });
  assert.equal(watch.after, 0);
  socket.message(snapshot(2));
  socket.message(ev(1, "status"));
  socket.message(ev(2));
  assert.deepEqual(rec.seqs(), [1, 2]);
  assert.equal(watch.after, 2);
  socket.serverClose(1006); // the next connection and polls use the new cursor
  await flush();
  assert.match((await ctx.fetch.next()).url, /after=2&/);
  watch.stop();
});

test("1001 with retryMs: reconnect after exactly that delay, polling meanwhile", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket: s1 } = await watchWithSocket(ctx, rec.handlers);
  s1.message(snapshot(1));
  s1.message(ev(1));
  s1.serverClose(1001, '{"retryMs":1234}');
  await flush();
  assert.equal(watch.transport, "polling");
  assert.match((await ctx.fetch.next()).url, /after=1&wait=25$/);
  assert.deepEqual(ctx.timers.pending(), [1234]);
  await ctx.timers.advance(1233);
  assert.equal(ctx.ws.sockets.length, 1);
  await ctx.timers.advance(1);
  assert.equal(ctx.ws.sockets.length, 2);
  assert.match(ctx.ws.sockets[1].url, /\?after=1$/);
  watch.stop();
});

test("1001 idle timeout and 4029 are retried with backoff", async () => {
  const ctx = setup();
  const { watch, socket: s1 } = await watchWithSocket(ctx, {}, { transport: "websocket" });
  s1.message(snapshot(1));
  s1.serverClose(1001, "idle timeout");
  await flush();
  assert.deepEqual(ctx.timers.pending(), [750]);
  await ctx.timers.advance(750);
  ctx.ws.sockets[1].serverClose(4029, "too many sessions");
  await flush();
  assert.deepEqual(ctx.timers.pending(), [1500]);
  assert.equal(watch.transport, "offline");
  watch.stop();
});

for (const [code, status] of [[4004, 404], [4001, 401], [4003, 403], [1008, 400], [1009, 413]]) {
  test(`close ${code} rejects done with a RisksimError (status ${status}), without polling`, async () => {
    const ctx = setup();
    const rec = recorder();
    const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
    socket.serverClose(code, "refused for a reason");
    await assert.rejects(watch.done, (err) => {
      assert.ok(err instanceof RisksimError);
      assert.equal(err.status, status);
      assert.equal(err.closeCode, code);
      assert.match(err.message, /refused for a reason/);
      return true;
    });
    await flush();
    assert.equal(ctx.fetch.calls.length, 0);
    assert.deepEqual(ctx.timers.pending(), []);
    assert.deepEqual(rec.log, []);
  });
}

test("1000 without a terminal event (after covered it): a synthetic end from the job", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers, { after: 9 });
  socket.message(snapshot(9, "completed"));
  socket.serverClose(1000, "job completed");
  const get = await ctx.fetch.next();
  assert.deepEqual([get.method, get.url], ["GET", JOB_URL]);
  get.reply(200, { id: ID, status: "completed", finishedAt: "2026-11-22T04:47:00.000Z", result: { nodes: [1] } });
  const end = await watch.done;
  assert.deepEqual(end, {
    type: "complete", jobId: ID, synthetic: true, status: "completed",
    ts: "2026-11-22T04:47:00.000Z", result: { nodes: [1] },
  });
  assert.deepEqual(rec.names(), ["connection", "status", "complete", "end"]);
  assert.equal(watch.after, 9);
});

test("4000 without an error event, the job unreadable: a synthetic error from the close", async () => {
  const ctx = setup();
  const { watch, socket } = await watchWithSocket(ctx, {}, { after: 4 });
  socket.message(snapshot(4, "failed"));
  socket.serverClose(4000, "job failed");
  (await ctx.fetch.next()).fail();
  const end = await watch.done;
  assert.equal(end.type, "error");
  assert.equal(end.status, "failed");
  assert.equal(end.synthetic, true);
  assert.equal(typeof end.error.message, "string");
});

test("a socket without a first message in openTimeoutMs is given up: polling, then a retry", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  assert.deepEqual(ctx.timers.pending(), [5000]);
  await ctx.timers.advance(5000);
  assert.equal(socket.closedWith, 1000);
  assert.equal(watch.transport, "polling");
  const poll = await ctx.fetch.next();
  assert.deepEqual(ctx.timers.pending(), [750]);
  socket.message(snapshot(1)); // too late: that socket is no longer listened to
  assert.equal(poll.signal.aborted, false);
  await ctx.timers.advance(750);
  ctx.ws.sockets[1].message(snapshot(1));
  assert.equal(poll.signal.aborted, true);
  assert.deepEqual(rec.states(), ["polling", "websocket"]);
  watch.stop();
});

test("a session silent for silenceMs is closed and handled as lost; heartbeats keep it", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  socket.message(snapshot(1));
  await ctx.timers.advance(40000);
  socket.message({ type: "heartbeat", ts: "2026-11-22T04:47:25.000Z" });
  await ctx.timers.advance(40000);
  assert.equal(socket.closedWith, null);
  await ctx.timers.advance(5000);
  assert.equal(socket.closedWith, 1000);
  assert.equal(watch.transport, "polling");
  assert.match((await ctx.fetch.next()).url, /after=0&wait=25$/);
  assert.deepEqual(ctx.timers.pending(), [750]); // the stream retry
  watch.stop();
});

test("openTimeoutMs 0 and silenceMs 0 turn the checks off", async () => {
  const ctx = setup();
  const { watch, socket } = await watchWithSocket(ctx, {}, { transport: "websocket", openTimeoutMs: 0, silenceMs: 0 });
  assert.deepEqual(ctx.timers.pending(), []);
  socket.message(snapshot(1));
  assert.deepEqual(ctx.timers.pending(), []);
  watch.stop();
});

test("auto: without a usable WebSocket the watch polls and never retries the stream", async () => {
  class Refusing {
    constructor() {
      throw new SyntaxError("bad URL");
    }
  }
  const ctx = setup({ WebSocket: Refusing });
  const rec = recorder();
  const watch = ctx.client.watch(ID, rec.handlers);
  await flush();
  const poll = await ctx.fetch.next();
  assert.match(poll.url, /after=0&wait=25$/);
  assert.deepEqual(ctx.timers.pending(), []);
  poll.reply(200, page([ev(1, "status"), ev(2, "complete")], "completed"));
  assert.equal((await watch.done).seq, 2);
  assert.deepEqual(rec.states(), ["polling"]);
});

// ---- Forced transports -------------------------------------------------------------------------

test("transport websocket: never polls, reconnects with a doubling jittered backoff up to retryMaxMs", async () => {
  const ctx = setup();
  const rec = recorder();
  const opts = { transport: "websocket", retryMinMs: 100, retryMaxMs: 500 };
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers, opts);
  assert.deepEqual(ctx.timers.pending(), [5000]); // the open timeout
  socket.serverClose(1006);
  const delays = [];
  for (let i = 0; i < 4; i++) {
    await flush();
    delays.push(...ctx.timers.pending());
    await ctx.timers.advance(ctx.timers.pending()[0]);
    ctx.ws.sockets.at(-1).serverClose(1006);
  }
  assert.deepEqual(delays, [75, 150, 300, 375]); // 0.75 × 100, 200, 400, 500 (capped)
  await flush();
  await ctx.timers.advance(ctx.timers.pending()[0]);
  ctx.ws.sockets.at(-1).message(snapshot(0)); // a session resets the backoff
  ctx.ws.sockets.at(-1).serverClose(1006);
  await flush();
  assert.deepEqual(ctx.timers.pending(), [75]);
  assert.equal(ctx.fetch.calls.length, 0);
  assert.deepEqual(rec.states(), ["offline", "websocket", "offline"]);
  watch.stop();
});

test("transport websocket without a usable WebSocket rejects done", async () => {
  const saved = globalThis.WebSocket; // node 22 has one
  delete globalThis.WebSocket;
  try {
    const c = new RisksimClient({ base: BASE, fetch: fakeFetch() });
    await assert.rejects(c.watch(ID, {}, { transport: "websocket" }).done, (err) => err instanceof RisksimError && err.status === 0);
  } finally {
    if (saved !== undefined) globalThis.WebSocket = saved;
  }
});

test("transport polling: no WebSocket, long polls with pollWaitS from the given cursor", async () => {
  const ctx = setup();
  const rec = recorder();
  const watch = ctx.client.watch(ID, rec.handlers, { transport: "polling", pollWaitS: 5, after: 10 });
  const p1 = await ctx.fetch.next();
  assert.equal(p1.url, `${JOB_URL}/events?after=10&wait=5`);
  p1.reply(200, page([ev(11), ev(12)]));
  const p2 = await ctx.fetch.next();
  assert.equal(p2.url, `${JOB_URL}/events?after=12&wait=5`);
  p2.reply(200, page([])); // the wait ran out: ask again at once
  const p3 = await ctx.fetch.next();
  p3.reply(200, page([ev(13, "complete")], "completed"));
  assert.equal((await watch.done).seq, 13);
  assert.equal(ctx.ws.sockets.length, 0);
  assert.deepEqual(rec.seqs(), [11, 12, 13]);
  assert.deepEqual(rec.states(), ["polling"]);
});

test("an unknown transport is a TypeError", () => {
  const { client } = setup();
  assert.throws(() => client.watch(ID, {}, { transport: "sse" }), TypeError);
});

// ---- Polling failures --------------------------------------------------------------------------

test("polling: offline on failure, backoff, Retry-After honoured, back to polling", async () => {
  const ctx = setup();
  const rec = recorder();
  const watch = ctx.client.watch(ID, rec.handlers, { transport: "polling" });
  (await ctx.fetch.next()).fail();
  await flush();
  assert.equal(watch.transport, "offline");
  assert.deepEqual(ctx.timers.pending(), [750]);
  await ctx.timers.advance(750);
  const p2 = await ctx.fetch.next();
  p2.reply(502, "Bad Gateway");
  await flush();
  assert.deepEqual(ctx.timers.pending(), [1500]); // the second failure in a row
  await ctx.timers.advance(1500);
  const p3 = await ctx.fetch.next();
  p3.reply(503, { type: "urn:risksim:problem:busy", status: 503 }, { "Retry-After": "7" });
  await flush();
  assert.deepEqual(ctx.timers.pending(), [7000]);
  await ctx.timers.advance(6999);
  assert.equal(ctx.fetch.unclaimed(), 0);
  await ctx.timers.advance(1);
  const p4 = await ctx.fetch.next();
  assert.match(p4.url, /after=0&wait=25$/);
  p4.reply(200, page([ev(1)]));
  await flush();
  assert.equal(watch.transport, "polling");
  assert.deepEqual(rec.states(), ["polling", "offline", "polling"]);
  assert.deepEqual(rec.seqs(), [1]);
  watch.stop();
});

test("polling: an answer that works resets the backoff", async () => {
  const ctx = setup();
  const watch = ctx.client.watch(ID, {}, { transport: "polling" });
  (await ctx.fetch.next()).fail();
  await flush();
  await ctx.timers.advance(750);
  (await ctx.fetch.next()).reply(200, page([ev(1)]));
  (await ctx.fetch.next()).fail();
  await flush();
  assert.deepEqual(ctx.timers.pending(), [750]);
  watch.stop();
});

test("polling: an empty answer with Retry-After (too many waiters) delays the next poll", async () => {
  const ctx = setup();
  const watch = ctx.client.watch(ID, {}, { transport: "polling" });
  (await ctx.fetch.next()).reply(200, page([]), { "Retry-After": "1" });
  await flush();
  assert.deepEqual(ctx.timers.pending(), [1000]);
  assert.equal(watch.transport, "polling");
  await ctx.timers.advance(1000);
  assert.equal(ctx.fetch.unclaimed(), 1);
  watch.stop();
});

test("auto: polling while the stream retries, offline, then the stream comes back", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  socket.serverClose(1006); // the bridge is down
  await flush();
  (await ctx.fetch.next()).fail(); // and so is the responder
  await flush();
  assert.equal(watch.transport, "offline");
  assert.deepEqual(ctx.timers.pending(), [750, 750]); // the stream retry and the poll retry
  await ctx.timers.advance(750);
  ctx.ws.sockets[1].message(snapshot(0));
  assert.equal(watch.transport, "websocket");
  assert.deepEqual(ctx.timers.pending(), [45000]); // the poll retry was cancelled (left: silenceMs)
  assert.deepEqual(rec.states(), ["polling", "offline", "websocket"]);
  watch.stop();
});

for (const status of [404, 401, 403]) {
  test(`polling: HTTP ${status} rejects done and stops everything`, async () => {
    const ctx = setup();
    const { watch, socket } = await watchWithSocket(ctx);
    socket.serverClose(1006);
    await flush();
    (await ctx.fetch.next()).reply(status, { type: "urn:risksim:problem:x", status, title: "no" });
    await assert.rejects(watch.done, (err) => err instanceof RisksimError && err.status === status && err.problem.status === status);
    assert.deepEqual(ctx.timers.pending(), []); // the stream retry is cancelled too
  });
}

test("polling: a final status with no events left ends with a synthetic event from the job", async () => {
  const ctx = setup();
  const rec = recorder();
  const watch = ctx.client.watch(ID, rec.handlers, { transport: "polling", after: 3 });
  (await ctx.fetch.next()).reply(200, page([], "failed"));
  const get = await ctx.fetch.next();
  assert.equal(get.url, JOB_URL);
  get.reply(200, { id: ID, status: "failed", error: { code: "lease_expired", message: "workers died" }, finishedAt: "t" });
  const end = await watch.done;
  assert.deepEqual(end, {
    type: "error", jobId: ID, synthetic: true, status: "failed", ts: "t",
    error: { code: "lease_expired", message: "workers died" },
  });
  assert.deepEqual(rec.names(), ["connection", "error", "end"]);
});

// ---- stop() ------------------------------------------------------------------------------------

test("stop(): closes the socket, no more handler calls, done stays pending", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  socket.message(snapshot(1));
  socket.message(ev(1));
  watch.stop();
  assert.equal(socket.closedWith, 1000);
  socket.message(ev(2));
  socket.serverClose(1006);
  await flush();
  assert.deepEqual(rec.seqs(), [1]);
  assert.equal(ctx.fetch.calls.length, 0);
  assert.deepEqual(ctx.timers.pending(), []);
  assert.equal(await stateOf(watch.done), "pending");
  watch.stop(); // harmless
});

test("stop() while polling aborts the request and cancels the stream retry", async () => {
  const ctx = setup();
  const rec = recorder();
  const { watch, socket } = await watchWithSocket(ctx, rec.handlers);
  socket.serverClose(1006);
  await flush();
  const poll = await ctx.fetch.next();
  watch.stop();
  assert.equal(poll.signal.aborted, true);
  assert.deepEqual(ctx.timers.pending(), []);
  await ctx.timers.advance(60000);
  assert.equal(ctx.ws.sockets.length, 1);
  assert.deepEqual(rec.states(), ["polling"]);
  assert.equal(await stateOf(watch.done), "pending");
});

test("stop() from a handler ends delivery at once, within a polled page", async () => {
  const ctx = setup();
  const seen = [];
  const watch = ctx.client.watch(ID, {
    progress(e) {
      seen.push(e.seq);
      if (e.seq === 2) watch.stop();
    },
  }, { transport: "polling" });
  (await ctx.fetch.next()).reply(200, page([ev(1), ev(2), ev(3)]));
  await flush();
  assert.deepEqual(seen, [1, 2]);
  assert.equal(watch.after, 2);
  assert.equal(ctx.fetch.unclaimed(), 0);
});

test("stop() while the job is read for a synthetic end: no handler, done pending", async () => {
  const ctx = setup();
  const rec = recorder();
  const watch = ctx.client.watch(ID, rec.handlers, { transport: "polling", after: 3 });
  (await ctx.fetch.next()).reply(200, page([], "completed"));
  const get = await ctx.fetch.next();
  watch.stop();
  get.reply(200, { id: ID, status: "completed", result: {} });
  await flush();
  assert.deepEqual(rec.names(), ["connection"]);
  assert.equal(await stateOf(watch.done), "pending");
});

test("stop() before the first microtask: nothing is opened", async () => {
  const ctx = setup();
  const watch = ctx.client.watch(ID);
  watch.stop();
  await flush();
  assert.equal(ctx.ws.sockets.length, 0);
  assert.equal(ctx.fetch.calls.length, 0);
});
