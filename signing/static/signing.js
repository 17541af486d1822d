// The signing page: identify, read, sign or decline. Talks only to this origin's API.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const T = data.text;
  const api = "/api/v1/signing/" + encodeURIComponent(data.token);
  const $ = (id) => document.getElementById(id);
  let polling = null;

  function status(text, isError) {
    const el = $("status");
    el.textContent = text || "";
    el.className = isError ? "error" : "";
  }

  async function call(method, path, body) {
    const options = { method: method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(api + path + "?lang=" + data.lang, options);
    let payload = {};
    try { payload = await response.json(); } catch (e) { payload = {}; }
    if (!response.ok) {
      const error = new Error(payload.message || response.statusText);
      error.code = payload.error;
      throw error;
    }
    return payload;
  }

  function show(id) {
    for (const section of ["identify", "decide", "done"]) { $(section).hidden = section !== id; }
  }

  function finished(kind, checksum) {
    if (polling) { clearInterval(polling); polling = null; }
    show("done");
    $("done-text").textContent = T[kind];
    $("checksum").textContent = checksum ? T.checksum + ": " + checksum : "";
    status("");
  }

  function readyToDecide() {
    if (polling) { clearInterval(polling); polling = null; }
    show("decide");
    $("document-link").href = api + "/document.pdf";
    status("");
  }

  async function startMethod(method) {
    status(T.working);
    try {
      const page = await call("POST", "/auth", { method: method });
      status("");
      if (method === "matrix-code") {
        $("code-form").hidden = false;
        $("code").focus();
      } else if (method === "bankid") {
        $("bankid").hidden = false;
        showBankId(page);
        $("bankid-open").href = "bankid:///?autostarttoken=" + encodeURIComponent(page.autoStartToken || "") + "&redirect=null";
        polling = setInterval(pollBankId, 2000);
      } else if (method === "oidc" && page.redirect) {
        window.location.assign(page.redirect);
      }
    } catch (error) { status(error.message, true); }
  }

  function showBankId(page) {
    if (page.qr_svg) { $("bankid-qr").src = "data:image/svg+xml;base64," + btoa(page.qr_svg); }
    if (page.message) { status(page.message); }
  }

  async function pollBankId() {
    try {
      const page = await call("GET", "/auth/status");
      if (page.status === "done") { readyToDecide(); } else { showBankId(page); }
    } catch (error) {
      clearInterval(polling); polling = null;
      status(error.message, true);
    }
  }

  $("code-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    status(T.working);
    try {
      await call("POST", "/auth/verify", { code: $("code").value });
      readyToDecide();
    } catch (error) { status(error.message, true); }
  });

  $("confirm").addEventListener("change", () => { $("sign").disabled = !$("confirm").checked; });

  async function decide(action) {
    status(T.working);
    $("sign").disabled = true;
    try {
      const result = await call("POST", "/decision", { action: action, reason: $("reason").value });
      finished(result.status === "signed" ? "signed" : "declined", result.document_sha256);
    } catch (error) {
      status(error.message, true);
      $("sign").disabled = !$("confirm").checked;
    }
  }
  $("sign").addEventListener("click", () => decide("sign"));
  $("decline").addEventListener("click", () => decide("decline"));

  async function load() {
    try {
      const view = await call("GET", "");
      $("case-number").textContent = view.case_number;
      $("decision-type").textContent = view.decision_type;
      $("signer").textContent = view.signer;
      $("expires").textContent = new Date(view.expires_at).toLocaleString(
        data.lang === "en" ? "en-GB" : "sv-SE", { dateStyle: "short", timeStyle: "short" });
      $("summary").hidden = false;
      if (view.status !== "pending") { finished("decided"); return; }
      if (view.identified) { readyToDecide(); return; }
      show("identify");
      const methods = $("methods");
      for (const method of view.auth_methods) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = T["method." + method] || method;
        button.addEventListener("click", () => startMethod(method));
        methods.appendChild(button);
      }
    } catch (error) { status(error.message, true); }
  }
  load();
})();
