import createClient, { type Client, type Middleware } from "openapi-fetch";

import { ProblemError } from "./errors.js";
import type { RunEvent } from "./events.js";
import type { components, paths } from "./schema.js";
import { streamRun, type StreamRunOptions } from "./stream.js";

export type Schemas = components["schemas"];
export type TokenPair = Schemas["TokenPair"];
export type ChatAccepted = Schemas["ChatAccepted"];
export type ChatRequest = Schemas["ChatRequest"];
export type ApprovalDecision = Schemas["ApprovalDecision"];
export type StreamTicket = Schemas["StreamTicketRead"];
export type Run = Schemas["RunRead"];
export type RegisterRequest = Schemas["RegisterRequest"];
export type MultitaskStrategy = Schemas["MultitaskStrategy"];

/** The session's tokens: what to keep (e.g. in storage) to resume it later. */
export interface Tokens {
  access_token: string;
  refresh_token: string;
}

export type FetchLike = (input: Request | string | URL, init?: RequestInit) => Promise<Response>;

export interface SwitchboardClientOptions {
  /** The API's origin (and prefix, if any), e.g. `http://127.0.0.1:8000`. */
  baseUrl: string;
  /** A fetch implementation; the global `fetch` by default. */
  fetch?: FetchLike;
  /** A session to resume. */
  tokens?: Tokens | null;
  /** Called whenever the tokens change: sign-in, refresh (with the new pair) and sign-out or a
   * refused refresh (with `null`). Persist them here. */
  onTokens?: (tokens: Tokens | null) => void;
}

export interface ChatOptions {
  message: string;
  conversation_id?: string | null;
  agent?: string | null;
  multitask_strategy?: MultitaskStrategy;
}

/** Paths a token is never sent to, nor refreshed for. */
const NO_AUTH = new Set([
  "/api/v1/auth/login",
  "/api/v1/auth/token",
  "/api/v1/auth/register",
  "/api/v1/auth/refresh",
  "/api/v1/auth/logout",
  "/api/v1/auth/password/forgot",
  "/api/v1/auth/password/reset",
  "/api/v1/auth/invitations/accept",
]);

/** Seconds before `exp` at which an access token is refreshed before use. */
const EXPIRY_MARGIN_SECONDS = 5;

/**
 * A typed client of the Switchboard API. `api` is an openapi-fetch client for every endpoint
 * (typed by the OpenAPI document); the methods cover sign-in, chat and runs and throw
 * `ProblemError` on error answers.
 *
 * Authentication: a Bearer access token is added to each request. An access token past its
 * `exp`, or answered with 401 `auth.invalid_token`, is refreshed once with the refresh token
 * (concurrent callers share one refresh) and the request is sent again. A refused refresh ends
 * the session (`onTokens(null)`).
 */
export class SwitchboardClient {
  readonly baseUrl: string;
  /** openapi-fetch client with the auth middleware: `{data, error, response}` per call. */
  readonly api: Client<paths>;
  readonly fetch: FetchLike;
  #tokens: Tokens | null;
  #onTokens: ((tokens: Tokens | null) => void) | undefined;
  #refreshing: Promise<Tokens | null> | null = null;

