// Errors as the console shows them: ProblemError (RFC 9457 problem documents) and
// StreamError from @switchboard/client, or anything else thrown.

export type ProblemLike = { status?: number; code?: string; detail?: string; title?: string };

/** A sentence for the user from whatever was thrown or answered. */
export function describe(error: unknown): string {
  if (error instanceof DOMException && error.name === "AbortError") return "Stopped.";
  if (error && typeof error === "object") {
    const e = error as ProblemLike & { message?: string; problem?: ProblemLike };
    const problem = e.problem ?? e;
    if (problem.detail) return problem.detail;
    if (e.message) return e.message;
    if (problem.title) return problem.title;
  }
  return "Something went wrong. Try again.";
}

export function statusOf(error: unknown): number | undefined {
  if (error && typeof error === "object") {
    const e = error as ProblemLike & { problem?: ProblemLike };
    return e.status ?? e.problem?.status;
  }
  return undefined;
}

export function codeOf(error: unknown): string | undefined {
  if (error && typeof error === "object") {
    const e = error as ProblemLike & { problem?: ProblemLike };
    return e.code ?? e.problem?.code;
  }
  return undefined;
}
