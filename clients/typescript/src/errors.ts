import type { components } from "./schema.js";

/** The API's RFC 9457 problem document (`application/problem+json`). */
export type Problem = components["schemas"]["Problem"];
/** One entry of a `validation_error` problem's `errors`. */
export type ValidationIssue = components["schemas"]["ValidationIssue"];

/**
 * An error answer of the API, thrown by the client's convenience methods, by `unwrap()` and by
 * `streamRun()` before a stream starts. Branch on `code` (stable), never on `title`/`detail`.
 */
export class ProblemError extends Error {
  override readonly name = "ProblemError";
  /** HTTP status. */
  readonly status: number;
  /** Stable machine-readable code, e.g. `auth.invalid_token`, `run.not_found`, `validation_error`.
   * A body that is not a problem document gets `http.<status>`. */
  readonly code: string;
  /** `urn:switchboard:problem:<code>`. */
  readonly type: string;
  readonly title: string;
  /** A sentence for humans. */
  readonly detail: string;
  /** Only on `validation_error`: each offending field. */
  readonly errors: ValidationIssue[] | undefined;
  /** The response headers (`Retry-After`, `X-Request-ID`, `RateLimit`, ...). */
  readonly headers: Headers;
  /** `Retry-After` in seconds (423, 429, 503, 402), or `null`. */
  readonly retryAfter: number | null;
  /** `X-Request-ID` of the answer, to quote when reporting a problem. */
  readonly requestId: string | null;
  /** The parsed body (the problem document, or whatever the server sent). */
  readonly body: unknown;

  constructor(status: number, body: unknown, headers: Headers = new Headers()) {
    const problem = isProblemLike(body) ? body : undefined;
    const code = typeof problem?.code === "string" ? problem.code : `http.${status}`;
    const detail =
      typeof problem?.detail === "string"
        ? problem.detail
        : typeof body === "string" && body
          ? body.slice(0, 200)
          : `HTTP ${status}`;
    super(`${status} ${code}: ${detail}`);
    this.status = status;
    this.code = code;
    this.type = typeof problem?.type === "string" ? problem.type : `urn:switchboard:problem:${code}`;
    this.title = typeof problem?.title === "string" ? problem.title : "";
    this.detail = detail;
    this.errors = Array.isArray(problem?.errors) ? (problem.errors as ValidationIssue[]) : undefined;
    this.headers = headers;
    this.retryAfter = parseRetryAfter(headers.get("Retry-After"));
    this.requestId = headers.get("X-Request-ID");
    this.body = body;
  }

  /** Reads a failed response's body (JSON if it parses) into a ProblemError. */
  static async fromResponse(response: Response): Promise<ProblemError> {
    let body: unknown;
    try {
      const text = await response.text();
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    } catch {
      body = undefined;
    }
    return new ProblemError(response.status, body, response.headers);
  }
}

/**
 * A run stream that could not be followed to its terminal event. `code`:
 * - `events_lost`: the server no longer holds the events after `lastEventId` (`stream.error`);
 *   read `GET /api/v1/runs/{run_id}` and the conversation for the outcome.
 * - `reconnects_exhausted`: the connection kept failing (network, `stream_failed`, 5xx, 429)
 *   `maxReconnects` times in a row without delivering an event; `cause` holds the last failure.
 * - `invalid_event`: the server sent an event whose data is not JSON.
 */
export class StreamError extends Error {
  override readonly name = "StreamError";
  readonly code: string;
  readonly runId: string;
  /** Id of the last event delivered to the caller (0 if none): resume from it. */
  readonly lastEventId: number;

  constructor(code: string, message: string, runId: string, lastEventId: number, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.runId = runId;
    this.lastEventId = lastEventId;
  }
}

interface ProblemLike {
  code?: unknown;
  detail?: unknown;
  type?: unknown;
  title?: unknown;
  errors?: unknown;
}

function isProblemLike(body: unknown): body is ProblemLike {
  return typeof body === "object" && body !== null && !Array.isArray(body);
}

function parseRetryAfter(value: string | null): number | null {
  if (value === null || value.trim() === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}
