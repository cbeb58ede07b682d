// The DingTalk card's page (web/messenger_hooks.py): inside DingTalk, ask its JSAPI
// (dingtalk-jsapi.js, loaded before this) for a 免登 auth code and post it back; the
// service exchanges it for the person's userid. Outside DingTalk nothing is posted.
(function () {
  var form = document.getElementById("ack");
  var state = document.getElementById("state");
  if (!form || typeof dd === "undefined" || !dd.runtime) { return; }
  if (dd.env && dd.env.platform === "notInDingTalk") {
    if (state) { state.textContent = form.getAttribute("data-outside") || ""; }
    return;
  }
  function post(result) { form.elements.code.value = result.code; form.submit(); }
  function fail() { if (state) { state.textContent = form.getAttribute("data-failed") || ""; } }
  dd.ready(function () {
    var asked = dd.runtime.permission.requestAuthCode({
      corpId: form.getAttribute("data-corp-id"), onSuccess: post, onFail: fail
    });
    if (asked && typeof asked.then === "function") { asked.then(function () {}, function () {}); }
  });
})();
