import { h, clear, formatTime } from "../dom";
import { client, unwrapped, nextCursor } from "../session";
import { describe } from "../errors";

const EVENTS = [
  "run.completed",
  "run.failed",
  "run.cancelled",
  "run.requires_action",
  "usage.threshold_reached",
  "webhook.test",
] as const;
type EventType = (typeof EVENTS)[number];

type Endpoint = {
  id: string;
  url: string;
  events: string[];
  description?: string | null;
  enabled: boolean;
  disabled_reason?: string | null;
  failing_since?: string | null;
  created_at: string;
};

/** Webhook endpoints (owners and admins): create (the secret is shown once), enable, test,
 * rotate, delete, and each endpoint's delivery log with redelivery. */
export function webhooksView(root: HTMLElement, manager: boolean): void {
  const page = h("div", { class: "page" }, h("h1", {}, "Webhooks"));
  clear(root, page);
  if (!manager) {
    page.append(h("p", { class: "notice" }, "Only owners and admins manage webhook endpoints."));
    return;
  }
  const status = h("p", { role: "status", class: "muted" });
  const secretBox = h("div", { class: "card", hidden: true, role: "region", "aria-label": "New signing secret" });
  const list = h("div", {});
  const deliveries = h("section", { class: "card", hidden: true, "aria-labelledby": "deliveries-title" });

  function showSecret(secret: string, what: string): void {
    const copy = h("button", { type: "button" }, "Copy");
    copy.addEventListener("click", () => void navigator.clipboard?.writeText(secret).then(() => (copy.textContent = "Copied")));
    clear(
      secretBox,
      h("h2", {}, "Signing secret"),
      h("p", {}, `${what} Copy it now: it is not shown again.`),
      h("p", { class: "secret", "data-testid": "webhook-secret" }, secret),
      h("div", { class: "row" }, copy),
    );
    secretBox.hidden = false;
    secretBox.focus();
  }

  const url = h("input", { id: "webhook-url", type: "url", required: true, placeholder: "https://hooks.example.com/switchboard" });
  const description = h("input", { id: "webhook-description", maxlength: "500" });
  const boxes = EVENTS.map((event) =>
    h("input", { type: "checkbox", name: "events", value: event, checked: event.startsWith("run.") && event !== "run.requires_action" }),
  );
  const form = h(
    "form",
    { "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "Add an endpoint"),
    h("div", { class: "field" }, h("label", { for: "webhook-url" }, "URL (https)"), url),
    h("fieldset", {}, h("legend", {}, "Events"), boxes.map((box) => h("label", {}, box, box.value))),
    h("div", { class: "field" }, h("label", { for: "webhook-description" }, "Description (optional)"), description),
    h("button", { type: "submit", class: "primary" }, "Add endpoint"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const events = boxes.filter((b) => b.checked).map((b) => b.value as EventType);
    if (events.length === 0) {
      status.textContent = "Choose at least one event.";
      return;
    }
    try {
      const created = unwrapped(
        await client.api.POST("/api/v1/webhooks/endpoints", {
          body: { url: url.value.trim(), events, ...(description.value ? { description: description.value } : {}) },
        }),
      );
      url.value = "";
      description.value = "";
      status.textContent = `Endpoint ${created.url} added.`;
      showSecret(created.secret, "The endpoint signs its deliveries with this secret.");
      void load();
    } catch (error) {
      status.textContent = describe(error);
    }
  });

  async function load(): Promise<void> {
    try {
      const endpoints = unwrapped(await client.api.GET("/api/v1/webhooks/endpoints")) as Endpoint[];
      if (endpoints.length === 0) {
        clear(list, h("p", { class: "muted" }, "No endpoints yet."));
        return;
      }
      clear(list, endpoints.map(endpointCard));
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  async function act(label: string, call: () => Promise<void>): Promise<void> {
    try {
      await call();
      status.textContent = label;
      void load();
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  function endpointCard(endpoint: Endpoint): HTMLElement {
    const path = { params: { path: { endpoint_id: endpoint.id } } };
    const toggle = h("button", { type: "button" }, endpoint.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", () =>
      act(endpoint.enabled ? "Endpoint disabled." : "Endpoint enabled.", async () => {
        unwrapped(await client.api.PATCH("/api/v1/webhooks/endpoints/{endpoint_id}", { ...path, body: { enabled: !endpoint.enabled } }));
      }),
    );
    const test = h("button", { type: "button", disabled: !endpoint.enabled }, "Send test");
    test.addEventListener("click", () =>
      act("Test event queued.", async () => {
        unwrapped(await client.api.POST("/api/v1/webhooks/endpoints/{endpoint_id}/test", path));
      }),
    );
    const rotate = h("button", { type: "button" }, "Rotate secret");
    rotate.addEventListener("click", async () => {
      if (!confirm("Replace this endpoint's secret? The old one keeps signing for 24 hours.")) return;
      try {
        const rotated = unwrapped(await client.api.POST("/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret", path));
        showSecret(rotated.secret, `The old secret also signs until ${formatTime(rotated.previous_secret_expires_at)}.`);
      } catch (error) {
        status.textContent = describe(error);
      }
    });
    const log = h("button", { type: "button" }, "Delivery log");
    log.addEventListener("click", () => void showDeliveries(endpoint, true));
    const remove = h("button", { type: "button", class: "danger" }, "Delete");
    remove.addEventListener("click", () => {
      if (!confirm(`Delete ${endpoint.url} with its delivery log?`)) return;
      void act("Endpoint deleted.", async () => {
        unwrapped(await client.api.DELETE("/api/v1/webhooks/endpoints/{endpoint_id}", path));
        deliveries.hidden = true;
      });
    });
    return h(
      "article",
      { class: "card", "aria-label": endpoint.url, "data-endpoint-id": endpoint.id },
      h("h3", { class: "mono" }, endpoint.url),
      endpoint.description && h("p", {}, endpoint.description),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Events"), h("dd", {}, endpoint.events.join(", ")),
        h("dt", {}, "State"),
        h(
          "dd",
          {},
          endpoint.enabled
            ? h("span", { class: "badge ok" }, "enabled")
            : h("span", { class: "badge bad" }, endpoint.disabled_reason === "failing" ? "disabled: failing" : "disabled"),
          endpoint.failing_since ? ` failing since ${formatTime(endpoint.failing_since)}` : "",
        ),
        h("dt", {}, "Created"), h("dd", {}, formatTime(endpoint.created_at)),
      ),
      h("div", { class: "row" }, toggle, test, rotate, log, remove),
    );
  }

  let cursor: string | null = null;
  async function showDeliveries(endpoint: Endpoint, reset: boolean): Promise<void> {
    try {
      const result = await client.api.GET("/api/v1/webhooks/endpoints/{endpoint_id}/deliveries", {
        params: { path: { endpoint_id: endpoint.id }, query: { limit: 50, ...(!reset && cursor ? { cursor } : {}) } },
      });
      const rows = unwrapped(result);
      cursor = nextCursor(result.response);
      const body = reset ? h("tbody") : (deliveries.querySelector("tbody") as HTMLTableSectionElement);
      for (const row of rows) {
        const again = h("button", { type: "button", "aria-label": `Redeliver ${row.event_type} ${row.event_id}` }, "Redeliver");
        again.addEventListener("click", async () => {
          try {
            unwrapped(await client.api.POST("/api/v1/webhooks/deliveries/{delivery_id}/redeliver", { params: { path: { delivery_id: row.id } } }));
            status.textContent = "Redelivery queued.";
          } catch (error) {
            status.textContent = describe(error);
          }
        });
        body.append(
          h(
            "tr",
            {},
            h("td", {}, formatTime(row.created_at)),
            h("td", { class: "mono" }, row.event_type),
            h("td", {}, h("span", { class: row.status === "succeeded" ? "badge ok" : "badge bad" }, row.status)),
            h("td", {}, row.response_status ?? "–"),
            h("td", {}, row.error ?? ""),
            h("td", {}, row.attempt),
            h("td", {}, row.duration_ms === null || row.duration_ms === undefined ? "–" : `${Math.round(row.duration_ms)} ms`),
            h("td", {}, formatTime(row.next_attempt_at)),
            h("td", {}, again),
          ),
        );
      }
      if (reset) {
        const more = h("button", { type: "button", class: "link", hidden: cursor === null }, "Older attempts");
        more.addEventListener("click", () => void showDeliveries(endpoint, false));
        clear(
          deliveries,
          h("h2", { id: "deliveries-title" }, "Delivery log"),
          h("p", { class: "mono muted" }, endpoint.url),
          rows.length === 0
            ? h("p", { class: "muted" }, "No attempts yet.")
            : h(
                "div",
                { class: "table-wrap" },
                h(
                  "table",
                  {},
                  h("thead", {}, h("tr", {}, ["When", "Event", "Status", "HTTP", "Error", "Attempt", "Duration", "Next attempt", ""].map((t) => h("th", { scope: "col" }, t)))),
                  body,
                ),
              ),
          more,
        );
        deliveries.hidden = false;
        deliveries.scrollIntoView({ block: "nearest" });
      } else {
        const more = deliveries.querySelector("button.link") as HTMLButtonElement | null;
        if (more) more.hidden = cursor === null;
      }
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  secretBox.setAttribute("tabindex", "-1");
  page.append(status, secretBox, h("section", { class: "card" }, form), h("h2", {}, "Endpoints"), list, deliveries);
  void load();
}
