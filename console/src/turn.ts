// One run as the chat shows it, built from its events. The whole state is kept in
// sessionStorage with the id of the last event applied, so a reload renders exactly what was
// shown and resumes the stream right after that event: nothing lost, nothing twice.

export type RunEventLike = { id: number | null; event: string; data: Record<string, unknown> };

export type Approval = {
  id: string;
  tool: string;
  arguments: unknown;
  agent: string;
  decision?: "approved" | "rejected";
};

export type Item =
  | { kind: "text"; agent: string; text: string; messageId?: string; incomplete?: boolean }
  | { kind: "handoff"; from: string | null; agent: string }
  | { kind: "tool"; agent: string; tool: string; arguments: unknown; output?: string }
  | { kind: "approvals"; approvals: Approval[] };

export type Outcome = "completed" | "failed" | "cancelled" | "lost";

export type Turn = {
  runId: string;
  conversationId: string;
  lastEventId: number;
  agent: string | null;
  status: "queued" | "running" | "requires_action" | Outcome;
  items: Item[];
  completedMessages: number;
  error?: { code: string; message: string };
};

export const TERMINAL = new Set(["run.completed", "run.failed", "run.cancelled"]);

export function newTurn(runId: string, conversationId: string): Turn {
  return {
    runId,
    conversationId,
    lastEventId: 0,
    agent: null,
    status: "queued",
    items: [],
    completedMessages: 0,
  };
}

const str = (value: unknown): string => (typeof value === "string" ? value : "");

/** Applies one event to the turn; false when it was already applied (an id at or below the
 * last one) and changed nothing. */
export function apply(turn: Turn, ev: RunEventLike): boolean {
  if (ev.id !== null && ev.id <= turn.lastEventId) return false;
  const data = ev.data;
  switch (ev.event) {
    case "run.queued":
      break;
    case "run.started":
      turn.status = "running";
      turn.agent = str(data.agent) || turn.agent;
      break;
    case "agent.updated": {
      const from = turn.agent;
      turn.agent = str(data.agent);
      turn.items.push({ kind: "handoff", from, agent: turn.agent });
      break;
    }
    case "message.delta": {
      const agent = str(data.agent) || turn.agent || "";
      turn.status = "running";
      turn.agent = agent;
      const last = turn.items[turn.items.length - 1];
      if (last && last.kind === "text" && last.agent === agent && !last.messageId) {
        last.text += str(data.delta);
      } else {
        turn.items.push({ kind: "text", agent, text: str(data.delta) });
      }
      break;
    }
    case "tool.called":
      turn.status = "running";
      turn.items.push({
        kind: "tool",
        agent: str(data.agent) || turn.agent || "",
        tool: str(data.tool),
        arguments: data.arguments,
      });
      break;
    case "tool.output": {
      turn.status = "running";
      const tool = str(data.tool);
      const call = [...turn.items]
        .reverse()
        .find((item) => item.kind === "tool" && item.tool === tool && item.output === undefined);
      if (call && call.kind === "tool") call.output = str(data.output);
      else turn.items.push({ kind: "tool", agent: turn.agent ?? "", tool, arguments: null, output: str(data.output) });
      break;
    }
    case "run.requires_action": {
      turn.status = "requires_action";
      const approvals = Array.isArray(data.approvals) ? data.approvals : [];
      turn.items.push({
        kind: "approvals",
        approvals: approvals.map((a: Record<string, unknown>) => ({
          id: str(a.id),
          tool: str(a.tool),
          arguments: a.arguments,
          agent: str(a.agent),
        })),
      });
      break;
    }
    case "message.completed": {
      // The n-th completed message is the n-th text the deltas wrote; its content is the
      // stored text, which the deltas add up to.
      const texts = turn.items.filter((item) => item.kind === "text");
      const target = texts[turn.completedMessages];
      const content = str(data.content);
      if (target && target.kind === "text") {
        target.text = content;
        target.messageId = str(data.message_id);
        target.incomplete = data.incomplete === true;
        target.agent = str(data.agent) || target.agent;
      } else {
        turn.items.push({
          kind: "text",
          agent: str(data.agent),
          text: content,
          messageId: str(data.message_id),
          incomplete: data.incomplete === true,
        });
      }
      turn.completedMessages += 1;
      break;
    }
    case "run.completed":
      turn.status = "completed";
      break;
    case "run.failed": {
      turn.status = "failed";
      const error = (data.error ?? {}) as Record<string, unknown>;
      turn.error = { code: str(error.code), message: str(error.message) };
      break;
    }
    case "run.cancelled":
      turn.status = "cancelled";
      break;
    case "stream.error":
      // No id: the stream ended without its terminal event; the caller reconnects or reads
      // the run.
      return true;
    default:
      break;
  }
  if (ev.id !== null) turn.lastEventId = ev.id;
  return true;
}

export function finished(turn: Turn): boolean {
  return ["completed", "failed", "cancelled", "lost"].includes(turn.status);
}

const KEY = "switchboard.console.activeRun";

export function saveTurn(turn: Turn): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(turn));
  } catch {
    // Storage full or disabled: the turn still streams, it just will not survive a reload.
  }
}

export function loadTurn(): Turn | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Turn) : null;
  } catch {
    return null;
  }
}

export function forgetTurn(): void {
  sessionStorage.removeItem(KEY);
}
