// The signing page: identify, read, sign or decline. Talks only to this origin's API.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const T = data.text;
  const api = "/api/v1/signing/" + encodeURIComponent(data.token);
  const $ = (id) => document.getElementById(id);
  let polling = null;
  let pagesRequested = false;

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
    showPages();
  }

  // The decision itself, page by page (images of the PDF that will be sealed): "I have
  // read the decision" can be ticked once the end of the last page has been on screen.
  function allowConfirm() {
    $("confirm").disabled = false;
    $("confirm-hint").hidden = true;
  }

  async function showPages() {
    if (pagesRequested) { return; }
    pagesRequested = true;
    const box = $("pages");
    let result;
    try {
      result = await call("GET", "/pages");
    } catch (error) { pagesFailed(); return; }
    box.textContent = "";
    for (const page of result.pages) {
      const img = document.createElement("img");
      img.alt = page.alt;
      img.width = page.width;
      img.height = page.height;
      img.decoding = "async";
      img.addEventListener("error", pagesFailed);
      img.src = page.url;
      box.appendChild(img);
    }
    box.removeAttribute("aria-busy");
    const last = box.lastElementChild;
    if (!last) { pagesFailed(); return; }
    $("pages-end").hidden = false;
    let loaded = false;
    let seen = false;
    const ready = () => { if (loaded && seen) { allowConfirm(); } };
    if (last.complete && last.naturalWidth > 0) { loaded = true; } else {
      last.addEventListener("load", () => { loaded = true; ready(); });
    }
    whenShown($("after-pages"), () => { seen = true; ready(); });
  }

  // Calls back once ``element`` is on screen. It is everything under the last page, down
  // to the end of the page, so it is on screen whenever the end of the last page is on
  // or above the screen: a jump past it (the End key, a fast fling) counts too.
  function whenShown(element, callback) {
    if ("IntersectionObserver" in window) {
      const observer = new IntersectionObserver((entries) => {
        if (entries.some((entry) => entry.isIntersecting)) { observer.disconnect(); callback(); }
      });
      observer.observe(element);
      return;
    }
    const check = () => {  // browsers without IntersectionObserver: ask on scroll
      const box = element.getBoundingClientRect();
      if (box.bottom > 0 && box.top < (window.innerHeight || document.documentElement.clientHeight)) {
        window.removeEventListener("scroll", check);
        window.removeEventListener("resize", check);
        callback();
      }
    };
    window.addEventListener("scroll", check, { passive: true });
    window.addEventListener("resize", check);
    check();
  }

  // Without the pages on screen the PDF is the way to read it: opening it allows the box.
  function pagesFailed() {
    if ($("pages").dataset.failed) { return; }
    $("pages").dataset.failed = "1";
    $("pages").removeAttribute("aria-busy");
    $("pages").textContent = "";
    $("pages-end").hidden = true;
    const notice = document.createElement("p");
    notice.className = "error";
    notice.textContent = T["pages.failed"];
    $("pages").appendChild(notice);
    if ($("confirm").disabled) {
      $("confirm-hint").textContent = T["confirm.wait_pdf"];
      $("document-link").addEventListener("click", allowConfirm);
    }
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
