// Live updates for the team pages: wait (long poll) for the project's next event, then fetch
// this page again and put its new content in place. The pages work without it.
"use strict";

(function () {
  const main = document.querySelector("main[data-live]");
  if (!main || !window.fetch || !window.DOMParser) {
    return;
  }
  const status = document.querySelector(".live-status");
  let after = main.dataset.after;

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  async function refresh() {
    const reply = await fetch(location.href, {credentials: "same-origin"});
    if (!reply.ok) {
      return;
    }
    const page = new DOMParser().parseFromString(await reply.text(), "text/html");
    const fresh = page.querySelector("main[data-live]");
    if (!fresh) {
      return;
    }
    main.replaceChildren(...Array.from(fresh.childNodes).map((node) => document.adoptNode(node)));
    after = fresh.dataset.after;
    if (status) {
      status.textContent = "Updated " + new Date().toLocaleTimeString() + ": new events arrived.";
    }
  }

  async function follow() {
    for (;;) {
      let reply;
      try {
        reply = await fetch(main.dataset.live + "?after=" + encodeURIComponent(after),
                            {credentials: "same-origin", headers: {Accept: "application/json"}});
      } catch (error) {
        await sleep(10000);  // the hub is away: try again later, quietly
        continue;
      }
      if (!reply.ok) {
        return;  // signed out, or the link expired: the page says so at the next load
      }
      const body = await reply.json();
      if (String(body.after) !== String(after)) {
        await refresh();
      }
    }
  }

  follow();
})();