  constructor(options: SwitchboardClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    const custom = options.fetch;
    // Resolved at call time, and never called as a method of another object (browsers refuse).
    this.fetch = custom ?? ((input, init) => globalThis.fetch(input, init));
    this.#tokens = options.tokens ? { ...options.tokens } : null;
    this.#onTokens = options.onTokens;
    this.api = createClient<paths>({ baseUrl: this.baseUrl, fetch: (request: Request) => this.fetch(request) });
    this.api.use(this.#authMiddleware());
  }

  /** The current tokens, or `null` when signed out. */
  get tokens(): Tokens | null {
    return this.#tokens ? { ...this.#tokens } : null;
  }

  /** Replaces the session's tokens (e.g. from storage); calls `onTokens`. */
  setTokens(tokens: Tokens | null): void {
    this.#tokens = tokens ? { access_token: tokens.access_token, refresh_token: tokens.refresh_token } : null;
    this.#onTokens?.(this.tokens);
  }

  // ---- identity --------------------------------------------------------------------------

  /** `POST /api/v1/auth/register`: a new tenant and its owner. Does not sign in. */
  async register(body: RegisterRequest): Promise<Schemas["RegisterResult"]> {
    return unwrap(await this.api.POST("/api/v1/auth/register", { body }));
  }

  /** `POST /api/v1/auth/login`: signs in and keeps the tokens. */
  async signIn(email: string, password: string, options: { tenantId?: string } = {}): Promise<TokenPair> {
    const pair = unwrap(
      await this.api.POST("/api/v1/auth/login", {
        body: { email, password, ...(options.tenantId ? { tenant_id: options.tenantId } : {}) },
      }),
    );
    this.setTokens(pair);
    return pair;
  }

  /** `POST /api/v1/auth/logout` (revokes the refresh token's family) and forgets the tokens.
   * Never throws for the server's answer: the local session ends either way. */
  async signOut(): Promise<void> {
    const tokens = this.#tokens;
    this.#tokens = null;
    this.#refreshing = null;
    if (tokens) {
      try {
        await this.api.POST("/api/v1/auth/logout", { body: { refresh_token: tokens.refresh_token } });
      } catch {
        // offline: the tokens are forgotten anyway
      }
    }
    this.#onTokens?.(null);
  }

  /**
   * `POST /api/v1/auth/refresh` with the current refresh token; concurrent calls share one
   * request. Resolves to the new tokens. A 401 ends the session (`onTokens(null)`) and throws.
   */
  refresh(): Promise<Tokens> {
    return this.#refreshOnce(this.#tokens?.access_token ?? null).then((tokens) => {
      if (!tokens) throw new ProblemError(401, { code: "auth.invalid_token", detail: "Not signed in." });
      return tokens;
    });
  }

  /** `GET /api/v1/auth/me`. */
  async me(): Promise<Schemas["MeRead"]> {
    return unwrap(await this.api.GET("/api/v1/auth/me"));
  }

  /** An access token valid for a while: refreshed first when expired. `null` when signed out. */
  async accessToken(): Promise<string | null> {
    const tokens = this.#tokens;
    if (!tokens) return null;
    if (!isExpired(tokens.access_token)) return tokens.access_token;
    const fresh = await this.#refreshOnce(tokens.access_token).catch(() => null);
    return fresh?.access_token ?? null;
  }

  // ---- chat and runs ---------------------------------------------------------------------

  /** `POST /api/v1/chat`: starts a run; follow it with `streamRun(accepted.stream_url)`. */
  async chat(request: ChatOptions): Promise<ChatAccepted> {
    return unwrap(await this.api.POST("/api/v1/chat", { body: request as ChatRequest }));
  }

  /** `GET /api/v1/runs/{run_id}`. */
  async getRun(runId: string): Promise<Run> {
    return unwrap(await this.api.GET("/api/v1/runs/{run_id}", { params: { path: { run_id: runId } } }));
  }

  /** `POST /api/v1/runs/{run_id}/cancel` (202). The stream then ends with the run's terminal event. */
  async cancel(runId: string): Promise<void> {
    unwrap(await this.api.POST("/api/v1/runs/{run_id}/cancel", { params: { path: { run_id: runId } } }));
  }

  /** `POST /api/v1/runs/{run_id}/approvals`: decides tool calls of `run.requires_action`. */
  async decide(runId: string, decisions: ApprovalDecision[]): Promise<void> {
    unwrap(
      await this.api.POST("/api/v1/runs/{run_id}/approvals", {
        params: { path: { run_id: runId } },
        body: { decisions },
      }),
    );
  }

  /** `POST /api/v1/runs/{run_id}/stream-ticket`: a fresh ticketed `stream_url`. */
  async streamTicket(runId: string): Promise<StreamTicket> {
    return unwrap(
      await this.api.POST("/api/v1/runs/{run_id}/stream-ticket", { params: { path: { run_id: runId } } }),
    );
  }

  /** The run's events, each once and in order, up to its terminal event. See `streamRun`. */
  streamRun(runIdOrStreamUrl: string, options: StreamRunOptions = {}): AsyncGenerator<RunEvent, void, undefined> {
    return streamRun(this, runIdOrStreamUrl, options);
  }

  // ---- internals -------------------------------------------------------------------------

  /**
   * After a 401 to a request sent with `usedToken`: the token to try again with, refreshing
   * unless another call already replaced it. `null`: no session, or the refresh was refused.
   * @internal
   */
  async tokenAfterUnauthorized(usedToken: string | null): Promise<string | null> {
    const current = this.#tokens;
    if (!current) return null;
    if (usedToken !== null && current.access_token !== usedToken) return current.access_token;
    const fresh = await this.#refreshOnce(current.access_token).catch(() => null);
    return fresh?.access_token ?? null;
  }

  #refreshOnce(staleAccessToken: string | null): Promise<Tokens | null> {
    if (this.#refreshing) return this.#refreshing;
    const tokens = this.#tokens;
    if (!tokens) return Promise.resolve(null);
    // Another refresh finished since the caller read its token: use that one.
    if (staleAccessToken !== null && tokens.access_token !== staleAccessToken) return Promise.resolve(tokens);
    const promise = (async () => {
      const { data, error, response } = await this.api.POST("/api/v1/auth/refresh", {
        body: { refresh_token: tokens.refresh_token },
      });
      if (data) {
        // A sign-out or sign-in while refreshing wins.
        if (this.#tokens?.refresh_token === tokens.refresh_token) this.setTokens(data);
        return this.tokens;
      }
      const problem = new ProblemError(response.status, error, response.headers);
      if (response.status === 401 && this.#tokens?.refresh_token === tokens.refresh_token) {
        // The refresh token is spent, revoked or expired: the session is over.
        this.#tokens = null;
        this.#onTokens?.(null);
      }
      throw problem;
    })();
    this.#refreshing = promise;
    const clear = () => {
      if (this.#refreshing === promise) this.#refreshing = null;
    };
    promise.then(clear, clear);
    return promise;
  }

  #authMiddleware(): Middleware {
    const pending = new Map<string, { retry: Request; token: string }>();
    return {
      onRequest: async ({ request, schemaPath, id }) => {
        if (NO_AUTH.has(schemaPath) || request.headers.has("Authorization")) return undefined;
        const token = await this.accessToken();
        if (!token) return undefined;
        request.headers.set("Authorization", `Bearer ${token}`);
        pending.set(id, { retry: request.clone(), token });
        return request;
      },
      onResponse: async ({ response, id }) => {
        const sent = pending.get(id);
        pending.delete(id);
        if (!sent || response.status !== 401) return undefined;
        const code = await response
          .clone()
          .json()
          .then((body: { code?: unknown }) => body?.code)
          .catch(() => undefined);
        if (code !== "auth.invalid_token") return undefined;
        const token = await this.tokenAfterUnauthorized(sent.token);
        if (!token) return undefined;
        const headers = new Headers(sent.retry.headers);
        headers.set("Authorization", `Bearer ${token}`);
        return this.fetch(new Request(sent.retry, { headers }));
      },
      onError: ({ id }) => {
        pending.delete(id);
        return undefined;
      },
    };
  }
}

/**
 * The `data` of an openapi-fetch result, or a thrown `ProblemError` for an error answer:
 * `const run = unwrap(await client.api.GET("/api/v1/runs/{run_id}", {...}))`.
 */
export function unwrap<T>(result: { data?: T; error?: unknown; response: Response }): T {
  if (result.response.ok) return result.data as T;
  throw new ProblemError(result.response.status, result.error, result.response.headers);
}

/** Whether a JWT's `exp` (read without verifying: the server verifies) is at most
 * `EXPIRY_MARGIN_SECONDS` away. A token that cannot be read counts as not expired. */
function isExpired(jwt: string): boolean {
  const payload = jwt.split(".")[1];
  if (!payload) return false;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims = JSON.parse(atob(padded)) as { exp?: unknown };
    return typeof claims.exp === "number" && claims.exp - EXPIRY_MARGIN_SECONDS <= Date.now() / 1000;
  } catch {
    return false;
  }
}
