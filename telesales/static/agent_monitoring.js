// Agent desk: a notice while a supervisor monitors my call, when monitoring.agent_sees_monitoring is on.
(() => {
  const notice = document.createElement("p");
  notice.id = "monitoring-notice";
  notice.className = "notice";
  notice.style.cssText = "background:#fff3cd;border:1px solid #e0c36a;padding:.4em .8em;margin:.5em 0";
  notice.hidden = true;
  (document.querySelector("main") || document.body).prepend(notice);
  const words = {listen: "is listening", whisper: "is coaching you (only you hear them)",
                 barge: "has joined the call"};
  let timer = null;

  async function check() {
    let body;
    try {
      const resp = await fetch("/api/v1/agent/monitoring", {credentials: "same-origin"});
      if (!resp.ok) return;
      body = await resp.json();
    } catch (e) { return; }
    if (!body.shown) { clearInterval(timer); return; }  // the setting is off: nothing to show, stop asking
    notice.hidden = body.sessions.length === 0;
    notice.textContent = body.sessions.map((s) => `${s.supervisor} ${words[s.mode] || s.mode}`).join(" · ");
  }

  check();
  timer = setInterval(check, 2000);
})();
