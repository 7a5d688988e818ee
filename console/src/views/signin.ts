import { h } from "../dom";
import { session } from "../session";
import { describe } from "../errors";

export function signInView(onSignedIn: () => Promise<void>): HTMLElement {
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const error = h("p", { class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { "aria-labelledby": "signin-title" },
    h("div", { class: "field" }, h("label", { for: "email" }, "Email"), email),
    h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
    error,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.textContent = "";
    try {
      await session.signIn(email.value.trim(), password.value);
      password.value = "";
      await onSignedIn();
    } catch (err) {
      error.textContent = describe(err);
      submit.disabled = false;
      password.focus();
    }
  });
  queueMicrotask(() => email.focus());
  return h(
    "main",
    { class: "signin", id: "main" },
    h("h1", { id: "signin-title" }, "Sign in to Switchboard"),
    h("div", { class: "card" }, form),
  );
}
