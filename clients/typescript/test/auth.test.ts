import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { ProblemError, SwitchboardClient, type Tokens } from "../src/index.js";
import { BASE_URL, PASSWORD, recordingFetch, signUp } from "./helpers.js";

/** The same JWT with its signature changed: the API refuses it (401 auth.invalid_token). */
function tampered(jwt: string): string {
  const [header, payload, signature] = jwt.split(".");
  const flipped = (signature!.startsWith("A") ? "B" : "A") + signature!.slice(1);
  return `${header}.${payload}.${flipped}`;
}

/** The same JWT with `exp` an hour ago (and so a signature that no longer matches). */
function expired(jwt: string): string {
  const [header, payload, signature] = jwt.split(".");
  const claims = JSON.parse(Buffer.from(payload!, "base64url").toString("utf8")) as Record<string, unknown>;
  claims.exp = Math.floor(Date.now() / 1000) - 3600;
  return `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${signature}`;
}

function refreshes(calls: { path: string }[]): number {
  return calls.filter((call) => call.path === "/api/v1/auth/refresh").length;
}

describe("authentication", () => {
  test("signIn keeps the tokens and reports them; signOut revokes and forgets them", async () => {
    const seen: (Tokens | null)[] = [];
    const { client, email } = await signUp({ onTokens: (tokens) => seen.push(tokens) });
    assert.equal(seen.length, 1);
    assert.ok(seen[0]?.access_token && seen[0].refresh_token.startsWith("rt_"));
    const me = await client.me();
    assert.equal(me.user.email, email);
    const refreshToken = client.tokens!.refresh_token;

    await client.signOut();
    assert.equal(client.tokens, null);
    assert.equal(seen.at(-1), null);
    await assert.rejects(client.me(), (error: unknown) => error instanceof ProblemError && error.code === "auth.invalid_token");
    // The refresh token's family was revoked.
    const revoked = new SwitchboardClient({ baseUrl: BASE_URL, tokens: { access_token: "x", refresh_token: refreshToken } });
    await assert.rejects(revoked.refresh(), (error: unknown) => error instanceof ProblemError && error.status === 401);
    assert.equal(revoked.tokens, null, "a refused refresh ends the session");
  });

  test("a refused access token is refreshed once and the request sent again", async () => {
    const { client, email } = await signUp();
    const { fetch, calls } = recordingFetch();
    const seen: (Tokens | null)[] = [];
    const tokens = client.tokens!;
    const stale = new SwitchboardClient({
      baseUrl: BASE_URL,
      fetch,
      tokens: { ...tokens, access_token: tampered(tokens.access_token) },
      onTokens: (next) => seen.push(next),
    });
    assert.equal((await stale.me()).user.email, email);
    assert.equal(refreshes(calls), 1);
    assert.deepEqual(
      calls.map((call) => call.path),
      ["/api/v1/auth/me", "/api/v1/auth/refresh", "/api/v1/auth/me"],
    );
    assert.equal(seen.length, 1);
    assert.notEqual(seen[0]!.refresh_token, tokens.refresh_token, "the refresh token rotated");
    assert.equal(stale.tokens!.access_token, seen[0]!.access_token);
    // A POST with a body is sent again with its body.
    const accepted = await new SwitchboardClient({
      baseUrl: BASE_URL,
      tokens: { ...stale.tokens!, access_token: tampered(stale.tokens!.access_token) },
    }).chat({ message: "hello again" });
    assert.equal(accepted.status, "queued");
  });

  test("concurrent requests with a refused token share one refresh", async () => {
    const { client } = await signUp();
    const { fetch, calls } = recordingFetch();
    const tokens = client.tokens!;
    const stale = new SwitchboardClient({
      baseUrl: BASE_URL,
      fetch,
      tokens: { ...tokens, access_token: tampered(tokens.access_token) },
    });
    const answers = await Promise.all(Array.from({ length: 5 }, () => stale.me()));
    assert.equal(new Set(answers.map((me) => me.user.id)).size, 1);
    assert.equal(refreshes(calls), 1, "one refresh for five requests");
  });

  test("an expired access token is refreshed before it is sent", async () => {
    const { client } = await signUp();
    const { fetch, calls } = recordingFetch();
    const tokens = client.tokens!;
    const old = expired(tokens.access_token);
    const stale = new SwitchboardClient({ baseUrl: BASE_URL, fetch, tokens: { ...tokens, access_token: old } });
    await stale.me();
    assert.deepEqual(
      calls.map((call) => call.path),
      ["/api/v1/auth/refresh", "/api/v1/auth/me"],
    );
    assert.ok(!calls.some((call) => call.authorization === `Bearer ${old}`), "the expired token was never sent");
    // streamRun refreshes the same way.
    const stale2 = new SwitchboardClient({
      baseUrl: BASE_URL,
      tokens: { ...stale.tokens!, access_token: expired(stale.tokens!.access_token) },
    });
    const accepted = await client.chat({ message: "hi" });
    const events = [];
    for await (const event of stale2.streamRun(accepted.run_id)) events.push(event.event);
    assert.equal(events.at(-1), "run.completed");
    assert.notEqual(stale2.tokens!.access_token, stale.tokens!.access_token, "it was refreshed");
  });

  test("problem documents become ProblemError with status, code and headers", async () => {
    const { client } = await signUp();
    await assert.rejects(client.chat({ message: "" }), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.ok(error instanceof Error);
      assert.equal(error.status, 422);
      assert.equal(error.code, "validation_error");
      assert.equal(error.type, "urn:switchboard:problem:validation_error");
      assert.deepEqual(error.errors?.[0]?.loc, ["body", "message"]);
      assert.ok(error.requestId);
      return true;
    });
    await assert.rejects(client.getRun(randomUUID()), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 404);
      assert.equal(error.code, "run.not_found");
      return true;
    });
    await assert.rejects(client.chat({ message: "hi", agent: "nobody" }), { name: "ProblemError", code: "agent.unknown" });
    const anonymous = new SwitchboardClient({ baseUrl: BASE_URL });
    await assert.rejects(anonymous.signIn(`nobody-${randomUUID()}@example.com`, PASSWORD), {
      status: 401,
      code: "identity.invalid_credentials",
    });
    await assert.rejects(anonymous.me(), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.code, "auth.invalid_token");
      assert.match(error.headers.get("WWW-Authenticate") ?? "", /invalid_token/);
      return true;
    });
  });

  test("api is the typed openapi-fetch client, authenticated", async () => {
    const { client } = await signUp();
    const { data, error, response } = await client.api.GET("/api/v1/agents");
    assert.equal(response.status, 200);
    assert.equal(error, undefined);
    assert.ok(data?.some((agent) => agent.name === "triage"));
  });
});
