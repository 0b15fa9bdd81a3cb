/*
 * risksim.js: the browser (and node) client of the risksim API.
 *
 * Why this file exists: every page that submits simulations and follows their progress needs
 * the same few things done right: problem+json errors turned into exceptions, and a job's
 * events delivered exactly once, in order, over the WebSocket stream when it works and over
 * long polling when it does not, switching back and forth without losing or repeating an event
 * (docs/api.md sections 3 to 6; the rollout from polling to WebSockets is docs/migration.md).
 * It is one ES module without dependencies or a build step:
 *
 *     import { RisksimClient } from "./risksim.js";
 *     const client = new RisksimClient({ base: "/risksim" });
 *     const job = await client.submit(request, { async: true });
 *     const watch = client.watch(job.id, { progress: (ev) => bar.value = ev.progress });
 *     const end = await watch.done; // the complete, error or cancelled event
 *
 * Decisions a caller should know (the details are on the methods below):
 * - A `reset` from the stream (the cursor belonged to another database, e.g. one restored from
 *   a backup) sets the cursor back to 0, and the job's events are then delivered again from
 *   its first one. This is the only case in which an event can be delivered twice.
 * - When the watch learns that the job ended without receiving its terminal event (the cursor
 *   given as `after` already covered it, or a job failed without an error event, which the
 *   server no longer does), it reads the job once (GET /simulations/{id}) and ends with a
 *   synthetic terminal event: `{type, jobId, synthetic: true, status, ts, result | error}`
 *   without a `seq` (the cursor stays where it is).
 * - `stop()` ends the watch from the caller's side: no handler is called afterwards and
 *   `done` stays pending for ever (the caller who stopped already knows why).
 */

/** Close codes after which the stream is not reopened (docs/api.md section 5, Close codes). */
const FINAL_CLOSE_CODES = new Set([1000, 4000, 4001, 4003, 4004, 1008, 1009]);
/** The HTTP status a refusing close code stands for (RisksimError.status). */
const CLOSE_CODE_STATUS = new Map([[4001, 401], [4003, 403], [4004, 404], [1008, 400], [1009, 413]]);
/** Event types that end a job. */
const TERMINAL_TYPES = new Set(["complete", "error", "cancelled"]);
/** Job states after which nothing more happens, and their terminal event type. */
const FINAL_STATES = new Map([["completed", "complete"], ["failed", "error"], ["cancelled", "cancelled"]]);
/** Event types delivered to the handler of the same name. */
const EVENT_TYPES = new Set(["status", "progress", "complete", "error", "cancelled"]);
const TRANSPORTS = new Set(["auto", "websocket", "polling"]);
const WATCH_DEFAULTS = {
  transport: "auto", after: 0, retryMinMs: 1000, retryMaxMs: 30000, pollWaitS: 25,
  openTimeoutMs: 5000, silenceMs: 45000,
};

/**
 * An answer of the API other than 2xx, or no answer at all.
 *
 * - `status`: the HTTP status; 0 when no answer came (network failure, unreadable body). For a
 *   refusal by the WebSocket stream, the HTTP status its close code stands for (4001 → 401,
 *   4003 → 403, 4004 → 404, 1008 → 400, 1009 → 413), with the code in `closeCode`.
 * - `problem`: the parsed application/problem+json body, or null. For 422,
 *   `problem.errors` lists every broken rule as `{pointer, code, message}`.
 * - `closeCode`: the WebSocket close code of a stream refusal, else null.
 * - `retryAfterMs`: the answer's Retry-After in milliseconds (503), else null.
 */
