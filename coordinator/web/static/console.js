// The console's few behaviours, in plain JavaScript (no framework, nothing fetched
// from elsewhere): buttons that call the JSON API, live sections kept fresh by
// server-sent events, the SMS segment count, the script editor and the trigger form.
"use strict";

const TEXT = JSON.parse(document.getElementById("console-text")?.textContent || "{}");
const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": CSRF },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { /* an empty or non-JSON answer */ }
  if (!response.ok) {
    const err = data?.error;
    const details = (err?.details || []).map((d) => (typeof d === "string" ? d : JSON.stringify(d)));
    throw new Error([err?.message || `HTTP ${response.status}`, ...details].join("; "));
  }
  return data;
}

// Forms whose buttons call the API must not submit themselves on Enter (no inline
// handlers: the page's Content-Security-Policy runs no inline script).
// Delegated, so forms in live sections swapped in later are covered too.
document.addEventListener("submit", (event) => {
  if (event.target.matches("form[data-nosubmit]")) event.preventDefault();
});

function say(near, message, bad) {
  const out = near.closest("form, p, .actions, header, article")?.querySelector(".result");
  if (!out) return;
  out.textContent = message;
  out.classList.toggle("bad", !!bad);
  out.classList.toggle("good", !bad);
}

function formParams(form) {
  const params = {};
  for (const input of form.querySelectorAll('[name^="param:"]')) params[input.name.slice(6)] = input.value.trim();
  return params;
}

// "待补充参数：差错时段、差错原因": the parameters a preview lacks by their labels, in the
// server-rendered preview's words (the form's data-params: labels, the words, separator, colon).
function missingText(form, names) {
  const words = JSON.parse(form.dataset.params || "{}");
  const labels = words.labels || {};
  const list = names.map((n) => labels[n] || n).join(words.sep || ", ");
  return `${words.missing || TEXT["js.missing"]}${words.colon || ": "}${list}`;
}

function formBody(form) {
  const body = {};
  for (const el of form.elements) {
    if (!el.name || el.name.startsWith("param:") || el.type === "button") continue;
    body[el.name] = el.type === "checkbox" ? el.checked : el.value;
  }
  const params = formParams(form);
  if (Object.keys(params).length) body.params = params;
  return body;
}

// --- live sections -------------------------------------------------------------------

const page = document.getElementById("page");
let refreshing = null;
let again = false;

// Fetch the page again and swap every [data-live] section for its fresh copy; the
// editor and anything else not marked live is left as the user has it.
async function refresh() {
  if (refreshing) { again = true; return refreshing; }
  refreshing = (async () => {
    do {
      again = false;
      const response = await fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (!response.ok) break;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const section of document.querySelectorAll("[data-live]")) {
        const fresh = doc.getElementById(section.id);
        if (fresh) section.replaceWith(document.adoptNode(fresh));
      }
      const fp = doc.getElementById("page")?.dataset.fingerprint;
      if (fp && page) page.dataset.fingerprint = fp;
    } while (again);
  })();
  try { await refreshing; } finally { refreshing = null; }
}

function liveState(kind) {
  const banner = document.getElementById("live-state");
  if (!banner) return;
  banner.hidden = !kind;
  if (kind) banner.textContent = banner.dataset[kind];
}

if (page?.dataset.events && window.EventSource) {
  const source = new EventSource(page.dataset.events);
  source.addEventListener("update", (event) => {
    liveState(null);
    const summary = JSON.parse(event.data);
    if (summary.fingerprint !== page.dataset.fingerprint) {
      page.dataset.fingerprint = summary.fingerprint;
      refresh();
    }
  });
  source.addEventListener("trouble", () => liveState("trouble"));
  source.addEventListener("error", () => liveState("offline"));
  source.addEventListener("open", () => liveState(null));
}

