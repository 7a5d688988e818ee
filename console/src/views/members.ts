import { h, clear, formatTime } from "../dom";
import { client, unwrapped, nextCursor, type Me } from "../session";
import { describe } from "../errors";

const ROLES = ["member", "billing", "admin", "owner"] as const;
type Role = (typeof ROLES)[number];

/** Members of the tenant (any member reads them); invitations and changes for owners and admins. */
export function membersView(root: HTMLElement, me: Me, manager: boolean): void {
  const status = h("p", { role: "status", class: "muted" });
  const membersBody = h("tbody");
  const membersMore = h("button", { type: "button", class: "link", hidden: true }, "Load more members");
  const invitationsBody = h("tbody");
  const invitationsMore = h("button", { type: "button", class: "link", hidden: true }, "Load more invitations");
  let membersCursor: string | null = null;
  let invitationsCursor: string | null = null;
  const isOwner = me.roles.includes("owner");

  const roleSelect = (id: string, value: string, label: string) =>
    h(
      "select",
      { id, "aria-label": label },
      ROLES.filter((r) => isOwner || r !== "owner" || r === value).map((r) =>
        h("option", { value: r, selected: r === value }, r),
      ),
    );

  async function loadMembers(reset: boolean): Promise<void> {
    try {
      const result = await client.api.GET("/api/v1/tenant/members", {
        params: { query: { limit: 100, ...(!reset && membersCursor ? { cursor: membersCursor } : {}) } },
      });
      const rows = unwrapped(result);
      if (reset) membersBody.replaceChildren();
      for (const member of rows) membersBody.append(memberRow(member));
      membersCursor = nextCursor(result.response);
      membersMore.hidden = membersCursor === null;
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  function memberRow(member: { user_id: string; email: string; display_name?: string | null; role: string; joined_at: string }): HTMLElement {
    const self = member.user_id === me.user.id;
    let roleCell: HTMLElement = h("span", {}, member.role);
    const actions = h("td", {});
    if (manager && !self && (isOwner || member.role !== "owner")) {
      const select = roleSelect(`role-${member.user_id}`, member.role, `Role of ${member.email}`);
      select.addEventListener("change", async () => {
        try {
          unwrapped(
            await client.api.PATCH("/api/v1/tenant/members/{user_id}", {
              params: { path: { user_id: member.user_id } },
              body: { role: select.value as Role },
            }),
          );
          status.textContent = `${member.email} is now ${select.value}.`;
        } catch (error) {
          select.value = member.role;
          status.textContent = describe(error);
        }
      });
      roleCell = select;
      const remove = h("button", { type: "button", class: "danger" }, "Remove");
      remove.setAttribute("aria-label", `Remove ${member.email}`);
      remove.addEventListener("click", async () => {
        if (!confirm(`Remove ${member.email} from the tenant?`)) return;
        try {
          unwrapped(
            await client.api.DELETE("/api/v1/tenant/members/{user_id}", {
              params: { path: { user_id: member.user_id } },
            }),
          );
          status.textContent = `${member.email} was removed.`;
          void loadMembers(true);
        } catch (error) {
          status.textContent = describe(error);
        }
      });
      actions.append(remove);
    }
    return h(
      "tr",
      {},
      h("td", {}, member.email, self ? h("span", { class: "muted" }, " (you)") : null),
      h("td", {}, member.display_name ?? ""),
      h("td", {}, roleCell),
      h("td", {}, formatTime(member.joined_at)),
      actions,
    );
  }

  async function loadInvitations(reset: boolean): Promise<void> {
    try {
      const result = await client.api.GET("/api/v1/tenant/invitations", {
        params: { query: { limit: 100, ...(!reset && invitationsCursor ? { cursor: invitationsCursor } : {}) } },
      });
      const rows = unwrapped(result);
      if (reset) invitationsBody.replaceChildren();
      if (reset && rows.length === 0) {
        invitationsBody.append(h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No pending invitations.")));
      }
      for (const invitation of rows) {
        const revoke = h("button", { type: "button", class: "danger", "aria-label": `Revoke the invitation of ${invitation.email}` }, "Revoke");
        revoke.addEventListener("click", async () => {
          try {
            unwrapped(
              await client.api.DELETE("/api/v1/tenant/invitations/{invitation_id}", {
                params: { path: { invitation_id: invitation.id } },
              }),
            );
            status.textContent = `The invitation of ${invitation.email} was revoked.`;
            void loadInvitations(true);
          } catch (error) {
            status.textContent = describe(error);
          }
        });
        invitationsBody.append(
          h("tr", {}, h("td", {}, invitation.email), h("td", {}, invitation.role), h("td", {}, formatTime(invitation.expires_at)), h("td", {}, revoke)),
        );
      }
      invitationsCursor = nextCursor(result.response);
      invitationsMore.hidden = invitationsCursor === null;
    } catch (error) {
      status.textContent = describe(error);
    }
  }

  const inviteEmail = h("input", { id: "invite-email", type: "email", required: true, autocomplete: "off" });
  const inviteRole = roleSelect("invite-role", "member", "Role");
  const inviteForm = h(
    "form",
    { class: "row", "aria-label": "Invite a member" },
    h("div", { class: "field" }, h("label", { for: "invite-email" }, "Email"), inviteEmail),
    h("div", { class: "field" }, h("label", { for: "invite-role" }, "Role"), inviteRole),
    h("button", { type: "submit", class: "primary" }, "Invite"),
  );
  inviteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const invitation = unwrapped(
        await client.api.POST("/api/v1/tenant/invitations", {
          body: { email: inviteEmail.value.trim(), role: inviteRole.value as Role },
        }),
      );
      status.textContent = `Invitation sent to ${invitation.email}.`;
      inviteEmail.value = "";
      void loadInvitations(true);
    } catch (error) {
      status.textContent = describe(error);
    }
  });

  const head = (...titles: string[]) => h("thead", {}, h("tr", {}, titles.map((t) => h("th", { scope: "col" }, t))));
  clear(
    root,
    h(
      "div",
      { class: "page" },
      h("h1", {}, "Members"),
      status,
      h(
        "section",
        { class: "card", "aria-labelledby": "members-title" },
        h("h2", { id: "members-title" }, "Members"),
        h("div", { class: "table-wrap" }, h("table", {}, head("Email", "Name", "Role", "Joined", ""), membersBody)),
        membersMore,
      ),
      manager &&
        h(
          "section",
          { class: "card", "aria-labelledby": "invitations-title" },
          h("h2", { id: "invitations-title" }, "Invitations"),
          inviteForm,
          h("div", { class: "table-wrap" }, h("table", {}, head("Email", "Role", "Expires", ""), invitationsBody)),
          invitationsMore,
        ),
    ),
  );
  membersMore.addEventListener("click", () => void loadMembers(false));
  invitationsMore.addEventListener("click", () => void loadInvitations(false));
  void loadMembers(true);
  if (manager) void loadInvitations(true);
}
