import { h, clear, append } from "../dom";
import { session, type Message, type ConversationSummary } from "../session";
import { describe, codeOf } from "../errors";
import { setPath, navigate, BASE } from "../nav";
import {
  apply,
  finished,
  forgetTurn,
  loadTurn,
  newTurn,
  saveTurn,
  TERMINAL,
  type Item,
  type Turn,
} from "../turn";

const TERMINAL_STATUSES = new Set(["succeeded", "failed", "cancelled"]);

/** The chat: conversations on the side, the open one's messages, and the composer. Returns a
 * function that stops what the view started (its stream) when another view replaces it. */
export function chatView(root: HTMLElement, routeConversation: string | null): () => void {
  let conversationId = routeConversation;
  let active: { turn: Turn; view: TurnView; controller: AbortController } | null = null;
  let disposed = false;

  const list = h("ul", { "aria-label": "Your conversations" });
  const more = h("button", { type: "button", class: "link", hidden: true }, "Load more");
  const newButton = h("button", { type: "button", class: "new primary" }, "New conversation");
  const sidebar = h(
    "nav",
    { class: "sidebar", "aria-label": "Conversations" },
    newButton,
    list,
    more,
  );

  const log = h("ol", {
    class: "log",
    role: "log",
    "aria-live": "polite",
    "aria-relevant": "additions text",
    "aria-label": "Messages",
    tabindex: "0",
  });
  const status = h("div", { class: "status", role: "status", "aria-live": "polite" });
  const textarea = h("textarea", {
    id: "message",
    name: "message",
    rows: "2",
    placeholder: "Write a message…",
    autocomplete: "off",
    "aria-describedby": "composer-hint",
  });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const stop = h("button", { type: "button", class: "danger solid", hidden: true }, "Stop");
  const form = h(
    "form",
    { "aria-label": "Send a message" },
    h("label", { for: "message", class: "visually-hidden" }, "Message"),
    textarea,
    send,
    stop,
  );
  const composer = h(
    "div",
    { class: "composer" },
    status,
    form,
    h("p", { class: "hint", id: "composer-hint" }, "Enter to send, Shift+Enter for a new line, Escape to stop a reply."),
  );
  const conversation = h("section", { class: "conversation", "aria-label": "Conversation" }, log, composer);
  clear(root, h("div", { class: "chat" }, sidebar, conversation));

  // --- conversations -------------------------------------------------------------------
  let cursor: string | null = null;
  async function loadConversations(reset: boolean): Promise<void> {
    try {
      const page = await session.conversations(reset ? null : cursor);
      if (reset) list.replaceChildren();
      for (const item of page.items) list.append(conversationLink(item));
      cursor = page.next_cursor ?? null;
      more.hidden = cursor === null;
    } catch (error) {
      list.replaceChildren(h("li", { class: "error" }, describe(error)));
    }
  }
  function conversationLink(item: ConversationSummary): HTMLElement {
    return h(
      "li",
      {},
      h(
        "a",
        {
          href: `${BASE}c/${item.id}`,
          "data-nav": "",
          "data-conversation-id": item.id,
          "aria-current": item.id === conversationId ? "page" : null,
          title: item.title,
        },
        item.title || "Untitled",
      ),
    );
  }
  function markCurrent(): void {
    for (const a of list.querySelectorAll("a[data-conversation-id]")) {
      if (a.getAttribute("data-conversation-id") === conversationId) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }
  more.addEventListener("click", () => void loadConversations(false));
  newButton.addEventListener("click", () => navigate(""));

  // --- messages ------------------------------------------------------------------------
  function storedMessage(message: Message): HTMLElement {
    if (message.role === "user") {
      return h("li", { class: "msg user", "data-message-id": message.id },
        h("div", { class: "meta" }, "You"),
        h("div", { class: "content" }, message.content));
    }
    return h(
      "li",
      { class: "msg assistant", "data-message-id": message.id },
      h(
        "div",
        { class: "meta" },
        h("span", { class: "agent", "data-testid": "agent" }, message.agent ?? "assistant"),
        message.incomplete && h("span", { class: "badge warn" }, "stopped"),
      ),
      h("div", { class: "bubble" }, h("div", { class: "content segment" }, message.content)),
    );
  }

  async function openConversation(): Promise<void> {
    log.replaceChildren();
    const stored = loadTurn();
    if (!conversationId) {
      if (stored && !finished(stored)) {
        // A run still going from before a reload: show its conversation.
        conversationId = stored.conversationId;
        setPath(`c/${conversationId}`);
        markCurrent();
      } else {
        log.append(h("li", { class: "empty" }, "Start a conversation: write a message below."));
        textarea.focus();
        return;
      }
    }
    status.textContent = "Loading…";
    let messages: Message[];
    try {
      messages = await session.messages(conversationId);
    } catch (error) {
      status.textContent = "";
      log.append(h("li", { class: "error", role: "alert" }, describe(error)));
      return;
    }
    if (disposed) return;
    status.textContent = "";
    log.replaceChildren(...messages.map(storedMessage));
    const turn = loadTurn();
    if (turn && turn.conversationId === conversationId && !finished(turn)) {
      // Read after the messages: a run that was not over then had no reply stored yet.
      try {
        const run = await session.run(turn.runId);
        if (TERMINAL_STATUSES.has(run.status)) {
          forgetTurn();
          if (run.status === "failed" && run.error) {
            log.append(h("li", { class: "error", role: "alert" }, run.error.message));
          }
        } else {
          follow(turn);
        }
      } catch (error) {
        if (codeOf(error) === "run.not_found") forgetTurn();
        else status.textContent = describe(error);
      }
    }
    scrollDown(true);
    textarea.focus();
  }

  function scrollDown(force = false): void {
    const near = log.scrollHeight - log.scrollTop - log.clientHeight < 120;
    if (force || near) log.scrollTop = log.scrollHeight;
  }

  // --- a run ---------------------------------------------------------------------------
  function busy(running: boolean): void {
    send.disabled = running;
    stop.hidden = !running;
    stop.disabled = false;
  }

  function follow(turn: Turn): void {
    const controller = new AbortController();
    const view = new TurnView(turn, decide);
    log.append(view.el);
    active = { turn, view, controller };
    busy(true);
    view.update();
    status.textContent = turn.status === "requires_action" ? "Waiting for your approval." : "Replying…";
    void stream(turn, view, controller);
  }

  async function stream(turn: Turn, view: TurnView, controller: AbortController): Promise<void> {
    try {
      const reconnecting = (attempt: number) => {
        status.textContent = `Connection lost: reconnecting (attempt ${attempt})…`;
      };
      for await (const event of session.streamRun(turn.runId, turn.lastEventId, controller.signal, reconnecting)) {
        if (apply(turn, event)) {
          saveTurn(turn);
          view.update();
          scrollDown();
          if (turn.status === "requires_action") status.textContent = "Waiting for your approval.";
          else if (turn.agent) status.textContent = `${turn.agent} is replying…`;
        }
        if (TERMINAL.has(event.event)) break;
      }
      if (!finished(turn)) {
        // The stream ended without a terminal event (events_lost): read the outcome.
        await settleFromServer(turn, view);
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      if (codeOf(error) === "events_lost") {
        await settleFromServer(turn, view);
      } else {
        status.textContent = "";
        const retry = h("button", { type: "button", class: "reconnect" }, "Reconnect");
        const note = h("div", { class: "error", role: "alert" }, `${describe(error)} `, retry);
        retry.addEventListener("click", () => {
          note.remove();
          view.el.remove();
          follow(turn);
        });
        append(view.el, note);
        active = null;
        busy(false);
        return;
      }
    }
    if (controller.signal.aborted) return;
    done(turn, view);
  }

  async function settleFromServer(turn: Turn, view: TurnView): Promise<void> {
    const run = await session.run(turn.runId);
    turn.status = run.status === "succeeded" ? "completed" : run.status === "cancelled" ? "cancelled" : run.status === "failed" ? "failed" : "lost";
    if (run.error) turn.error = run.error;
    // The stored messages are the truth: show them in place of the partial stream.
    const messages = await session.messages(turn.conversationId);
    log.replaceChildren(...messages.map(storedMessage));
    view.update();
  }

  function done(turn: Turn, view: TurnView): void {
    forgetTurn();
    active = null;
    busy(false);
    view.update();
    status.textContent =
      turn.status === "completed" ? "Reply complete." :
      turn.status === "cancelled" ? "Stopped." :
      turn.status === "failed" ? `The run failed: ${turn.error?.message ?? ""}` : "";
    void loadConversations(true);
    textarea.focus();
  }

  async function decide(turn: Turn, approvalId: string, approve: boolean): Promise<void> {
    try {
      await session.decide(turn.runId, approvalId, approve);
      for (const item of turn.items) {
        if (item.kind !== "approvals") continue;
        for (const approval of item.approvals) {
          if (approval.id === approvalId) approval.decision = approve ? "approved" : "rejected";
        }
      }
      saveTurn(turn);
      active?.view.update();
      status.textContent = approve ? "Approved: the run goes on." : "Rejected: the run goes on.";
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  async function sendMessage(): Promise<void> {
    const message = textarea.value.trim();
    if (!message || active) return;
    busy(true);
    status.textContent = "Sending…";
    const empty = log.querySelector(".empty");
    empty?.remove();
    const mine = h("li", { class: "msg user" }, h("div", { class: "meta" }, "You"), h("div", { class: "content" }, message));
    log.append(mine);
    scrollDown(true);
    try {
      const accepted = await session.chat(message, conversationId);
      textarea.value = "";
      const isNew = conversationId !== accepted.conversation_id;
      conversationId = accepted.conversation_id;
      if (isNew) {
        setPath(`c/${conversationId}`);
        void loadConversations(true);
      }
      const turn = newTurn(accepted.run_id, accepted.conversation_id);
      saveTurn(turn);
      follow(turn);
    } catch (error) {
      mine.remove();
      busy(false);
      status.textContent = describe(error);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void sendMessage();
  });
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void sendMessage();
    } else if (event.key === "Escape" && active && !stop.hidden) {
      event.preventDefault();
      stop.click();
    }
  });
  // Back online after the client gave up reconnecting: resume from the last event.
  const online = () => (log.querySelector(".reconnect") as HTMLButtonElement | null)?.click();
  window.addEventListener("online", online);
  stop.addEventListener("click", async () => {
    if (!active) return;
    stop.disabled = true;
    status.textContent = "Stopping…";
    try {
      await session.cancel(active.turn.runId);
    } catch (error) {
      if (codeOf(error) !== "run.finished") status.textContent = describe(error);
    }
  });

  void loadConversations(true);
  void openConversation();

  return () => {
    disposed = true;
    window.removeEventListener("online", online);
    // The run goes on; its state stays stored, so coming back resumes it.
    active?.controller.abort();
    active = null;
  };
}

type Decide = (turn: Turn, approvalId: string, approve: boolean) => Promise<void>;

/** One run's reply as it streams: who speaks, handoffs, tool calls, approvals and text. */
class TurnView {
  readonly el: HTMLLIElement;
  private readonly agent: HTMLSpanElement;
  private readonly badge: HTMLSpanElement;
  private readonly body: HTMLDivElement;
  private readonly nodes: HTMLElement[] = [];

  constructor(
    private readonly turn: Turn,
    private readonly onDecide: Decide,
  ) {
    this.agent = h("span", { class: "agent", "data-testid": "agent" }, "…");
    this.badge = h("span", { class: "badge", hidden: true });
    this.body = h("div", { class: "bubble" });
    this.el = h(
      "li",
      { class: "msg assistant live", "data-run-id": turn.runId },
      h("div", { class: "meta" }, this.agent, this.badge),
      this.body,
    );
  }

  update(): void {
    const turn = this.turn;
    this.agent.textContent = turn.agent ?? "…";
    this.el.dataset.status = turn.status;
    const badges: Record<string, [string, string]> = {
      cancelled: ["stopped", "badge warn"],
      failed: ["failed", "badge bad"],
      requires_action: ["needs approval", "badge warn"],
      lost: ["interrupted", "badge bad"],
    };
    const badge = badges[turn.status];
    this.badge.hidden = !badge;
    if (badge) {
      this.badge.textContent = badge[0];
      this.badge.className = badge[1];
    }
    turn.items.forEach((item, index) => {
      const node = this.nodes[index];
      if (!node) {
        const created = this.render(item);
        this.nodes.push(created);
        this.body.append(created);
      } else {
        this.refresh(node, item);
      }
    });
    const texts = this.body.querySelectorAll(".segment");
    texts.forEach((el, i) => el.classList.toggle("cursor", !finished(turn) && i === texts.length - 1));
    if (turn.status === "failed" && turn.error && !this.el.querySelector(".run-error")) {
      this.el.append(h("div", { class: "error run-error", role: "alert" }, turn.error.message));
    }
  }

  private render(item: Item): HTMLElement {
    switch (item.kind) {
      case "text": {
        const el = h("div", { class: "content segment", "data-agent": item.agent }, item.text);
        if (item.messageId) el.dataset.messageId = item.messageId;
        return el;
      }
      case "handoff":
        return h(
          "div",
          { class: "handoff", "data-testid": "handoff" },
          item.from ? [h("strong", {}, item.from), " handed off to "] : "Handed off to ",
          h("strong", {}, item.agent),
        );
      case "tool": {
        const el = h(
          "div",
          { class: "tool", "data-tool": item.tool },
          h("span", { class: "name" }, `${item.tool}(${argumentsText(item.arguments)})`),
          h("span", { class: "muted" }, ` · ${item.agent}`),
          h("pre", { class: "output" }, item.output ?? "…"),
        );
        return el;
      }
      case "approvals": {
        const el = h("div", { class: "approvals" });
        for (const approval of item.approvals) {
          const approve = h("button", { type: "button", class: "primary" }, "Approve");
          const reject = h("button", { type: "button", class: "danger" }, "Reject");
          const outcome = h("span", { class: "decision", role: "status" });
          approve.addEventListener("click", () => {
            approve.disabled = reject.disabled = true;
            void this.onDecide(this.turn, approval.id, true);
          });
          reject.addEventListener("click", () => {
            approve.disabled = reject.disabled = true;
            void this.onDecide(this.turn, approval.id, false);
          });
          el.append(
            h(
              "div",
              { class: "approval", "data-approval-id": approval.id, role: "group", "aria-label": `Approve ${approval.tool}?` },
              h("div", {}, h("strong", {}, approval.agent), " wants to run ",
                h("code", {}, `${approval.tool}(${argumentsText(approval.arguments)})`)),
              h("div", { class: "row" }, approve, reject, outcome),
            ),
          );
        }
        this.refresh(el, item);
        return el;
      }
    }
  }

  private refresh(node: HTMLElement, item: Item): void {
    switch (item.kind) {
      case "text": {
        const current = node.textContent ?? "";
        if (item.text !== current) {
          // Append only what is new, so assistive technology reads the additions.
          if (item.text.startsWith(current)) node.append(item.text.slice(current.length));
          else node.textContent = item.text;
        }
        if (item.messageId) node.dataset.messageId = item.messageId;
        break;
      }
      case "tool": {
        const output = node.querySelector(".output");
        if (output && item.output !== undefined) output.textContent = item.output;
        break;
      }
      case "approvals":
        for (const approval of item.approvals) {
          const box = node.querySelector(`[data-approval-id="${CSS.escape(approval.id)}"]`);
          if (!box) continue;
          const decided = approval.decision !== undefined || this.turn.status !== "requires_action";
          for (const button of box.querySelectorAll("button")) button.disabled = decided;
          const outcome = box.querySelector(".decision");
          if (outcome) outcome.textContent = approval.decision === "approved" ? "Approved" : approval.decision === "rejected" ? "Rejected" : "";
        }
        break;
      default:
        break;
    }
  }
}

function argumentsText(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  if (typeof value === "object" && Object.keys(value as object).length === 0) return "";
  return JSON.stringify(value);
}
