import { h, clear, formatNumber, formatTime } from "../dom";
import { client, unwrapped } from "../session";
import { describe, statusOf } from "../errors";

type Limits = {
  seats?: number | null;
  runs_per_minute?: number | null;
  concurrent_runs?: number | null;
  monthly_tokens?: number | null;
  open_streams_per_user?: number | null;
};

/** Plan & usage: the subscription, this month's usage against the plan's limits, the plans. */
export function usageView(root: HTMLElement): void {
  const page = h("div", { class: "page" }, h("h1", {}, "Plan & usage"), h("p", { class: "muted" }, "Loading…"));
  clear(root, page);
  void load(page);
}

async function load(page: HTMLElement): Promise<void> {
  try {
    const [subscription, usage, plans] = await Promise.all([
      client.api.GET("/api/v1/billing/subscription"),
      client.api.GET("/api/v1/billing/usage"),
      client.api.GET("/api/v1/billing/plans"),
    ]);
    const used = unwrapped(usage);
    const planList = unwrapped(plans);
    const sub = subscription.response.status === 404 ? null : unwrapped(subscription);
    const limits = (used.limits ?? {}) as Limits;
    const tokens = used.input_tokens + used.output_tokens;
    const plan = sub ? planList.find((p) => p.code === sub.plan_code) : planList.find((p) => p.code === "free");

    const subscriptionCard = h(
      "section",
      { class: "card", "aria-labelledby": "plan-title" },
      h("h2", { id: "plan-title" }, "Plan"),
      sub
        ? h(
            "dl",
            { class: "facts" },
            h("dt", {}, "Plan"), h("dd", {}, plan?.name ?? sub.plan_code),
            h("dt", {}, "Status"), h("dd", {}, sub.status),
            h("dt", {}, "Seats"), h("dd", {}, String(sub.seats)),
            h("dt", {}, "Period ends"), h("dd", {}, formatTime(sub.current_period_end)),
            h("dt", {}, "Renews"), h("dd", {}, sub.cancel_at_period_end ? "No: cancelled at period end" : "Yes"),
          )
        : h("p", {}, `No subscription: the ${plan?.name ?? "free"} plan's limits apply.`),
    );

    const meter = (label: string, value: number, max: number | null | undefined) =>
      h(
        "div",
        { class: "field" },
        h("span", {}, `${label}: ${value.toLocaleString()} of ${formatNumber(max)}`),
        max ? h("meter", { min: "0", max: String(max), value: String(Math.min(value, max)), low: String(max * 0.8), high: String(max * 0.95), optimum: "0", "aria-label": label }) : null,
      );

    const usageCard = h(
      "section",
      { class: "card", "aria-labelledby": "usage-title" },
      h("h2", { id: "usage-title" }, "This month"),
      h("p", { class: "muted" }, `${formatTime(used.period_start)} to ${formatTime(used.period_end)}`),
      meter("Tokens", tokens, limits.monthly_tokens),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Input tokens"), h("dd", {}, used.input_tokens.toLocaleString()),
        h("dt", {}, "Cached input tokens"), h("dd", {}, used.cached_input_tokens.toLocaleString()),
        h("dt", {}, "Output tokens"), h("dd", {}, used.output_tokens.toLocaleString()),
        h("dt", {}, "Runs"), h("dd", {}, used.runs.toLocaleString()),
        h("dt", {}, "Tokens left"), h("dd", {}, formatNumber(used.remaining?.monthly_tokens)),
        h("dt", {}, "Runs left this minute"), h("dd", {}, formatNumber(used.remaining?.runs_this_minute)),
      ),
    );

    const limitsCard = h(
      "section",
      { class: "card", "aria-labelledby": "limits-title" },
      h("h2", { id: "limits-title" }, "Limits"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Seats"), h("dd", {}, formatNumber(limits.seats)),
        h("dt", {}, "Runs per minute"), h("dd", {}, formatNumber(limits.runs_per_minute)),
        h("dt", {}, "Concurrent runs"), h("dd", {}, formatNumber(limits.concurrent_runs)),
        h("dt", {}, "Tokens per month"), h("dd", {}, formatNumber(limits.monthly_tokens)),
        h("dt", {}, "Open streams per user"), h("dd", {}, formatNumber(limits.open_streams_per_user)),
      ),
    );

    const plansCard = h(
      "section",
      { class: "card", "aria-labelledby": "plans-title" },
      h("h2", { id: "plans-title" }, "Plans"),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ...["Plan", "Seat / month", "Included tokens", "Seats", "Runs / min", "Tokens / month"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            planList.map((p) => {
              const l = (p.limits ?? {}) as Limits;
              return h(
                "tr",
                {},
                h("th", { scope: "row" }, p.name),
                h("td", {}, `$${(p.seat_price_cents / 100).toFixed(2)}`),
                h("td", {}, formatNumber(p.included_tokens)),
                h("td", {}, formatNumber(l.seats)),
                h("td", {}, formatNumber(l.runs_per_minute)),
                h("td", {}, formatNumber(l.monthly_tokens)),
              );
            }),
          ),
        ),
      ),
    );
    clear(page, h("h1", {}, "Plan & usage"), subscriptionCard, usageCard, limitsCard, plansCard);
  } catch (error) {
    clear(
      page,
      h("h1", {}, "Plan & usage"),
      h("p", { class: "error", role: "alert" }, statusOf(error) === 403 ? "Your role cannot read billing." : describe(error)),
    );
  }
}
