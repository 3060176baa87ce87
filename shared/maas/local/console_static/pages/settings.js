// Settings: the AWS key registry calls are signed with. Kept in sessionStorage (this tab only, gone when
// it closes); never sent anywhere but into the signature.

import { config, credentials, rememberCredentials } from "../api.js";
import { h, fill, section } from "../dom.js";

export async function render(view) {
  const { region } = await config();
  const current = await credentials();
  const accessKey = h("input", { id: "access-key", autocomplete: "off", spellcheck: "false", value: current?.source === "this tab" ? current.accessKeyId : "" });
  const secretKey = h("input", { id: "secret-key", type: "password", autocomplete: "off" });
  const sessionToken = h("input", { id: "session-token", type: "password", autocomplete: "off" });
  const state = h("p", { role: "status", "data-testid": "key-source" });
  const describe = (key) => {
    state.textContent = key
      ? `Registry calls are signed with ${key.accessKeyId} (${key.source}).`
      : "No key: registry pages need one (the API's registry routes are AWS_IAM).";
  };
  describe(current);
  const save = h("button", { type: "submit" }, "Use this key");
  const forget = h("button", { type: "button", class: "secondary" }, "Forget it");
  const form = h(
    "form",
    { class: "row", "aria-label": "Signing key" },
    h("label", { for: "access-key" }, "Access key ID", accessKey),
    h("label", { for: "secret-key" }, "Secret access key", secretKey),
    h("label", { for: "session-token" }, "Session token (optional)", sessionToken),
    save,
    forget,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!accessKey.value || !secretKey.value) return;
    rememberCredentials({ accessKeyId: accessKey.value.trim(), secretAccessKey: secretKey.value, sessionToken: sessionToken.value || undefined });
    secretKey.value = "";
    sessionToken.value = "";
    describe(await credentials());
  });
  forget.addEventListener("click", async () => {
    rememberCredentials(null);
    describe(await credentials());
  });
  fill(
    view,
    h("h1", {}, "Settings"),
    section(
      "Signing key",
      h("p", { class: "muted" }, `Registry routes are signed with SigV4 for ${region}, in this browser. A key typed here stays in this tab only.`),
      state,
      form,
    ),
  );
}
