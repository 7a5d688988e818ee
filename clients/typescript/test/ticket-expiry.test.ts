import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";

import { SwitchboardClient } from "../src/index.js";
import { BASE_URL, collect, deltas, ids, range, recordingFetch, signUp, storedReply } from "./helpers.js";

// The API process of tests/clients/test_typescript.py issues tickets for this long, with no
// clock-skew leeway.
const TICKET_TTL_SECONDS = Number(process.env.SWITCHBOARD_TICKET_TTL_SECONDS ?? "0");

test(
  "an expired ticket (401 on open) is replaced with a fresh one",
  { skip: TICKET_TTL_SECONDS > 0 ? false : "SWITCHBOARD_TICKET_TTL_SECONDS is not set" },
  async () => {
    const { client } = await signUp();
    const { fetch, calls } = recordingFetch();
    const recorded = new SwitchboardClient({ baseUrl: BASE_URL, fetch, tokens: client.tokens });
    const accepted = await recorded.chat({ message: "what time is it" });
    const expiresAt = Date.now() + TICKET_TTL_SECONDS * 1000;
    // Meanwhile the run finishes: its events stay in the replay buffer.
    await sleep(expiresAt - Date.now() + 1500);

    const events = await collect(recorded.streamRun(accepted.stream_url));
    assert.deepEqual(ids(events), range(1, events.length));
    assert.equal(events.at(-1)?.event, "run.completed");
    assert.equal(deltas(events), await storedReply(client, accepted.conversation_id));
    const streams = calls.filter((call) => call.path.endsWith("/stream"));
    const minted = calls.filter((call) => call.path.endsWith("/stream-ticket"));
    assert.equal(streams.length, 2, "the expired ticket, then the fresh one");
    assert.equal(minted.length, 1);
  },
);
