import { randomUUID } from "node:crypto";
import net from "node:net";

import { SwitchboardClient, unwrap, type RunEvent, type SwitchboardClientOptions } from "../src/index.js";

/** The API under test: tests/clients/test_typescript.py starts it and sets this. */
export const BASE_URL = (() => {
  const url = process.env.SWITCHBOARD_URL;
  if (!url) throw new Error("SWITCHBOARD_URL is not set: run these tests through tests/clients/test_typescript.py");
  return url.replace(/\/+$/, "");
})();

export const PASSWORD = "a long enough passphrase";

/** A message the offline model repeats word by word: `words` deltas. */
export function longMessage(words: number): string {
  return Array.from({ length: words }, (_, i) => `word${i}`).join(" ");
}

export interface Account {
  email: string;
  client: SwitchboardClient;
}

/** A new tenant and owner, signed in. */
export async function signUp(options: Partial<SwitchboardClientOptions> = {}): Promise<Account> {
  const client = new SwitchboardClient({ baseUrl: BASE_URL, ...options });
  const email = `ts-${randomUUID().slice(0, 12)}@example.com`;
  await client.register({ email, password: PASSWORD, tenant_name: "TS client" });
  await client.signIn(email, PASSWORD);
  return { email, client };
}

/** The assistant replies stored in a conversation, concatenated. */
export async function storedReply(client: SwitchboardClient, conversationId: string): Promise<string> {
  const page = unwrap(
    await client.api.GET("/api/v1/conversations/{conversation_id}/messages", {
      params: { path: { conversation_id: conversationId } },
    }),
  );
  return page.items
    .filter((message) => message.role === "assistant")
    .map((message) => message.content)
    .join("");
}

export async function collect(events: AsyncIterable<RunEvent>): Promise<RunEvent[]> {
  const all: RunEvent[] = [];
  for await (const event of events) all.push(event);
  return all;
}

export function deltas(events: RunEvent[]): string {
  return events.map((event) => (event.event === "message.delta" ? event.data.delta : "")).join("");
}

/** A fetch that records each request's method and path (and its Authorization) before
 * passing it on. */
export function recordingFetch(): {
  fetch: typeof fetch;
  calls: { method: string; path: string; authorization: string | null }[];
} {
  const calls: { method: string; path: string; authorization: string | null }[] = [];
  const recording = (input: Request | string | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    calls.push({
      method: request.method,
      path: new URL(request.url).pathname,
      authorization: request.headers.get("Authorization"),
    });
    return fetch(request);
  };
  return { fetch: recording as typeof fetch, calls };
}

/**
 * A TCP proxy to the API that cuts the first connection carrying more than `cutAfterBytes`
 * bytes from the API, once, mid-response; every later connection passes through.
 */
export class CuttingProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  cuts = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(target: string, cutAfterBytes: number): Promise<CuttingProxy> {
    const { hostname, port } = new URL(target);
    let armed = true;
    const server = net.createServer();
    const proxy = new CuttingProxy(server);
    server.on("connection", (client) => {
      const upstream = net.connect(Number(port), hostname);
      proxy.#sockets.add(client).add(upstream);
      let received = 0;
      upstream.on("data", (chunk: Buffer) => {
        if (armed && received + chunk.length > cutAfterBytes) {
          armed = false;
          proxy.cuts += 1;
          // Deliver part of this chunk (so the cut falls inside an event), then drop both ends.
          const keep = Math.max(0, cutAfterBytes - received);
          client.write(chunk.subarray(0, keep), () => {
            client.destroy();
            upstream.destroy();
          });
          received += keep;
          return;
        }
        received += chunk.length;
        client.write(chunk);
      });
      client.on("data", (chunk: Buffer) => upstream.write(chunk));
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get url(): string {
    const address = this.#server.address() as net.AddressInfo;
    return `http://127.0.0.1:${address.port}`;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Asserts-friendly view of ids: 1..n without gaps. */
export function ids(events: RunEvent[]): number[] {
  return events.map((event) => event.id);
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}
