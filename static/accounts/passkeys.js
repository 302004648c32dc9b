// Passkeys (WebAuthn): register one on the Security page, sign in with one, or confirm one
// before a change (step-up). Served from static/ for the Content-Security-Policy: no inline
// script. Each element with data-passkey="register|authenticate|step-up" holds the URLs of
// its ceremony (options, then the answer), a start button and a status line.
(function () {
  "use strict";

  function toBytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken(root) {
    const field = root.querySelector("input[name=csrfmiddlewaretoken]") ||
      document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  async function post(root, url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "X-CSRFToken": csrfToken(root),
      },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await response.json(); } catch (error) { data = {}; }
    if (!response.ok) {
      throw new Error(data.error || "The portal refused this (" + response.status + "): reload the page and try again.");
    }
    return data;
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  async function register(root) {
    const nameField = root.querySelector("[data-passkey-name]");
    const name = nameField ? nameField.value.trim() : "";
    if (!name) throw new Error("Name the passkey first (e.g. “Work laptop”).");
    const options = await post(root, root.dataset.optionsUrl);
    const credential = await navigator.credentials.create({
      publicKey: Object.assign({}, options, {
        challenge: toBytes(options.challenge),
        user: Object.assign({}, options.user, { id: toBytes(options.user.id) }),
        excludeCredentials: descriptors(options.excludeCredentials),
      }),
    });
    const response = credential.response;
    return post(root, root.dataset.url, {
      name: name,
      credential: {
        id: credential.id,
        rawId: toBase64url(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toBase64url(response.clientDataJSON),
          attestationObject: toBase64url(response.attestationObject),
          transports: response.getTransports ? response.getTransports() : [],
        },
        clientExtensionResults: credential.getClientExtensionResults(),
      },
    });
  }

  async function authenticate(root) {
    const options = await post(root, root.dataset.optionsUrl);
    const credential = await navigator.credentials.get({
      publicKey: Object.assign({}, options, {
        challenge: toBytes(options.challenge),
        allowCredentials: descriptors(options.allowCredentials),
      }),
    });
    const response = credential.response;
    return post(root, root.dataset.url, {
      credential: {
        id: credential.id,
        rawId: toBase64url(credential.rawId),
        type: credential.type,
        response: {
          clientDataJSON: toBase64url(response.clientDataJSON),
          authenticatorData: toBase64url(response.authenticatorData),
          signature: toBase64url(response.signature),
          userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
        },
        clientExtensionResults: credential.getClientExtensionResults(),
      },
    });
  }

  function start(root) {
    const button = root.querySelector("[data-passkey-start]");
    const status = root.querySelector("[data-passkey-status]");
    if (!button) return;
    if (!window.PublicKeyCredential) {
      button.disabled = true;
      if (status) status.textContent = "This browser cannot use passkeys.";
      return;
    }
    button.addEventListener("click", async function () {
      button.disabled = true;
      if (status) status.textContent = "Follow your browser's prompt…";
      try {
        const kind = root.dataset.passkey;
        const data = kind === "register" ? await register(root) : await authenticate(root);
        if (kind === "step-up") {
          if (status) status.textContent = "Confirmed. Completing your change…";
          document.getElementById(root.dataset.form).submit();
        } else {
          if (status) status.textContent = "Done.";
          window.location.assign(data.redirect);
        }
      } catch (error) {
        if (status) status.textContent = error.name === "NotAllowedError"
          ? "The passkey prompt was closed or timed out: try again."
          : error.message;
        button.disabled = false;
      }
    });
  }

  document.querySelectorAll("[data-passkey]").forEach(start);
})();
