// The console session's CSRF token on every write: the login sets the `ods_csrf` cookie (readable by this
// script, unlike the HttpOnly session cookie); this copies it into the X-CSRF-Token header of each
// same-origin POST/PUT/PATCH/DELETE made with fetch or XMLHttpRequest, and into the sign-out form. The
// server compares it with an HMAC of the session cookie (ods.api.sessions), so a page of another site,
// which can neither read this cookie nor set the header, cannot write as the signed-in user.
(() => {
  "use strict";
  const HEADER = "X-CSRF-Token";
  const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

  const token = () => {
    const found = document.cookie.split("; ").find((part) => part.startsWith("ods_csrf="));
    return found ? decodeURIComponent(found.slice("ods_csrf=".length)) : "";
  };
  const sameOrigin = (url) => new URL(url, window.location.href).origin === window.location.origin;

  const originalFetch = window.fetch.bind(window);
  window.fetch = (input, init = {}) => {
    const request = input instanceof Request ? input : null;
    const method = String(init.method || (request ? request.method : "GET")).toUpperCase();
    const url = request ? request.url : String(input);
    if (SAFE.has(method) || !sameOrigin(url) || !token()) {
      return originalFetch(input, init);
    }
    const headers = new Headers(init.headers || (request ? request.headers : undefined));
    headers.set(HEADER, token());
    return originalFetch(input, { ...init, headers });
  };

  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function openWithCsrf(method, url, ...rest) {
    this.odsNeedsCsrf = !SAFE.has(String(method).toUpperCase()) && sameOrigin(url);
    return open.call(this, method, url, ...rest);
  };
  XMLHttpRequest.prototype.send = function sendWithCsrf(body) {
    if (this.odsNeedsCsrf && token()) {
      this.setRequestHeader(HEADER, token());
    }
    return send.call(this, body);
  };

  const fillForms = () => {
    for (const field of document.querySelectorAll("form[data-logout] input[name=csrf_token]")) {
      field.value = token();
    }
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", fillForms);
  } else {
    fillForms();
  }
})();
