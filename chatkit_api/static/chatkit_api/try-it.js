// The try-it page: ChatKit embedded the way a site embeds it, against this service, with a
// recap form for the current thread and a line for everything that happens.
//
// Loaded before ChatKit's own script, so that it can tell when that script fails to load;
// everything else waits for the page to be parsed.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("try-it-config").textContent);
  const chatkitScriptUrl = new URL(config.chatkitScriptUrl, location.href).href;
  let threadId = null;

  function whenParsed(callback) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback, { once: true });
    } else {
      callback();
    }
  }

  function report(text, kind = "info") {
    whenParsed(() => {
      const entry = document.createElement("li");
      entry.className = kind;
      const time = document.createElement("time");
      time.textContent = new Date().toLocaleTimeString();
      entry.append(time, text);
      document.getElementById("status").append(entry);
    });
  }

  // A script's load error does not bubble; it is seen while it goes down to the script.
  window.addEventListener(
    "error",
    (event) => {
      if (event.target instanceof HTMLScriptElement && event.target.src === chatkitScriptUrl) {
        report(`ChatKit's script could not be loaded from ${chatkitScriptUrl}. Is it reachable from this browser?`, "error");
      }
    },
    true,
  );

  function csrfToken() {
    const prefix = `${config.csrfCookieName}=`;
    const cookie = document.cookie.split("; ").find((part) => part.startsWith(prefix));
    return cookie ? decodeURIComponent(cookie.slice(prefix.length)) : null;
  }

  // Same-origin calls, as a site's own pages make them: the browser sends the Origin header
  // and the cookies, and the CSRF token goes along whenever Django's CSRF cookie is set.
  async function post(url, body) {
    const headers = { "Content-Type": "application/json" };
    const token = csrfToken();
    if (token) headers["X-CSRFToken"] = token;
    let response;
    try {
      response = await fetch(url, { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body) });
    } catch (error) {
      throw new Error(`the API could not be reached (${error.message})`);
    }
    const reply = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}: ${(reply && reply.error) || response.statusText}`);
    }
    return reply;
  }

  function expiry(reply) {
    return reply.expires_at ? `, valid until ${new Date(reply.expires_at * 1000).toLocaleTimeString()}` : "";
  }

  // ChatKit calls this with null for its first secret, and with the secret it holds when
  // that one is about to expire. Either way the session endpoint makes a new one; the
  // visitor cookie keeps the same ChatKit user, and so the same threads.
  async function getClientSecret(currentClientSecret) {
    const action = currentClientSecret ? "refreshed" : "created";
    try {
      const reply = await post(config.apiUrl, { locale: navigator.language, pageUrl: location.href });
      report(`Session ${action}: ChatKit has a client secret${expiry(reply)}.`, "ok");
      return reply.client_secret;
    } catch (error) {
      report(`Session not ${action}: ${error.message}`, "error");
      throw error;
    }
  }

  function showThread(form) {
    form.querySelector("button").disabled = !threadId;
    form.querySelector("#recap-thread").textContent = threadId
      ? `The recap mails thread ${threadId}.`
      : "Start a conversation first: the recap mails the current thread.";
  }

  function recapSent(reply, email) {
    if (email && config.visitorCopy) return `Recap sent: transcript #${reply.id}, mailed to staff and to ${email}.`;
    if (email) return `Recap sent: transcript #${reply.id}, mailed to staff (a copy to ${email} needs ALLOW_USER_RECAP=true).`;
    return `Recap sent: transcript #${reply.id}, mailed to staff.`;
  }

  function setUpRecapForm(form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new FormData(form);
      const email = fields.get("email").trim();
      form.querySelector("button").disabled = true;
      try {
        const reply = await post(config.transcriptUrl, {
          threadId,
          mode: "recap",
          name: fields.get("name").trim(),
          email,
          pageUrl: location.href,
        });
        report(recapSent(reply, email), "ok");
      } catch (error) {
        report(`Recap not sent: ${error.message}`, "error");
      } finally {
        showThread(form);
      }
    });
  }

  function setUpChatKit(chatkit, form) {
    chatkit.addEventListener("chatkit.thread.change", (event) => {
      threadId = event.detail.threadId;
      report(threadId ? `Thread ${threadId} is open.` : "A new conversation: no thread yet.");
      showThread(form);
    });
    chatkit.addEventListener("chatkit.error", (event) => {
      report(`ChatKit reported an error: ${event.detail.error.message}`, "error");
    });
    if (config.selfHosted) {
      report(`ChatKit talks to ${config.apiUrl}, where this service runs the agent (self-hosted).`);
      chatkit.setOptions({
        api: { url: config.apiUrl, domainKey: config.domainKey, fetch: withPageAddress },
        history: { enabled: true },
      });
    } else {
      chatkit.setOptions({ api: { getClientSecret } });
    }
  }

  // Self-hosted: ChatKit's requests carry the visitor cookie, and this page's address for the
  // agent's page_url, as the snippet for a site does.
  function withPageAddress(input, init) {
    const headers = new Headers(init && init.headers);
    headers.set("X-Page-URL", location.href);
    return fetch(input, { ...init, headers, credentials: "same-origin" });
  }

  whenParsed(() => {
    const chatkit = document.getElementById("chatkit");
    const form = document.getElementById("recap-form");
    setUpRecapForm(form);
    report(`Loading ChatKit from ${chatkitScriptUrl}.`);
    customElements.whenDefined("openai-chatkit").then(() => {
      report("ChatKit is loaded.");
      setUpChatKit(chatkit, form);
    });
  });
})();