// --- buttons that call the API ------------------------------------------------------

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-post]");
  if (!button) return;
  event.preventDefault();
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  const form = button.dataset.form ? document.getElementById(button.dataset.form) : null;
  button.disabled = true;
  say(button, TEXT["js.working"]);
  try {
    await api("POST", button.dataset.post, form ? formBody(form) : {});
    say(button, TEXT["js.done"]);
    if (form && button.hasAttribute("data-clear")) form.reset(); // a note added: the box is empty again
    if (button.dataset.then === "reload") location.reload();
    else if (button.dataset.then === "refresh") await refresh();
  } catch (err) {
    say(button, `${TEXT["js.failed"]}: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
});

for (const select of document.querySelectorAll("select[data-autosubmit]")) {
  select.addEventListener("change", () => select.form.submit());
}

// --- SMS segments: coordinator/segments.py, the same rule ---------------------------

const GSM7_BASIC = new Set(Array.from(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
  "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"));
const GSM7_EXTENDED = new Set(Array.from("\f^{}\\[~]|€"));
const LIMITS = { "GSM-7": [160, 153], "UCS-2": [70, 67] };

function smsSegments(text) {
  const chars = Array.from(text); // code points, as Python iterates a str
  let encoding, costs;
  if (chars.every((c) => GSM7_BASIC.has(c) || GSM7_EXTENDED.has(c))) {
    encoding = "GSM-7";
    costs = chars.map((c) => (GSM7_EXTENDED.has(c) ? 2 : 1));
  } else {
    encoding = "UCS-2";
    costs = chars.map((c) => (c.codePointAt(0) > 0xffff ? 2 : 1));
  }
  const units = costs.reduce((a, b) => a + b, 0);
  const [single, perPart] = LIMITS[encoding];
  if (units <= single) return { encoding, segments: 1, units };
  let parts = 1, room = perPart;
  for (const cost of costs) {
    if (cost > room) { parts += 1; room = perPart; }
    room -= cost;
  }
  return { encoding, segments: parts, units };
}
window.smsSegments = smsSegments;

function showSegments(textarea) {
  const out = document.getElementById(textarea.dataset.segments);
  if (!out) return;
  let text = textarea.value.trim(); // the server strips the SMS too
  const code = textarea.dataset.code; // and adds the incident's code unless it is there (replies.py)
  if (code && !text.includes(`事件码${code}`)) text += `〔事件码${code}〕`;
  const s = smsSegments(text);
  out.textContent = `${s.segments} ${TEXT["js.segments"]} (${s.encoding}, ${s.units})`;
  out.dataset.segments = String(s.segments);
}
for (const textarea of document.querySelectorAll("textarea[data-segments]")) {
  textarea.addEventListener("input", () => showSegments(textarea));
  showSegments(textarea);
}

// --- the script editor (incident page) ------------------------------------------------

const TEXT_FIELDS = ["sms", "email_subject", "email_text"];

// The email's HTML from its edited text, so that both parts of the email say the same.
function textToHtml(text) {
  const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return text.split(/\n{2,}/).map((p) => `<p>${escape(p).replace(/\n/g, "<br>\n")}</p>`).join("\n") + "\n";
}

const editor = document.getElementById("draft-form");
if (editor) {
  const edited = new Set();
  for (const name of TEXT_FIELDS) editor.elements[name].addEventListener("input", () => edited.add(name));
  const texts = () => {
    const out = {};
    for (const name of edited) out[name] = editor.elements[name].value;
    if (edited.has("email_text")) out.email_html = textToHtml(out.email_text);
    return out;
  };
  editor.querySelector("[data-render]").addEventListener("click", async (event) => {
    try {
      const version = await api("POST", editor.dataset.preview, { params: formParams(editor) });
      for (const name of TEXT_FIELDS) editor.elements[name].value = version[name];
      edited.clear();
      showSegments(editor.elements.sms);
      say(event.target, version.missing.length ? missingText(editor, version.missing) : TEXT["js.done"],
          version.missing.length > 0);
    } catch (err) {
      say(event.target, `${TEXT["js.failed"]}: ${err.message}`, true);
    }
  });
  editor.querySelector("[data-draft]").addEventListener("click", async (event) => {
    const button = event.target;
    button.disabled = true;
    try {
      const version = await api("POST", button.dataset.draft, { params: formParams(editor), ...texts() });
      say(button, `v${version.version} ${TEXT["js.done"]}`);
      edited.clear();
      location.reload(); // the editor opens on the next version
    } catch (err) {
      say(button, `${TEXT["js.failed"]}: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
  });
  window.addEventListener("beforeunload", (event) => {
    if (edited.size) { event.preventDefault(); event.returnValue = TEXT["js.unsaved"]; }
  });
}

// --- the trigger form ----------------------------------------------------------------

const trigger = document.getElementById("trigger-form");
if (trigger) {
  let timer = null;
  let asked = 0;
  const body = () => {
    const b = formBody(trigger);
    delete b.playbook;
    if (!b.severity) delete b.severity;
    return b;
  };
  const preview = async () => {
    const mine = ++asked;
    try {
      const v = await api("POST", trigger.dataset.preview, body());
      if (mine !== asked) return; // a newer preview is on its way
      document.getElementById("preview-sms").textContent = v.sms;
      document.getElementById("preview-subject").textContent = v.email_subject;
      document.getElementById("preview-text").textContent = v.email_text;
      const missing = v.missing.length ? ` · ${missingText(trigger, v.missing)}` : "";
      document.getElementById("preview-meta").textContent = `${v.sms_segments} ${TEXT["js.segments"]} (${v.sms_encoding})${missing}`;
    } catch (err) {
      document.getElementById("preview-meta").textContent = `${TEXT["js.failed"]}: ${err.message}`;
    }
  };
  trigger.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(preview, 250); });
  trigger.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(preview, 250); });
  trigger.querySelector("[data-trigger]").addEventListener("click", async (event) => {
    const button = event.target;
    if (!trigger.reportValidity()) return;
    button.disabled = true;
    try {
      const incident = await api("POST", button.dataset.trigger, { playbook: trigger.elements.playbook.value, ...body() });
      location.href = `/incidents/${encodeURIComponent(incident.id)}`;
    } catch (err) {
      say(button, `${TEXT["js.failed"]}: ${err.message}`, true);
      button.disabled = false;
    }
  });
}
