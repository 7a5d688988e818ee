/**
 * @switchboard/client: a typed client of the Switchboard API.
 *
 * Public API (stable): SwitchboardClient, streamRun, ProblemError, StreamError, unwrap,
 * parseSse, the run event types and the OpenAPI types (paths, components, operations).
 */
export {
  SwitchboardClient,
  unwrap,
  type ApprovalDecision,
  type ChatAccepted,
  type ChatOptions,
  type ChatRequest,
  type FetchLike,
  type MultitaskStrategy,
  type RegisterRequest,
  type Run,
  type Schemas,
  type StreamTicket,
  type SwitchboardClientOptions,
  type TokenPair,
  type Tokens,
} from "./client.js";
export { ProblemError, StreamError, type Problem, type ValidationIssue } from "./errors.js";
export {
  RUN_EVENT_TYPES,
  TERMINAL_EVENT_TYPES,
  isTerminalEvent,
  type Approval,
  type RunEvent,
  type RunEventBase,
  type RunEventDataMap,
  type RunEventOf,
  type RunEventType,
  type TerminalEventType,
  type Usage,
} from "./events.js";
export { parseSse, type SseMessage } from "./sse.js";
export { streamRun, type StreamRunOptions } from "./stream.js";
export type { components, operations, paths } from "./schema.js";
