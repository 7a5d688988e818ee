import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";

import { ProblemError, SwitchboardClient, streamRun, type RunEvent } from "../src/index.js";
import {
  BASE_URL,
  CuttingProxy,
  collect,
  deltas,
  ids,
  longMessage,
  range,
  recordingFetch,
  signUp,
  storedReply,
} from "./helpers.js";

function assertWholeRun(events: RunEvent[], terminal = "run.completed"): void {
  assert.deepEqual(ids(events), range(1, events.length), "ids 1..n, each once, in order");
  assert.equal(events[0]?.event, "run.queued");
  assert.equal(events.at(-1)?.event, terminal);
  for (const event of events) assert.equal(event.data.seq, event.id);
}

describe("streamRun against the API", () => {
  test("follows a chat's stream_url to run.completed; deltas add up to the stored reply", async () => {
    const { client } = await signUp();
    const accepted = await client.chat({ message: "please check my invoice" });
    assert.equal(accepted.status, "queued");
    assert.match(accepted.stream_url, /\?ticket=/);

    const events = await collect(client.streamRun(accepted.stream_url));
    assertWholeRun(events);
    const types = events.map((event) => event.event);
    assert.ok(types.includes("agent.updated"), "triage hands off to billing");
    const text = deltas(events);
    assert.equal(text, "please check my invoice");
    assert.equal(text, await storedReply(client, accepted.conversation_id));
    const completed = events.find((event) => event.event === "message.completed");
    assert.ok(completed && completed.event === "message.completed");
    assert.equal(completed.data.content, text);
    const last = events.at(-1);
    assert.ok(last?.event === "run.completed");
    assert.ok(last.data.usage.output_tokens > 0);
    assert.equal((await client.getRun(accepted.run_id)).status, "succeeded");
  });

  test("follows a run by id with the Bearer token, and resumes after lastEventId", async () => {
    const { client } = await signUp();
    const accepted = await client.chat({ message: longMessage(12) });
    const all = await collect(streamRun(client, accepted.run_id));
    assertWholeRun(all);

    // The run is over and its events are buffered: a resume sends exactly what follows.
    const rest = await collect(client.streamRun(accepted.run_id, { lastEventId: 5 }));
    assert.deepEqual(ids(rest), range(6, all.length));
    assert.deepEqual(rest, all.slice(5));
    // Resuming from the terminal event ends at once, with nothing.
    assert.deepEqual(await collect(client.streamRun(accepted.run_id, { lastEventId: all.length })), []);
  });

  test("a connection cut mid-stream is resumed: every event once, in order", async () => {
    const { client: direct } = await signUp();
    const proxy = await CuttingProxy.start(BASE_URL, 3000);
    try {
      const client = new SwitchboardClient({ baseUrl: proxy.url, tokens: direct.tokens });
      const message = longMessage(60);
      const accepted = await client.chat({ message });
      const reconnects: number[] = [];
      const events: RunEvent[] = [];
      for await (const event of client.streamRun(accepted.stream_url, {
        initialDelayMs: 50,
        onReconnect: ({ lastEventId }) => {
          reconnects.push(lastEventId);
        },
      })) {
        events.push(event);
      }
      assert.equal(proxy.cuts, 1, "the proxy cut one connection");
      assert.equal(reconnects.length, 1, "one reconnect");
      assert.ok(reconnects[0]! > 1, `the cut fell mid-stream (after event ${reconnects[0]})`);
      assert.ok(reconnects[0]! < events.length - 1, "events followed the reconnect");
      assertWholeRun(events);
      assert.equal(deltas(events), message);
      assert.equal(deltas(events), await storedReply(direct, accepted.conversation_id));
    } finally {
      await proxy.close();
    }
  });

  test("a ticket the API refuses (401) is replaced with a fresh one", async () => {
    const { client } = await signUp();
    const { fetch, calls } = recordingFetch();
    const recorded = new SwitchboardClient({ baseUrl: BASE_URL, tokens: client.tokens, fetch });
    const first = await recorded.chat({ message: longMessage(8) });
    const other = await recorded.chat({ message: "hello there" });
    // The other run's ticket names another run: 401 auth.invalid_token, as an expired one.
    const otherTicket = new URL(other.stream_url, BASE_URL).searchParams.get("ticket")!;
    const wrongUrl = `/api/v1/runs/${first.run_id}/stream?ticket=${encodeURIComponent(otherTicket)}`;

    const events = await collect(recorded.streamRun(wrongUrl));
    assertWholeRun(events);
    assert.equal(deltas(events), await storedReply(client, first.conversation_id));
    const minted = calls.filter((call) => call.path === `/api/v1/runs/${first.run_id}/stream-ticket`);
    assert.equal(minted.length, 1, "one fresh ticket");
  });

  test("cancel() ends the stream with run.cancelled, keeping what was said", async () => {
    const { client } = await signUp();
    const accepted = await client.chat({ message: longMessage(80) });
    const events: RunEvent[] = [];
    for await (const event of client.streamRun(accepted.stream_url)) {
      events.push(event);
      if (event.event === "message.delta" && event.data.delta === "word2 ") await client.cancel(accepted.run_id);
    }
    assertWholeRun(events, "run.cancelled");
    const completed = events.find((event) => event.event === "message.completed");
    assert.ok(completed?.event === "message.completed" && completed.data.incomplete);
    assert.equal(completed.data.content, deltas(events));
    await assert.rejects(client.cancel(accepted.run_id), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 409);
      assert.equal(error.code, "run.finished");
      return true;
    });
  });

  test("tool approvals: decide() resumes a run waiting in run.requires_action", async () => {
    const { client } = await signUp();
    const accepted = await client.chat({ message: "please cancel my subscription" });
    const events: RunEvent[] = [];
    for await (const event of client.streamRun(accepted.stream_url)) {
      events.push(event);
      if (event.event === "run.requires_action") {
        const approval = event.data.approvals[0]!;
        assert.equal(approval.tool, "cancel_subscription");
        await client.decide(accepted.run_id, [{ id: approval.id, approve: false, reason: "not now" }]);
      }
    }
    assertWholeRun(events);
    const output = events.find((event) => event.event === "tool.output");
    assert.ok(output?.event === "tool.output");
    assert.match(output.data.output, /did not approve/);
  });

  test("an unknown run is a ProblemError 404 run.not_found; breaking out closes the stream", async () => {
    const { client } = await signUp();
    await assert.rejects(collect(client.streamRun(randomUUID())), (error: unknown) => {
      assert.ok(error instanceof ProblemError);
      assert.equal(error.status, 404);
      assert.equal(error.code, "run.not_found");
      return true;
    });
    const accepted = await client.chat({ message: longMessage(30) });
    for await (const event of client.streamRun(accepted.stream_url)) {
      if (event.event === "message.delta") break;
    }
    const rest = await collect(client.streamRun(accepted.run_id, { lastEventId: 1 }));
    assert.equal(rest.at(-1)?.event, "run.completed");
  });

  test("an aborted signal stops the stream with its reason", async () => {
    const { client } = await signUp();
    const accepted = await client.chat({ message: longMessage(40) });
    const controller = new AbortController();
    const seen: RunEvent[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of client.streamRun(accepted.stream_url, { signal: controller.signal })) {
          seen.push(event);
          if (event.event === "message.delta") controller.abort(new Error("enough"));
        }
      })(),
      /enough/,
    );
    assert.ok(seen.length >= 2);
  });
});
