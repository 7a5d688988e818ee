import type { SwitchboardClient } from "./client.js";
import { ProblemError, StreamError } from "./errors.js";
import { RUN_EVENT_TYPES, isTerminalEvent, type RunEvent } from "./events.js";
import { parseSse } from "./sse.js";

export interface StreamRunOptions {
  /** Id of the last event the caller already has: the stream starts after it (0: from event 1). */
  lastEventId?: number;
  /** Aborts the stream: the iterator then throws the signal's reason. */
  signal?: AbortSignal;
  /** Consecutive failed attempts (no event delivered in between) before giving up with
   * `StreamError("reconnects_exhausted")`. Default 8. */
  maxReconnects?: number;
  /** First reconnect delay in ms, doubled at each consecutive failure. Default 250. */
  initialDelayMs?: number;
  /** Cap of the reconnect delay (and of a `Retry-After` wait) in ms. Default 5000. */
  maxDelayMs?: number;
  /** Called before each reconnect, e.g. for a "reconnecting…" indicator. */
  onReconnect?: (info: { attempt: number; delayMs: number; lastEventId: number; error: unknown }) => void;
}

const STREAM_PATH = /\/api\/v1\/runs\/([^/?#]+)\/stream(?:[?#]|$)/;
const KNOWN = new Set<string>(RUN_EVENT_TYPES);

/**
 * Follows a run's events over SSE (fetch-based: Node 18+ and browsers) and yields each event
 * exactly once, in order, ending after the terminal event (`run.completed`, `run.failed`,
 * `run.cancelled`).
 *
 * `runIdOrStreamUrl` is a run id (the stream is opened with the Bearer token) or the
 * `stream_url` of `chat()` / `streamTicket()` (opened with its ticket; absolute URLs work too).
 *
 * - A dropped connection, a body that ends without a terminal event, `stream.error`
 *   `stream_failed`, 5xx, and 429/503 (after `Retry-After`) reconnect with `Last-Event-ID` set
 *   to the last event delivered, with exponential backoff, at most `maxReconnects` times in a
 *   row.
 * - A 401 with a ticket mints a fresh one (`POST /api/v1/runs/{id}/stream-ticket`, needs a
 *   session); a 401 with a Bearer token refreshes it; a second 401 in a row throws.
 * - `stream.error` `events_lost` throws `StreamError("events_lost")`: read the run and its
 *   conversation for the outcome.
 * - Other error answers (404 `run.not_found`, 422, ...) throw `ProblemError`.
 * - Comments (`: ping`) are ignored; events already delivered (id at or below the last) are
 *   dropped; event types this version does not know are skipped (and counted as delivered).
 */
export async function* streamRun(
  client: SwitchboardClient,
  runIdOrStreamUrl: string,
  options: StreamRunOptions = {},
): AsyncGenerator<RunEvent, void, undefined> {
  const maxReconnects = options.maxReconnects ?? 8;
  const initialDelay = options.initialDelayMs ?? 250;
  const maxDelay = options.maxDelayMs ?? 5000;
  const outer = options.signal;

  let runId: string;
  let streamUrl: URL | null;
  let urlLastId = 0;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(runIdOrStreamUrl) || runIdOrStreamUrl.startsWith("/")) {
    // A path (as the API returns it) is relative to the base URL, prefix included.
    streamUrl = resolve(runIdOrStreamUrl.startsWith("/") ? client.baseUrl + runIdOrStreamUrl : runIdOrStreamUrl);
    const match = STREAM_PATH.exec(streamUrl.pathname);
    if (!match?.[1]) throw new TypeError(`not a run stream URL: ${runIdOrStreamUrl}`);
    runId = decodeURIComponent(match[1]);
    // The id goes in Last-Event-ID at each attempt instead; one in the URL counts if none was given.
    urlLastId = Number(streamUrl.searchParams.get("last_event_id") ?? "0");
    streamUrl.searchParams.delete("last_event_id");
    if (!streamUrl.searchParams.get("ticket")) streamUrl = null;
  } else {
    runId = runIdOrStreamUrl;
    streamUrl = null;
  }

  let lastId = Math.max(0, Math.trunc(options.lastEventId ?? (Number.isSafeInteger(urlLastId) ? urlLastId : 0)));
  let failures = 0;
  let unauthorizedInARow = 0;

  const fail = (error: unknown, retryAfterMs?: number): number => {
    failures += 1;
    if (failures > maxReconnects) {
      throw new StreamError(
        "reconnects_exhausted",
        `the stream of run ${runId} failed ${failures} times in a row`,
        runId,
        lastId,
        { cause: error },
      );
    }
    const backoff = Math.min(maxDelay, initialDelay * 2 ** (failures - 1));
    const delay = Math.min(maxDelay, Math.max(retryAfterMs ?? 0, backoff * (0.75 + Math.random() * 0.5)));
    options.onReconnect?.({ attempt: failures, delayMs: delay, lastEventId: lastId, error });
    return delay;
  };

  for (;;) {
    outer?.throwIfAborted();
    const controller = new AbortController();
    const abort = () => controller.abort(outer?.reason);
    outer?.addEventListener("abort", abort, { once: true });
    let delay = 0;
    try {
      const headers = new Headers({ Accept: "text/event-stream" });
      if (lastId > 0) headers.set("Last-Event-ID", String(lastId));
      let url: string;
      let bearer: string | null = null;
      if (streamUrl) {
        url = streamUrl.toString();
      } else {
        url = `${client.baseUrl}/api/v1/runs/${encodeURIComponent(runId)}/stream`;
        bearer = await client.accessToken();
        if (bearer) headers.set("Authorization", `Bearer ${bearer}`);
      }

      let response: Response;
      try {
        response = await client.fetch(url, { headers, signal: controller.signal, cache: "no-store" });
      } catch (error) {
        if (outer?.aborted) throw outer.reason;
        delay = fail(error);
        continue;
      }

      if (response.status === 401) {
        const problem = await ProblemError.fromResponse(response);
        unauthorizedInARow += 1;
        if (unauthorizedInARow > 1) throw problem;
        if (streamUrl) {
          // The ticket expired (or is not this run's): mint a fresh one with the session.
          if (!client.tokens) throw problem;
          const ticket = await client.streamTicket(runId);
          streamUrl = resolve(client.baseUrl + ticket.stream_url);
        } else if (!(await client.tokenAfterUnauthorized(bearer))) {
          throw problem;
        }
        continue;
      }
      if (response.status === 429 || response.status === 503 || response.status >= 500) {
        const problem = await ProblemError.fromResponse(response);
        delay = fail(problem, problem.retryAfter === null ? undefined : problem.retryAfter * 1000);
        continue;
      }
      if (!response.ok || !response.body) throw await ProblemError.fromResponse(response);
      unauthorizedInARow = 0;

      let received = 0;
      try {
        for await (const message of parseSse(response.body)) {
          if (outer?.aborted) throw outer.reason;
          if (message.event === "stream.error") {
            const info = safeJson(message.data) as { code?: string; message?: string } | undefined;
            const code = info?.code ?? "stream_failed";
            if (code === "events_lost") {
              throw new StreamError(code, info?.message ?? "events were lost", runId, lastId);
            }
            // stream_failed (or a code this version does not know): passing, reconnect.
            throw new Reconnect(new StreamError(code, info?.message ?? "the stream failed", runId, lastId));
          }
          const id = message.id === undefined ? NaN : Number(message.id);
          if (!Number.isSafeInteger(id)) continue; // not a run event
          if (id <= lastId) continue; // already delivered
          let data: unknown;
          try {
            data = JSON.parse(message.data);
          } catch (error) {
            throw new StreamError("invalid_event", `event ${id} of run ${runId} is not JSON`, runId, lastId, {
              cause: error,
            });
          }
          lastId = id;
          failures = 0;
          received += 1;
          const event = { id, event: message.event, data } as RunEvent;
          if (KNOWN.has(message.event)) yield event;
          if (isTerminalEvent(event)) return;
        }
        // The server ended the body without a terminal event. Right after a resume, with
        // nothing sent, that is its answer to a client that already had the terminal event
        // (docs/streaming.md, Resuming); otherwise the stream was closed under us.
        if (received === 0 && lastId > 0 && (await runIsOver(client, runId))) return;
        delay = fail(new Error("the stream ended before the run's terminal event"));
      } catch (error) {
        if (error instanceof Reconnect) {
          delay = fail(error.cause);
        } else if (error instanceof StreamError || error instanceof ProblemError) {
          throw error;
        } else if (outer?.aborted) {
          throw outer.reason;
        } else {
          delay = fail(error); // a network error mid-body
        }
      }
    } finally {
      outer?.removeEventListener("abort", abort);
      controller.abort(); // closes the connection, whether we leave by return, throw or break
      if (delay > 0) await sleep(delay, outer);
    }
  }
}

/** An absolute URL; a base URL of "" (same origin) resolves against the page's location. */
function resolve(url: string): URL {
  const location = (globalThis as { location?: { href?: string } }).location;
  return location?.href ? new URL(url, location.href) : new URL(url);
}

/** Whether the run has ended; without a session (a ticket alone), trust the server. */
async function runIsOver(client: SwitchboardClient, runId: string): Promise<boolean> {
  if (!client.tokens) return true;
  try {
    const run = await client.getRun(runId);
    return run.status === "succeeded" || run.status === "failed" || run.status === "cancelled";
  } catch (error) {
    // Gone (a rolled-back run is deleted): nothing more will come.
    return error instanceof ProblemError && error.status === 404;
  }
}

class Reconnect extends Error {
  constructor(cause: unknown) {
    super("reconnect", { cause });
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
