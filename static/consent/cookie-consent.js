/*
 * Cookie consent banner of the CRM (APPI Art. 31 個人関連情報 / GDPR Art. 7).
 *
 * Embed on a company website (the key is a *publishable* key: it can only record cookie categories, and only
 * from the origins listed on it in the CRM admin):
 *
 *   <script src="https://crm.example.co.jp/static/consent/cookie-consent.js"
 *           data-endpoint="https://crm.example.co.jp/api/v1" data-key="pk_…" defer></script>
 *
 * - Gives the browser an anonymous visitor id (first-party cookie `crm_vid`, one year).
 * - Loads the published cookie categories, shows them unticked (opt-in), and records the choice with
 *   POST /cookie-consents (with an Idempotency-Key, retried once with the same key on a network error).
 * - Asks again when the wording of a category changes (its text hash), and can be reopened at any time with
 *   `CrmCookieConsent.open()` so that withdrawing is as easy as giving (GDPR Art. 7(3)).
 * - Announces the choice as a `crm:cookie-consent` event ({detail: {code: true|false}}) for tag loading.
 * Text from the server is inserted with textContent only.
 * Works under a strict Content-Security-Policy on the site: no inline script, no eval, no style attribute
 * (the site's policy must allow this script's origin in script-src and the CRM's API in connect-src).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  var endpoint = (script.getAttribute("data-endpoint") || "").replace(/\/$/, "");
  var key = script.getAttribute("data-key") || "";
  if (!endpoint || !key) return;

  var lang = (document.documentElement.lang || "ja").slice(0, 2) === "en" ? "en" : "ja";
  var TEXT = {
    ja: {
      dialog: "Cookieの利用について",
      intro: "当サイトでは、以下の目的でCookie等を利用します。同意いただける項目を選んでください（いつでも変更できます）。",
      all: "すべて同意する",
      selected: "選択した項目に同意する",
      none: "すべて拒否する",
    },
    en: {
      dialog: "About cookies",
      intro: "We use cookies and similar technologies for the purposes below. Choose the ones you agree to (you can change this at any time).",
      all: "Accept all",
      selected: "Accept selected",
      none: "Reject all",
    },
  }[lang];

  var VID = "crm_vid";
  var CHOICE = "crm_cookie_consent";
  var YEAR = 365 * 24 * 3600;

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function writeCookie(name, value) {
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie =
      name + "=" + encodeURIComponent(value) + "; Max-Age=" + YEAR + "; Path=/; SameSite=Lax" + secure;
  }

  function randomId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map
      .call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); })
      .join("");
  }

  function visitorId() {
    var id = readCookie(VID);
    if (!id || !/^[A-Za-z0-9-]{8,64}$/.test(id)) {
      id = randomId();
      writeCookie(VID, id);
    }
    return id;
  }

  function storedChoice() {
    try {
      return JSON.parse(readCookie(CHOICE) || "null");
    } catch (e) {
      return null;
    }
  }

  function announce(categories) {
    document.dispatchEvent(new CustomEvent("crm:cookie-consent", { detail: categories }));
  }

  function url(path) {
    return endpoint + path + "?key=" + encodeURIComponent(key);
  }

  function send(categories, attempt, idempotencyKey) {
    return fetch(url("/cookie-consents"), {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
      body: JSON.stringify({ visitor_id: visitorId(), categories: categories }),
    }).catch(function (err) {
      // A retry with the same key is recorded once by the server.
      if (attempt < 1) return send(categories, attempt + 1, idempotencyKey);
      throw err;
    });
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var name in attrs || {}) {
      // Styles through the CSSOM, never as a style attribute: a site whose Content-Security-Policy allows no
      // inline style (style-src without 'unsafe-inline') refuses the attribute but not the CSSOM.
      if (name === "style") node.style.cssText = attrs[name];
      else node.setAttribute(name, attrs[name]);
    }
    if (text) node.textContent = text;
    return node;
  }

  var banner = null;

  function render(categories, previous) {
    if (banner) banner.remove();
    banner = el("div", {
      role: "dialog",
      "aria-label": TEXT.dialog,
      style:
        "position:fixed;left:0;right:0;bottom:0;z-index:2147483647;background:#fff;color:#222;" +
        "border-top:1px solid #ccc;padding:16px;font:14px/1.6 sans-serif;box-shadow:0 -2px 8px rgba(0,0,0,.1)",
    });
    banner.appendChild(el("p", { style: "margin:0 0 8px" }, TEXT.intro));
    var boxes = {};
    categories.forEach(function (c) {
      var label = el("label", { style: "display:block;margin:4px 0" });
      var box = el("input", { type: "checkbox", "data-code": c.code });
      box.checked = !!(previous && previous.categories && previous.categories[c.code]);
      boxes[c.code] = box;
      label.appendChild(box);
      label.appendChild(document.createTextNode(" " + c.title));
      var help = el("small", { style: "display:block;margin-left:1.6em;color:#555" }, c.description);
      label.appendChild(help);
      banner.appendChild(label);
    });
    function save(all) {
      var chosen = {};
      var hashes = {};
      categories.forEach(function (c) {
        chosen[c.code] = all === null ? boxes[c.code].checked : all;
        hashes[c.code] = c.text_hash;
      });
      send(chosen, 0, randomId()).then(function (response) {
        if (!response.ok) return;
        writeCookie(CHOICE, JSON.stringify({ categories: chosen, hashes: hashes }));
        banner.remove();
        banner = null;
        announce(chosen);
      });
    }
    var buttons = el("div", { style: "margin-top:8px;display:flex;gap:8px;flex-wrap:wrap" });
    var accept = el("button", { type: "button" }, TEXT.all);
    var selected = el("button", { type: "button" }, TEXT.selected);
    var reject = el("button", { type: "button" }, TEXT.none);
    accept.addEventListener("click", function () { save(true); });
    selected.addEventListener("click", function () { save(null); });
    reject.addEventListener("click", function () { save(false); });
    buttons.appendChild(accept);
    buttons.appendChild(selected);
    buttons.appendChild(reject);
    banner.appendChild(buttons);
    document.body.appendChild(banner);
  }

  function load(force) {
    return fetch(url("/cookie-consents/categories") + "&lang=" + lang, { mode: "cors", credentials: "omit" })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (categories) {
        if (!categories.length) return;
        var previous = storedChoice();
        var current =
          previous &&
          previous.hashes &&
          categories.every(function (c) { return previous.hashes[c.code] === c.text_hash; });
        if (current && !force) {
          announce(previous.categories);
          return;
        }
        render(categories, previous);
      });
  }

  window.CrmCookieConsent = {
    open: function () { return load(true); },
    get: function () {
      var previous = storedChoice();
      return previous ? previous.categories : null;
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { load(false); });
  } else {
    load(false);
  }
})();
