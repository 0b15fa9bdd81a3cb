/*
 * Fakes of the globals web/risksim.js uses (fetch, WebSocket, setTimeout/clearTimeout), for its
 * unit tests.
 *
 * Why this file exists: the watch's cursor and fallback logic is decided by the order in which
 * answers, messages, closes and timers arrive. These fakes let a test decide that order: every
 * fetch waits until the test replies to it, every socket message and close is sent by the test,
 * and time passes only when the test advances the clock. Node's standard library only.
 */

/** Lets every pending promise callback run (setImmediate runs after the microtask queue). */
export async function flush(rounds = 3) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A manual clock: timers fire only in advance(), in order of their due time. */
export class FakeTimers {
  now = 0;
  #next = 1;
  #timers = new Map();

  setTimeout = (fn, ms) => {
    const id = this.#next++;
    this.#timers.set(id, { fn, at: this.now + ms });
    return id;
  };

  clearTimeout = (id) => {
    this.#timers.delete(id);
  };

  /** The delays (ms from now) of the pending timers, shortest first. */
  pending() {
    return [...this.#timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }

  /** Moves the clock `ms` forward, firing every timer that falls due, one at a time. */
  async advance(ms) {
    const end = this.now + ms;
    for (;;) {
      const due = [...this.#timers.entries()]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
      await flush();
    }
    this.now = end;
    await flush();
  }
}

/**
 * A WebSocket class whose instances are listed in `sockets`; the test plays the server with
 * socket.message(obj) and socket.serverClose(code, reason). `closedWith` is the code the client
 * closed with (null while it has not).
 */
export function fakeWebSocket() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = String(url);
      this.closedWith = null;
      this.onmessage = null;
      this.onclose = null;
      sockets.push(this);
    }

    close(code) {
      this.closedWith = code ?? 1005;
    }

    message(msg) {
      this.onmessage?.({ data: typeof msg === "string" ? msg : JSON.stringify(msg) });
    }

    serverClose(code, reason = "") {
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
  }
  return { WebSocket: FakeWebSocket, sockets };
}

function fakeResponse(status, body, headers) {
  const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  return { status, statusText: "", headers: new Headers(headers), text: async () => text };
}

/**
 * A fetch whose calls wait for the test: `await fetch.next()` gives the next call, with its
 * url, method, headers, body (parsed), signal, and reply(status, body, headers) / fail().
 * An aborted call rejects with an AbortError, unless `honourAbort` is false (then only the
 * signal tells, as when an answer was already on its way).
 */
export function fakeFetch({ honourAbort = true } = {}) {
  const calls = [];
  const waiting = [];
  let taken = 0;
  function fetch(url, init = {}) {
    return new Promise((resolve, reject) => {
      const call = {
        url: String(url),
        method: init.method ?? "GET",
        headers: init.headers ?? {},
        body: init.body === undefined ? undefined : JSON.parse(init.body),
        signal: init.signal,
        reply: (status, body, headers = {}) => resolve(fakeResponse(status, body, headers)),
        fail: (err = new TypeError("fetch failed")) => reject(err),
      };
      if (honourAbort)
        init.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
      calls.push(call);
      if (waiting.length > 0) waiting.shift()(calls[taken++]);
    });
  }
  fetch.calls = calls;
  /** The next call not yet handed out (waits for it). */
  fetch.next = () =>
    taken < calls.length ? Promise.resolve(calls[taken++]) : new Promise((resolve) => waiting.push(resolve));
  /** Calls made but not yet handed out. */
  fetch.unclaimed = () => calls.length - taken;
  return fetch;
}
