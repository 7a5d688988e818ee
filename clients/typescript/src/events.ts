/** Run events, as docs/streaming.md defines them. Every event's data holds `run_id` and `seq`
 * (equal to the event's `id`). Clients ignore fields they do not know. */

export interface RunEventBase {
  run_id: string;
  seq: number;
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
}

export interface Approval {
  id: string;
  tool: string;
  arguments: unknown;
  agent: string;
}

export interface RunEventDataMap {
  "run.queued": RunEventBase & { conversation_id: string };
  "run.started": RunEventBase & { agent: string };
  "agent.updated": RunEventBase & { agent: string };
  "message.delta": RunEventBase & { delta: string; agent: string };
  "tool.called": RunEventBase & { tool: string; arguments: unknown; agent: string };
  "tool.output": RunEventBase & { tool: string; output: string };
  "message.completed": RunEventBase & {
    message_id: string;
    content: string;
    agent: string;
    incomplete: boolean;
  };
  "run.requires_action": RunEventBase & { approvals: Approval[] };
  "run.completed": RunEventBase & { usage: Usage };
  "run.failed": RunEventBase & { error: { code: string; message: string } };
  "run.cancelled": RunEventBase;
}

export type RunEventType = keyof RunEventDataMap;

/** One run event: narrow on `event` to get its `data`. */
export type RunEvent = {
  [K in RunEventType]: { id: number; event: K; data: RunEventDataMap[K] };
}[RunEventType];

/** An event of a given type. */
export type RunEventOf<K extends RunEventType> = Extract<RunEvent, { event: K }>;

export const RUN_EVENT_TYPES: readonly RunEventType[] = [
  "run.queued",
  "run.started",
  "agent.updated",
  "message.delta",
  "tool.called",
  "tool.output",
  "message.completed",
  "run.requires_action",
  "run.completed",
  "run.failed",
  "run.cancelled",
];

export type TerminalEventType = "run.completed" | "run.failed" | "run.cancelled";

export const TERMINAL_EVENT_TYPES: readonly TerminalEventType[] = [
  "run.completed",
  "run.failed",
  "run.cancelled",
];

export function isTerminalEvent(event: { event: string }): boolean {
  return (TERMINAL_EVENT_TYPES as readonly string[]).includes(event.event);
}
