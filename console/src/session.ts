// The console's one client of the API, from @switchboard/client. Tokens live in
// sessionStorage (this tab only, gone when it closes) so a reload keeps the session; the
// package refreshes the access token when it expires.

import { SwitchboardClient, unwrap, type Tokens } from "@switchboard/client";
import type { RunEventLike } from "./turn";

const TOKENS = "switchboard.console.tokens";

export type Me = {
  user: { id: string; email: string; display_name?: string | null };
  tenant: { id: string; name: string };
  roles: string[];
};
export type ConversationSummary = { id: string; title: string; created_at: string; updated_at: string };
export type Message = {
  id: string;
  role: string;
  content: string;
  agent?: string | null;
  incomplete?: boolean;
  created_at: string;
};
export type RunRead = {
  id: string;
  status: string;
  agent?: string;
  error?: { code: string; message: string } | null;
};

function storedTokens(): Tokens | null {
  try {
    const raw = sessionStorage.getItem(TOKENS);
    return raw ? (JSON.parse(raw) as Tokens) : null;
  } catch {
    return null;
  }
}

const signedOutListeners: (() => void)[] = [];

export const client = new SwitchboardClient({
  baseUrl: location.origin,
  tokens: storedTokens(),
  onTokens(tokens) {
    if (tokens) sessionStorage.setItem(TOKENS, JSON.stringify(tokens));
    else {
      const had = sessionStorage.getItem(TOKENS) !== null;
      sessionStorage.removeItem(TOKENS);
      // A refused refresh ends the session: back to the sign-in form.
      if (had) for (const listener of signedOutListeners) listener();
    }
  },
});

/** What an openapi-fetch call answered: its data, or a thrown ProblemError. */
export const unwrapped = unwrap;

/** The next page's cursor from a `Link: <...?cursor=...>; rel="next"` header. */
export function nextCursor(response: Response): string | null {
  const link = response.headers.get("Link");
  const match = link?.match(/<([^>]+)>\s*;\s*rel="next"/);
  if (!match) return null;
  return new URL(match[1], location.origin).searchParams.get("cursor");
}

export const session = {
  signedIn(): boolean {
    return client.tokens !== null;
  },
  onSignedOut(listener: () => void): void {
    signedOutListeners.push(listener);
  },
  async signIn(email: string, password: string): Promise<void> {
    await client.signIn(email, password);
  },
  async signOut(): Promise<void> {
    sessionStorage.removeItem(TOKENS);
    sessionStorage.removeItem("switchboard.console.activeRun");
    await client.signOut();
  },
  async me(): Promise<Me> {
    return unwrapped(await client.api.GET("/api/v1/auth/me")) as Me;
  },
  async conversations(cursor: string | null): Promise<{ items: ConversationSummary[]; next_cursor?: string | null }> {
    return unwrapped(
      await client.api.GET("/api/v1/conversations", {
        params: { query: { limit: 50, ...(cursor ? { cursor } : {}) } },
      }),
    );
  },
  /** Every message of a conversation, oldest first (pages of 500). */
  async messages(conversationId: string): Promise<Message[]> {
    const all: Message[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 20; page++) {
      const answer: { items: Message[]; next_cursor?: string | null } = unwrapped(
        await client.api.GET("/api/v1/conversations/{conversation_id}/messages", {
          params: {
            path: { conversation_id: conversationId },
            query: { limit: 500, ...(cursor ? { cursor } : {}) },
          },
        }),
      );
      all.push(...answer.items);
      cursor = answer.next_cursor ?? null;
      if (!cursor) break;
    }
    return all;
  },
  async chat(message: string, conversationId: string | null) {
    return client.chat({ message, ...(conversationId ? { conversation_id: conversationId } : {}) });
  },
  async run(runId: string): Promise<RunRead> {
    return (await client.getRun(runId)) as RunRead;
  },
  async cancel(runId: string): Promise<void> {
    await client.cancel(runId);
  },
  async decide(runId: string, approvalId: string, approve: boolean): Promise<void> {
    await client.decide(runId, [{ id: approvalId, approve }]);
  },
  streamRun(
    runId: string,
    lastEventId: number,
    signal: AbortSignal,
    onReconnect?: (attempt: number) => void,
  ): AsyncIterable<RunEventLike> {
    return client.streamRun(runId, {
      lastEventId,
      signal,
      onReconnect: onReconnect && ((info) => onReconnect(info.attempt)),
    }) as AsyncIterable<RunEventLike>;
  },
};
