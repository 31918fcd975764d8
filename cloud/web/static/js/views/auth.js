// Log in and sign up.

import { endpoints } from "../api.js";
import { busy, h, message, replace } from "../dom.js";
import { browserTimeZone } from "../format.js";

function field(id, label, attrs, hint) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name: id, ...attrs, "aria-describedby": hint ? `${id}-hint` : null }),
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
}

function authCard(title, form, footer) {
  return h("section", { class: "card auth-card", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title" }, title),
    form,
    h("p", { class: "auth-switch" }, footer),
  );
}

export async function loginView(app, page) {
  const errors = h("div", { class: "form-errors" });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { novalidate: true },
    field("email", "Email", { type: "email", autocomplete: "username", required: true, autofocus: true }),
    field("password", "Password", { type: "password", autocomplete: "current-password", required: true }),
    errors,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(errors);
    const email = form.email.value.trim();
    const password = form.password.value;
    if (!email || !password) {
      replace(errors, message("error", "Enter your email and password."));
      return;
    }
    await busy(submit, async () => {
      try {
        const { data } = await endpoints.login(email, password);
        await app.signedIn(data.access_token);
      } catch (error) {
        const text = error.status === 401 ? "Wrong email or password." : error.message;
        replace(errors, message("error", text));
        form.password.select();
      }
    });
  });
  replace(page, authCard("Log in to mailcam", form, ["New here? ", h("a", { href: "#/signup" }, "Create an account")]));
}

export async function signupView(app, page) {
  const errors = h("div", { class: "form-errors" });
  const submit = h("button", { type: "submit" }, "Create account");
  const form = h("form", { novalidate: true },
    field("name", "Your name (optional)", { type: "text", autocomplete: "name", maxlength: 100, autofocus: true }),
    field("email", "Email", { type: "email", autocomplete: "email", required: true }),
    field("password", "Password", { type: "password", autocomplete: "new-password", required: true, minlength: 8 },
      "At least 8 characters."),
    errors,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(errors);
    const body = {
      email: form.email.value.trim(),
      password: form.password.value,
      name: form.name.value.trim() || null,
      timezone: browserTimeZone(),
    };
    if (!body.email || body.password.length < 8) {
      replace(errors, message("error", "Enter your email and a password of at least 8 characters."));
      return;
    }
    await busy(submit, async () => {
      try {
        try {
          await endpoints.signup(body);
        } catch (error) {
          // The browser's zone may be one the server does not know: fall back to UTC rather than fail.
          if (error.status !== 422 || !JSON.stringify(error.body).includes("timezone")) throw error;
          await endpoints.signup({ ...body, timezone: "UTC" });
        }
        const { data } = await endpoints.login(body.email, body.password);
        await app.signedIn(data.access_token);
      } catch (error) {
        const text = error.status === 409 ? "An account with this email already exists — log in instead." : error.message;
        replace(errors, message("error", text));
      }
    });
  });
  replace(page, authCard("Create your account", form, ["Already have an account? ", h("a", { href: "#/login" }, "Log in")]));
}
