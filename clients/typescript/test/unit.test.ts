// Client behaviour the real API cannot be made to show on demand (overlapping replays,
// stream.error, 503s), against scripted responses.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ProblemError, StreamError, SwitchboardClient, parseSse, type RunEvent } from "../src/index.js";

const RUN = "8749bc8c-b170-45ad-a1f9-8df3f03cdd25";

function body(chunks: (string | Error)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks[i++];
      if (chunk === undefined) controller.close();
      else if (chunk instanceof Error) controller.error(chunk);
      else controller.enqueue(encoder.encode(chunk));
    },
  });
}

function sse(id: number, event: string, data: Record<string, unknown> = {}): string {
  return `id: ${id}\r\nevent: ${event}\r\ndata: ${JSON.stringify({ run_id: RUN, seq: id, ...data })}\r\n\r\n`;
}

interface Scripted {
  status?: number;
  chunks?: (string | Error)[];
  json?: unknown;
  headers?: Record<string, string>;
}

/** A fetch answering the scripted responses in turn, recording each request. */
function scripted(responses: Scripted[]) {
  const requests: Request[] = [];
  const fetch = async (input: Request | string | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    requests.push(request);
    const next = responses.shift();
    if (!next) throw new Error(`unexpected request ${request.method} ${request.url}`);
    if (next.json !== undefined) {
      return new Response(JSON.stringify(next.json), {
        status: next.status ?? 200,
        headers: { "Content-Type": "application/problem+json", ...next.headers },
      });
    }
    return new Response(body(next.chunks ?? []), {
      status: next.status ?? 200,
      headers: { "Content-Type": "text/event-stream", ...next.headers },
    });
  };
  return { fetch, requests };
}

function client(fetch: ReturnType<typeof scripted>["fetch"]): SwitchboardClient {
  return new SwitchboardClient({
    baseUrl: "http://api.test",
    fetch,
    tokens: { access_token: "not-a-jwt", refresh_token: "rt_x" },
  });
}

