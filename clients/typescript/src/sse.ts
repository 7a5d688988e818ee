/** A minimal Server-Sent Events parser (the WHATWG event-stream format) over a byte stream. */

export interface SseMessage {
  /** The `id:` field, or `undefined` when the message had none (e.g. `stream.error`). */
  id: string | undefined;
  /** The `event:` field; `"message"` when absent. */
  event: string;
  /** The `data:` lines joined with "\n". */
  data: string;
}

/**
 * Yields each dispatched message of `body`. Comment lines (`: ping`) and `retry:` are skipped;
 * a message without data is not dispatched. Ends when the body ends; an incomplete last message
 * (no blank line after it) is dropped, as the format requires.
 */
export async function* parseSse(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let id: string | undefined;
  let event = "";
  let data: string[] = [];
  let hasData = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let start = 0;
      for (;;) {
        const cr = buffer.indexOf("\r", start);
        const lf = buffer.indexOf("\n", start);
        let end: number;
        if (cr < 0 && lf < 0) break;
        if (cr >= 0 && (lf < 0 || cr < lf)) {
          // A CR at the end of what we have may be the first half of a CRLF.
          if (cr === buffer.length - 1 && !done) break;
          end = cr;
        } else {
          end = lf;
        }
        const line = buffer.slice(start, end);
        start = end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1);
        if (line === "") {
          if (hasData) yield { id, event: event || "message", data: data.join("\n") };
          id = undefined;
          event = "";
          data = [];
          hasData = false;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") {
          data.push(value);
          hasData = true;
        } else if (field === "event") {
          event = value;
        } else if (field === "id") {
          if (!value.includes("\0")) id = value;
        }
      }
      buffer = buffer.slice(start);
      if (done) return;
    }
  } finally {
    // Stops the download when the consumer leaves early.
    reader.cancel().catch(() => undefined);
  }
}
