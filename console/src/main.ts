import "./styles.css";
import { h, clear } from "./dom";
import { session, type Me } from "./session";
import { describe } from "./errors";
import { chatView } from "./views/chat";
import { usageView } from "./views/usage";
import { membersView } from "./views/members";
import { webhooksView } from "./views/webhooks";
import { signInView } from "./views/signin";
import { BASE, navigate, onNavigate } from "./nav";

type Route =
  | { name: "chat"; conversationId: string | null }
  | { name: "usage" }
  | { name: "members" }
  | { name: "webhooks" };

function route(): Route {
  const rest = location.pathname.startsWith(BASE)
    ? location.pathname.slice(BASE.length)
    : "";
  const parts = rest.split("/").filter(Boolean);
  if (parts[0] === "c" && parts[1]) return { name: "chat", conversationId: decodeURIComponent(parts[1]) };
  if (parts[0] === "usage") return { name: "usage" };
  if (parts[0] === "members") return { name: "members" };
  if (parts[0] === "webhooks") return { name: "webhooks" };
  return { name: "chat", conversationId: null };
}

const app = document.getElementById("app") as HTMLElement;
let me: Me | null = null;
let teardown: (() => void) | null = null;

function isManager(): boolean {
  return !!me && (me.roles.includes("owner") || me.roles.includes("admin"));
}

function topbar(current: Route["name"]): HTMLElement {
  const link = (path: string, label: string, name: Route["name"]) =>
    h("a", { href: BASE + path, "data-nav": "", "aria-current": current === name ? "page" : null }, label);
  const signOut = h("button", { type: "button", class: "link" }, "Sign out");
  signOut.addEventListener("click", async () => {
    signOut.disabled = true;
    await session.signOut();
    me = null;
    navigate("", true);
  });
  return h(
    "header",
    { class: "topbar" },
    h("a", { class: "brand", href: BASE, "data-nav": "" }, "Switchboard"),
    h(
      "nav",
      { "aria-label": "Sections" },
      link("", "Chat", "chat"),
      link("usage", "Plan & usage", "usage"),
      link("members", "Members", "members"),
      isManager() && link("webhooks", "Webhooks", "webhooks"),
    ),
    h(
      "div",
      { class: "who" },
      me && h("span", {}, `${me.user.email} · ${me.tenant.name} (${me.roles.join(", ")})`),
      signOut,
    ),
  );
}

export async function render(): Promise<void> {
  teardown?.();
  teardown = null;
  if (!session.signedIn()) {
    me = null;
    clear(app, signInView(async () => {
      await loadMe();
      void render();
    }));
    return;
  }
  if (!me) {
    try {
      await loadMe();
    } catch (error) {
      clear(app, h("main", { class: "page" }, h("p", { class: "error", role: "alert" }, describe(error))));
      return;
    }
  }
  const current = route();
  const main = h("main", { id: "main" });
  clear(app, h("a", { class: "skip-link", href: "#main" }, "Skip to content"), topbar(current.name), main);
  switch (current.name) {
    case "chat":
      teardown = chatView(main, current.conversationId);
      break;
    case "usage":
      usageView(main);
      break;
    case "members":
      membersView(main, me!, isManager());
      break;
    case "webhooks":
      webhooksView(main, isManager());
      break;
  }
}

async function loadMe(): Promise<void> {
  me = await session.me();
}

document.addEventListener("click", (event) => {
  const anchor = (event.target as Element | null)?.closest?.("a[data-nav]");
  if (!anchor || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  const href = (anchor as HTMLAnchorElement).getAttribute("href") ?? BASE;
  navigate(href.startsWith(BASE) ? href.slice(BASE.length) : href);
});
window.addEventListener("popstate", () => void render());
session.onSignedOut(() => {
  me = null;
  void render();
});

onNavigate(() => void render());
void render();