async function collect(events: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const all: RunEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

const fast = { initialDelayMs: 1, maxDelayMs: 5 };

describe("parseSse", () => {
  test("CRLF, LF and CR line ends, split anywhere; comments skipped; multi-line data", async () => {
    const text = ": ping\r\nid: 1\r\nevent: a\r\ndata: {\"x\":1}\r\n\r\n: ping\n\nid: 2\nevent: b\ndata: one\ndata: two\n\rid:3\revent:c\rdata:x\r\r";
    for (const size of [1, 2, 3, 7, text.length]) {
      const chunks: string[] = [];
      for (let i = 0; i < text.length; i += size) chunks.push(text.slice(i, i + size));
      const messages = [];
      for await (const message of parseSse(body(chunks))) messages.push(message);
      assert.deepEqual(messages, [
        { id: "1", event: "a", data: '{"x":1}' },
        { id: "2", event: "b", data: "one\ntwo" },
        { id: "3", event: "c", data: "x" },
      ]);
    }
  });

  test("an unfinished last message is dropped", async () => {
    const messages = [];
    for await (const message of parseSse(body(["id: 1\nevent: a\ndata: {}\n\nid: 2\nevent: b\ndata: {"]))) {
      messages.push(message);
    }
    assert.deepEqual(messages.map((message) => message.id), ["1"]);
  });
});

describe("streamRun", () => {
  test("drops events replayed twice and resumes with the last delivered id", async () => {
    const { fetch, requests } = scripted([
      { chunks: [sse(1, "run.queued"), sse(2, "run.started", { agent: "triage" }), "id: 3\nevent: message.del", new Error("reset")] },
      { chunks: [sse(2, "run.started", { agent: "triage" }), sse(3, "message.delta", { delta: "hi" }), ": ping\r\n\r\n"] },
      { chunks: [sse(3, "message.delta", { delta: "hi" }), sse(4, "some.future_event"), sse(5, "run.completed", { usage: {} }), sse(6, "message.delta")] },
    ]);
    const events = await collect(client(fetch).streamRun(RUN, fast));
    assert.deepEqual(
      events.map((event) => [event.id, event.event]),
      [
        [1, "run.queued"],
        [2, "run.started"],
        [3, "message.delta"],
        [5, "run.completed"],
      ],
    );
    assert.deepEqual(
      requests.map((request) => request.headers.get("Last-Event-ID")),
      [null, "2", "3"],
    );
    assert.equal(requests[0]!.headers.get("Authorization"), "Bearer not-a-jwt");
  });

  test("stream.error stream_failed reconnects; events_lost throws StreamError", async () => {
    const failed = 'event: stream.error\r\ndata: {"code":"stream_failed","message":"m"}\r\n\r\n';
    const lost = 'event: stream.error\r\ndata: {"code":"events_lost","message":"gone"}\r\n\r\n';
    const { fetch } = scripted([
      { chunks: [sse(1, "run.queued"), failed] },
      { chunks: [sse(2, "run.started"), lost] },
    ]);
    await assert.rejects(collect(client(fetch).streamRun(RUN, fast)), (error: unknown) => {
      assert.ok(error instanceof StreamError);
      assert.equal(error.code, "events_lost");
      assert.equal(error.lastEventId, 2);
      assert.equal(error.runId, RUN);
      return true;
    });
  });

  test("503 waits Retry-After and retries; too many failures in a row give up", async () => {
    const unavailable = { status: 503, json: { code: "service_unavailable", detail: "x" }, headers: { "Retry-After": "0" } };
    const { fetch } = scripted([unavailable, { chunks: [sse(1, "run.cancelled")] }]);
    assert.deepEqual((await collect(client(fetch).streamRun(RUN, fast))).map((event) => event.event), ["run.cancelled"]);

    const { fetch: failing } = scripted([unavailable, unavailable, unavailable]);
    await assert.rejects(collect(client(failing).streamRun(RUN, { ...fast, maxReconnects: 2 })), (error: unknown) => {
      assert.ok(error instanceof StreamError);
      assert.equal(error.code, "reconnects_exhausted");
      assert.ok(error.cause instanceof ProblemError);
      return true;
    });
  });

  test("a 401 on a ticketed URL mints one ticket; a second 401 in a row throws", async () => {
    const refused = { status: 401, json: { code: "auth.invalid_token", detail: "x" } };
    const ticket = { json: { stream_url: `/api/v1/runs/${RUN}/stream?ticket=fresh`, expires_at: "2030-01-01T00:00:00Z" } };
    const { fetch, requests } = scripted([refused, ticket, { chunks: [sse(1, "run.completed")] }]);
    const url = `/api/v1/runs/${RUN}/stream?ticket=old&last_event_id=0`;
    assert.equal((await collect(client(fetch).streamRun(url, fast))).length, 1);
    assert.deepEqual(
      requests.map((request) => `${request.method} ${new URL(request.url).pathname}${new URL(request.url).search}`),
      [
        `GET /api/v1/runs/${RUN}/stream?ticket=old`,
        `POST /api/v1/runs/${RUN}/stream-ticket`,
        `GET /api/v1/runs/${RUN}/stream?ticket=fresh`,
      ],
    );
    assert.equal(requests[0]!.headers.get("Authorization"), null, "a ticket stream sends no token");

    // A last_event_id in the URL is where the stream starts, sent as Last-Event-ID.
    const { fetch: resumed, requests: resumedRequests } = scripted([{ chunks: [sse(3, "message.delta"), sse(4, "run.completed")] }]);
    const from = await collect(client(resumed).streamRun(`http://api.test/api/v1/runs/${RUN}/stream?ticket=t&last_event_id=2`, fast));
    assert.deepEqual(from.map((event) => event.id), [3, 4]);
    assert.equal(resumedRequests[0]!.headers.get("Last-Event-ID"), "2");
    assert.equal(new URL(resumedRequests[0]!.url).search, "?ticket=t");

    const { fetch: twice } = scripted([refused, ticket, refused]);
    await assert.rejects(collect(client(twice).streamRun(url, fast)), { name: "ProblemError", status: 401 });
  });
});