export class RisksimError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, problem?: object|null, closeCode?: number|null,
   *          retryAfterMs?: number|null, cause?: unknown}} [details]
   */
  constructor(message, { status = 0, problem = null, closeCode = null, retryAfterMs = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RisksimError";
    this.status = status;
    this.problem = problem;
    this.closeCode = closeCode;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * A client of one risksim mount point.
 *
 * Options:
 * - `base`: the mount point, as a URL ("https://risk.example.com/risksim") or a path
 *   ("/risksim", resolved against the page's location), without a trailing slash.
 * - `token`: a JWT (docs/api.md section 6), sent as `Authorization: Bearer` on HTTP requests
 *   and as `?token=` on the WebSocket stream (browsers cannot set headers there). Null: none.
 * - `fetch`, `WebSocket`, `setTimeout`, `clearTimeout`, `random`: replacements for the globals
 *   of the same names (Math.random for `random`), for tests. Without a WebSocket (node 20 and
 *   older have none), `watch` polls.
 */
export class RisksimClient {
  #base;
  #token;
  #env;

  /**
   * @param {{base?: string, token?: string|null, fetch?: Function, WebSocket?: Function,
   *          setTimeout?: Function, clearTimeout?: Function, random?: () => number}} [options]
   */
  constructor({ base = "/risksim", token = null, fetch, WebSocket, setTimeout, clearTimeout, random } = {}) {
    this.#base = String(base).replace(/\/+$/, "");
    this.#token = token;
    this.#env = {
      // The defaults are called through globalThis: browsers refuse window.fetch and
      // window.setTimeout called on another object ("Illegal invocation").
      fetch: fetch ?? ((...args) => globalThis.fetch(...args)),
      WebSocket: WebSocket ?? globalThis.WebSocket,
      setTimeout: setTimeout ?? ((fn, ms) => globalThis.setTimeout(fn, ms)),
      clearTimeout: clearTimeout ?? ((handle) => globalThis.clearTimeout(handle)),
      random: random ?? Math.random,
    };
  }

  /**
   * Submits a simulation request (docs/api.md section 1).
   * Synchronous (default): POST {base}/simulations, resolves to the result (section 2).
   * `{async: true}`: POST {base}/simulations/async, resolves to the queued job
   * (`{id, status, links, ...}`), to be followed with `watch(job.id)`.
   * Rejects with RisksimError on any other answer than 2xx (422 lists the broken rules).
   * @param {object} request
   * @param {{async?: boolean}} [options]
   * @returns {Promise<object>}
   */
  async submit(request, { async: isAsync = false } = {}) {
    const path = isAsync ? "/simulations/async" : "/simulations";
    return (await this.#send("POST", path, { body: request })).body;
  }

  /**
   * The job: GET {base}/simulations/{id}, with its status, progress, times, and its `result`
   * once completed or `error` once failed. Rejects with RisksimError (404: no such job).
   * @param {string} id
   * @returns {Promise<object>}
   */
  async get(id) {
    return (await this.#send("GET", jobPath(id))).body;
  }

  /**
   * Cancels a queued or running job: DELETE {base}/simulations/{id}; resolves to the job (a
   * job that had already finished is left as it was). Harmless to repeat.
   * @param {string} id
   * @returns {Promise<object>}
   */
  async cancel(id) {
    return (await this.#send("DELETE", jobPath(id))).body;
  }

  /**
   * One page of the job's events: GET {base}/simulations/{id}/events?after=&wait=, resolving
   * to `{events, next, status}`: the events with `seq > after` (at most 1,000), the cursor to
   * pass as `after` next time, and the job's state. With `wait` (seconds, the server cuts it to
   * its max_wait_s) and nothing new, the answer waits for the job's next event or its end.
   * @param {string} id
   * @param {number} [after]
   * @param {number} [wait]
   * @returns {Promise<{events: object[], next: number, status: string}>}
   */
  async events(id, after = 0, wait = 0) {
    return (await this.#send("GET", eventsPath(id, after, wait))).body;
  }

  /**
   * Follows a job's events until its end; see Watch for the handlers, the options and the
   * rules. Throws a TypeError for an unknown `options.transport`.
   * @param {string} id
   * @param {WatchHandlers} [handlers]
   * @param {WatchOptions} [options]
   * @returns {Watch}
   */
  watch(id, handlers = {}, options = {}) {
    const opts = { ...WATCH_DEFAULTS, ...options };
    if (!TRANSPORTS.has(opts.transport))
      throw new TypeError(`transport must be "auto", "websocket" or "polling", not ${JSON.stringify(opts.transport)}`);
    return new Watch(this.#link(), String(id), handlers ?? {}, opts);
  }

  /** What a Watch needs from its client: requests, the stream URL, the injected globals. */
  #link() {
    return {
      ...this.#env,
      poll: (id, after, wait, signal) => this.#send("GET", eventsPath(id, after, wait), { signal }),
      get: (id) => this.get(id),
      streamUrl: (id, after) => streamUrl(this.#base, id, after, this.#token),
    };
  }

  /**
   * Sends one request and reads its JSON answer. Resolves to `{status, body, retryAfterMs}`
   * for 2xx; rejects with RisksimError otherwise, or with the AbortError of `signal`.
   */
  async #send(method, path, { body, signal } = {}) {
    let res;
    let text;
    try {
      res = await this.#env.fetch(this.#base + path, {
        method, headers: this.#headers(body !== undefined), signal,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      text = await res.text();
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new RisksimError(`${method} ${path}: no answer (${err?.message ?? err})`, { cause: err });
    }
    return answer(method, path, res, text);
  }

  /** The request headers: JSON, and the token when there is one. */
  #headers(withBody) {
    const headers = { Accept: "application/json" };
    if (withBody) headers["Content-Type"] = "application/json";
    if (this.#token) headers.Authorization = `Bearer ${this.#token}`;
    return headers;
  }
}

/**
 * @typedef {object} WatchHandlers All optional; `this` is the handlers object.
 * @property {(msg: object, info: {snapshot: boolean}) => void} [status] a status event
 *   (`info.snapshot` false), or the opening status of each WebSocket session (`snapshot` true:
 *   the job's state as of event `msg.seq`, not an event and not a cursor).
 * @property {(ev: object) => void} [progress]
 * @property {(ev: object) => void} [complete]
 * @property {(ev: object) => void} [error] the job failed (`ev.error` is `{code, message}`)
 * @property {(ev: object) => void} [cancelled]
 * @property {(state: "websocket"|"polling"|"offline") => void} [connection] on every change
 * @property {(ev: object) => void} [end] once, with the terminal event, after its own handler
 */

/**
 * @typedef {object} WatchOptions
 * @property {"auto"|"websocket"|"polling"} [transport] default "auto"
 * @property {number} [after] the cursor to start from: seq of the last event already had (0)
 * @property {number} [retryMinMs] first retry delay (1000), doubling on each failure in a row
 * @property {number} [retryMaxMs] the longest retry delay (30000)
 * @property {number} [pollWaitS] `wait` of each long poll, in seconds (25)
 * @property {number} [openTimeoutMs] how long a WebSocket may take to bring its first message
 *   (5000; 0: no limit)
 * @property {number} [silenceMs] how long an established session may bring no message at all;
 *   the bridge sends a heartbeat every heartbeat_s, 15 s by default (45000; 0: no limit)
 */

/**
 * The following of one job, returned by RisksimClient.watch (not constructed directly).
 *
 * Every event (the messages with a `seq`) is delivered exactly once and in seq order,
 * whichever transport carries it: the watch keeps the cursor `after`, the seq of the last event
 * delivered, starts every connection and every poll from it, and drops any event whose seq is
 * not above it. The one exception is a stream `reset` (see the file's header). Heartbeats,
 * pongs and `bad_message` errors carry no seq and are not delivered.
 *
 * Transports:
 * - "auto": the WebSocket stream. When it cannot be opened or closes with a code that is not
 *   final (anything but 1000, 4000, 4001, 4003, 4004, 1008 and 1009), the watch long-polls
 *   /events from the same cursor and tries the stream again after a jittered backoff (or after
 *   the `retryMs` a closing bridge asks for with 1001). Once a new session is established (its
 *   first message arrived; a refused handshake opens and closes at once, so an open alone
 *   proves nothing) polling stops and its pending request is aborted. Without a usable
 *   WebSocket (node 20 and older have none; a URL it refuses) the watch only polls.
 * - "websocket": the stream only; between connections the state is "offline".
 * - "polling": long polling only; no WebSocket is opened.
 * A socket without a message for `openTimeoutMs` after it was made (a handshake that hangs)
 * or for `silenceMs` once established (a connection that died without a close) is closed by
 * the watch and handled as one that closed for a passing reason.
 * A poll that fails (no answer, 5xx, 408, 429) makes the state "offline" and is retried after
 * the Retry-After of the answer or the backoff; the first answer that works brings it back.
 * The backoff after n failures in a row is drawn from [d/2, d], d = min(retryMaxMs,
 * retryMinMs·2ⁿ), with `random`.
 *
 * The end: the job's terminal event (complete, error, cancelled) ends the watch: its handler,
 * then `end`, then `done` resolves with it, and the socket and the polling stop. A job found
 * ended without its terminal event ends with a synthetic one (see the file's header). A final
 * refusal rejects `done` with a RisksimError: the close codes 4001, 4003, 4004, 1008 and 1009,
 * or HTTP 4xx (except 408 and 429) from polling; no handler is called for it.
 *
 * `connection(state)` is first called when a transport starts ("polling") or a session is
 * established ("websocket"); `transport` is null until then. The watch starts on the next
 * microtask, so handlers may use the Watch object returned.
 */
class Watch {
  /** @type {Promise<object>} resolves with the terminal event, rejects with RisksimError */
  done;
  #link;
  #id;
  #handlers;
  #opts;
  #after;
  #state = null;
  /** "running", "ending" (reading the job for a synthetic end) or "over". */
  #phase = "running";
  #session = null;
  #retryTimer = null;
  #socketFailures = 0;
  #poller = null;
  #settle;

  constructor(link, id, handlers, opts) {
    this.#link = link;
    this.#id = id;
    this.#handlers = handlers;
    this.#opts = opts;
    this.#after = Number(opts.after) || 0;
    this.done = new Promise((resolve, reject) => (this.#settle = { resolve, reject }));
    this.done.catch(() => {}); // a caller that only uses handlers gets no unhandled rejection
    queueMicrotask(() => this.#start());
  }

  /** The connection state: "websocket", "polling", "offline", or null before the first. */
  get transport() {
    return this.#state;
  }

  /** The cursor: seq of the last event delivered (or the `after` option until one is). */
  get after() {
    return this.#after;
  }

  /** Closes the socket, aborts polling and cancels timers; no handler is called afterwards and
   * `done` stays pending. Harmless after the end or when repeated. */
  stop() {
    if (this.#phase === "over") return;
    this.#phase = "over";
    this.#closeTransports();
  }

  #start() {
    if (this.#phase !== "running") return;
    if (this.#opts.transport === "polling") this.#startPolling();
    else this.#openSocket();
  }

  // ---- The WebSocket stream ----------------------------------------------------------------

  #openSocket() {
    this.#retryTimer = null;
    if (this.#phase !== "running") return;
    let socket;
    try {
      socket = new this.#link.WebSocket(this.#link.streamUrl(this.#id, this.#after));
    } catch (err) {
      this.#socketUnusable(err);
      return;
    }
    const session = { socket, established: false, snapshot: false, timer: null };
    this.#session = session;
    this.#arm(session, this.#opts.openTimeoutMs);
    socket.onmessage = (e) => this.#onSocketMessage(session, e.data);
    socket.onclose = (e) => this.#onSocketClose(session, e.code, e.reason);
  }

  /** No WebSocket can be made at all: poll instead ("auto") or give up ("websocket"). */
  #socketUnusable(err) {
    if (this.#opts.transport === "auto") this.#startPolling();
    else this.#fail(new RisksimError(`the WebSocket stream cannot be opened: ${err?.message ?? err}`, { cause: err }));
  }

  /** Nothing came in time (openTimeoutMs, silenceMs): the connection is taken for dead. */
  #silent(session) {
    if (session !== this.#session || this.#phase !== "running") return;
    this.#closeSocket();
    this.#socketLost(null);
  }

  #onSocketMessage(session, data) {
    if (session !== this.#session || this.#phase !== "running") return;
    if (!session.established) this.#established(session);
    this.#arm(session, this.#opts.silenceMs);
    const msg = parseJson(data);
    if (msg === null || typeof msg !== "object") return;
    if (msg.type === "reset") {
      this.#after = 0; // the cursor came from another database: the replay starts over
    } else if (msg.type === "status" && !session.snapshot) {
      session.snapshot = true;
      this.#call("status", msg, { snapshot: true });
    } else if (typeof msg.seq === "number") {
      this.#deliver(msg);
    }
  }

  /** A session's first message: the stream works, so polling stops. */
  #established(session) {
    session.established = true;
    this.#socketFailures = 0;
    this.#stopPolling();
    this.#setState("websocket");
  }

  #onSocketClose(session, code, reason) {
    if (session !== this.#session || this.#phase !== "running") return;
    this.#dropSession();
    if (code === 1000 || code === 4000) this.#endWithoutEvent(closedState(code, reason));
    else if (FINAL_CLOSE_CODES.has(code)) this.#fail(closeError(code, reason));
    else this.#socketLost(requestedDelay(code, reason));
  }

  /** The stream closed for a passing reason: retry it later, polling meanwhile ("auto"). */
  #socketLost(delayMs) {
    const ms = delayMs ?? this.#backoff(this.#socketFailures++);
    this.#retryTimer = this.#link.setTimeout(() => this.#openSocket(), ms);
    if (this.#opts.transport === "websocket") this.#setState("offline");
    else this.#startPolling();
  }

  #closeSocket() {
    const session = this.#dropSession();
    try {
      session?.socket.close(1000);
    } catch {
      // already closed
    }
  }

  /** Forgets the current session (its callbacks and its timer); returns it, or null. */
  #dropSession() {
    const session = this.#session;
    this.#session = null;
    if (session === null) return null;
    session.socket.onmessage = session.socket.onclose = null;
    this.#disarm(session);
    return session;
  }

  /** Sets the session's one timer (the open timeout, then the silence timeout) to give it up
   * after `ms` (never for 0), replacing the previous one. */
  #arm(session, ms) {
    this.#disarm(session);
    if (ms > 0)
      session.timer = this.#link.setTimeout(() => {
        session.timer = null;
        this.#silent(session);
      }, ms);
  }

  #disarm(session) {
    if (session.timer !== null) this.#link.clearTimeout(session.timer);
    session.timer = null;
  }

  // ---- Long polling ------------------------------------------------------------------------

  #startPolling() {
    if (this.#poller !== null || this.#phase !== "running") return;
    this.#poller = new AbortController();
    this.#setState("polling");
    this.#pollLoop(this.#poller.signal);
  }

  #stopPolling() {
    this.#poller?.abort();
    this.#poller = null;
  }

  /** Polls from the cursor until `signal` aborts (the stream is back, the end, stop()). */
  async #pollLoop(signal) {
    let failures = 0;
    while (!signal.aborted) {
      let delayMs = 0;
      try {
        const page = await this.#link.poll(this.#id, this.#after, this.#opts.pollWaitS, signal);
        if (signal.aborted) return;
        failures = 0;
        this.#setState("polling");
        delayMs = this.#takePage(page);
      } catch (err) {
        if (signal.aborted) return;
        if (isFinalRefusal(err)) return this.#fail(err);
        this.#setState("offline");
        delayMs = err?.retryAfterMs ?? this.#backoff(failures++);
      }
      if (delayMs > 0) await sleep(delayMs, signal, this.#link);
    }
  }

  /** Delivers a page of events; returns the delay before the next poll in milliseconds. */
  #takePage({ body, retryAfterMs }) {
    const events = Array.isArray(body?.events) ? body.events : [];
    for (const ev of events) {
      if (this.#phase !== "running") return 0;
      if (ev && typeof ev.seq === "number") this.#deliver(ev);
    }
    if (this.#phase !== "running" || events.length > 0) return 0;
    if (FINAL_STATES.has(body?.status)) {
      this.#endWithoutEvent(body.status);
      return 0;
    }
    // Nothing new: the server waited pollWaitS, or asks us to come back later (too many
    // waiting polls), or the caller asked for short polls (pollWaitS 0).
    return retryAfterMs ?? (this.#opts.pollWaitS > 0 ? 0 : this.#opts.retryMinMs);
  }

  // ---- Delivery and the end ----------------------------------------------------------------

  /** Delivers an event once: drops it when its seq is not above the cursor. */
  #deliver(ev) {
    if (ev.seq <= this.#after) return;
    this.#after = ev.seq;
    if (TERMINAL_TYPES.has(ev.type)) this.#finish(ev);
    else if (ev.type === "status") this.#call("status", ev, { snapshot: false });
    else if (EVENT_TYPES.has(ev.type)) this.#call(ev.type, ev);
  }

  /** The job's end: stop everything, then its handler, `end` and `done`. */
  #finish(ev) {
    this.#phase = "over";
    this.#closeTransports();
    this.#call(ev.type, ev);
    this.#call("end", ev);
    this.#settle.resolve(ev);
  }

  /** The job ended but its terminal event was not seen: end with a synthetic one, built from
   * the job when it can be read, else from `state` alone. */
  async #endWithoutEvent(state) {
    this.#phase = "ending";
    this.#closeTransports();
    const job = await this.#link.get(this.#id).catch(() => null);
    if (this.#phase !== "ending") return; // stopped meanwhile
    this.#finish(syntheticEnd(this.#id, job, state));
  }

  #fail(err) {
    this.#phase = "over";
    this.#closeTransports();
    this.#settle.reject(err);
  }

  #closeTransports() {
    this.#stopPolling();
    this.#closeSocket();
    if (this.#retryTimer !== null) this.#link.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
  }

  // ---- Small helpers -----------------------------------------------------------------------

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#call("connection", state);
  }

  #backoff(failures) {
    const d = Math.min(this.#opts.retryMaxMs, this.#opts.retryMinMs * 2 ** failures);
    return d / 2 + (this.#link.random() * d) / 2;
  }

  /** Calls a handler; an exception it throws is reported (uncaught) without breaking the
   * watch. */
  #call(name, ...args) {
    const fn = this.#handlers[name];
    if (typeof fn !== "function") return;
    try {
      fn.apply(this.#handlers, args);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}

// ---- Module helpers ------------------------------------------------------------------------

function jobPath(id) {
  return `/simulations/${encodeURIComponent(id)}`;
}

function eventsPath(id, after, wait) {
  return `${jobPath(id)}/events?after=${after}&wait=${wait}`;
}

/** The stream URL: ws(s) for http(s), relative bases resolved against the page's location. */
function streamUrl(base, id, after, token) {
  const url = new URL(`${base}${jobPath(id)}/stream`, globalThis.location?.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  url.searchParams.set("after", String(after));
  if (token) url.searchParams.set("token", token);
  return url.href;
}

/** Turns an HTTP answer into `{status, body, retryAfterMs}` (2xx) or a thrown RisksimError. */
function answer(method, path, res, text) {
  const body = text === "" ? null : parseJson(text);
  const retryAfterMs = parseRetryAfter(res.headers?.get?.("Retry-After"));
  if (res.status >= 200 && res.status < 300) {
    if (text !== "" && body === null) throw new RisksimError(`${method} ${path}: the answer is not JSON`);
    return { status: res.status, body, retryAfterMs };
  }
  const problem = body !== null && typeof body === "object" ? body : null;
  const why = problem?.detail ?? problem?.title ?? res.statusText ?? "";
  throw new RisksimError(`${method} ${path}: ${res.status} ${why}`.trim(), { status: res.status, problem, retryAfterMs });
}

/** Retry-After (seconds or an HTTP date) in milliseconds, or null. */
function parseRetryAfter(value) {
  if (value === null || value === undefined || value === "") return null;
  if (/^\d+$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** HTTP 4xx other than 408 and 429: asking again would get the same answer. */
function isFinalRefusal(err) {
  return err instanceof RisksimError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
}

/** The delay a closing bridge asks for (1001 with {"retryMs":N}), or null. */
function requestedDelay(code, reason) {
  if (code !== 1001) return null;
  const ms = parseJson(reason)?.retryMs;
  return Number.isFinite(ms) && ms >= 0 ? ms : null;
}

function closeError(code, reason) {
  const status = CLOSE_CODE_STATUS.get(code) ?? 0;
  return new RisksimError(`the stream was refused: ${code} ${reason ?? ""}`.trim(), { status, closeCode: code });
}

/** The job state a final close (1000, 4000) stands for. */
function closedState(code, reason) {
  if (code === 4000) return "failed";
  return /cancel/.test(reason ?? "") ? "cancelled" : "completed";
}

/** A terminal event for a job that ended without one being delivered (see the file's header). */
function syntheticEnd(jobId, job, state) {
  const status = FINAL_STATES.has(job?.status) ? job.status : state;
  const ev = { type: FINAL_STATES.get(status), jobId, synthetic: true, status, ts: job?.finishedAt ?? null };
  if (ev.type === "complete" && job?.result) ev.result = job.result;
  if (ev.type === "error") ev.error = job?.error ?? { code: "unknown", message: "the job failed" };
  return ev;
}

/** Waits `ms` with the injected timers; resolves early when `signal` aborts. */
function sleep(ms, signal, timers) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const wake = () => {
      timers.clearTimeout(handle);
      resolve();
    };
    const handle = timers.setTimeout(() => {
      signal.removeEventListener("abort", wake);
      resolve();
    }, ms);
    signal.addEventListener("abort", wake, { once: true });
  });
}
