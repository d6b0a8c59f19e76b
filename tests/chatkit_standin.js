// A stand-in for ChatKit's script (cdn.platform.openai.com/deployments/chatkit/chatkit.js),
// which the browser tests cannot reach. Served by tests/test_pages_browser.py only.
//
// It defines the <openai-chatkit> element with the parts of ChatKit's public API the
// try-it page uses, behaving as ChatKit documents them:
// - setOptions({api: {getClientSecret}}) starts the widget, which calls
//   getClientSecret(null) for its first secret;
// - when the secret is about to expire ChatKit calls getClientSecret(currentSecret); the
//   test makes that happen with window.chatkitStandIn.expireSecret();
// - the first message of a conversation starts a thread and fires `chatkit.thread.change`
//   with {threadId}; setThreadId(id) fires it too; failures fire `chatkit.error` with {error};
// - setOptions({api: {url, domainKey, fetch}}) talks the ChatKit protocol to a self-hosted
//   server instead, through the custom `fetch`: messages are `threads.create` and
//   `threads.add_user_message` requests, whose server-sent events give the thread and the
//   assistant's answer.
// What the widget was asked is kept in window.chatkitStandIn for the test to read.
(() => {
  "use strict";

  const record = {
    protocolRequests: [],
    clientSecretCalls: [],
    clientSecrets: [],
    threadId: null,
    element: null,
    expireSecret() {
      return record.element.refreshSecret();
    },
  };
  window.chatkitStandIn = record;

  class OpenAIChatKit extends HTMLElement {
    #options = null;
    #secret = null;

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `
        <style>
          :host { font-family: system-ui, sans-serif; }
          .frame { display: flex; flex-direction: column; height: 100%; box-sizing: border-box; padding: 1rem; gap: 0.5rem; }
          .messages { flex: 1; overflow-y: auto; display: flex; flex-direction: column; gap: 0.5rem; }
          .user { align-self: flex-end; background: #1f6feb; color: white; padding: 0.4rem 0.7rem; border-radius: 12px; }
          .assistant { align-self: flex-start; background: #eaeef2; padding: 0.4rem 0.7rem; border-radius: 12px; }
          form { display: flex; gap: 0.5rem; }
          input { flex: 1; font: inherit; padding: 0.4rem; }
        </style>
        <div class="frame">
          <div class="messages" part="messages"><p class="assistant">How can we help? (ChatKit stand-in)</p></div>
          <form part="composer"><input name="message" placeholder="Message" disabled><button disabled>Send</button></form>
        </div>`;
      root.querySelector("form").addEventListener("submit", (event) => {
        event.preventDefault();
        const input = root.querySelector("input");
        this.sendUserMessage({ text: input.value });
        input.value = "";
      });
      record.element = this;
    }

    setOptions(options) {
      this.#options = options;
      if (options.api.url) {
        this.#enable();
        this.#fire("chatkit.ready", undefined);
      } else {
        this.#connect(null);
      }
    }

    #enable() {
      for (const control of this.shadowRoot.querySelectorAll("input, button")) control.disabled = false;
    }

    async #connect(currentClientSecret) {
      record.clientSecretCalls.push(currentClientSecret);
      try {
        this.#secret = await this.#options.api.getClientSecret(currentClientSecret);
      } catch (error) {
        this.#fire("chatkit.error", { error });
        return;
      }
      record.clientSecrets.push(this.#secret);
      this.#enable();
      if (currentClientSecret === null) this.#fire("chatkit.ready", undefined);
    }

    refreshSecret() {
      return this.#connect(this.#secret);
    }

    async setThreadId(threadId) {
      record.threadId = threadId;
      this.#fire("chatkit.thread.change", { threadId });
    }

    async sendUserMessage({ text }) {
      const messages = this.shadowRoot.querySelector(".messages");
      const message = document.createElement("p");
      message.className = "user";
      message.textContent = text;
      messages.append(message);
      this.#fire("chatkit.response.start", undefined);
      if (this.#options.api.url) {
        await this.#askServer(text, messages);
        return;
      }
      if (record.threadId === null) {
        const id = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
        await this.setThreadId(`cthr_${id}`);
      }
      const reply = document.createElement("p");
      reply.className = "assistant";
      reply.textContent = "Thanks! Which car is it?";
      messages.append(reply);
      this.#fire("chatkit.response.end", undefined);
    }

    async #askServer(text, messages) {
      const input = { content: [{ type: "input_text", text }], attachments: [], inference_options: {} };
      const request = record.threadId === null
        ? { type: "threads.create", params: { input }, metadata: {} }
        : { type: "threads.add_user_message", params: { thread_id: record.threadId, input }, metadata: {} };
      record.protocolRequests.push(request.type);
      const send = this.#options.api.fetch || fetch;
      let response;
      try {
        response = await send(this.#options.api.url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(request),
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}: ${(await response.json()).error}`);
      } catch (error) {
        this.#fire("chatkit.error", { error });
        return;
      }
      for (const block of (await response.text()).split("\n\n")) {
        if (!block.startsWith("data: ")) continue;
        const event = JSON.parse(block.slice("data: ".length));
        if (event.type === "thread.created") await this.setThreadId(event.thread.id);
        if (event.type === "thread.item.done" && event.item.type === "assistant_message") {
          const reply = document.createElement("p");
          reply.className = "assistant";
          reply.textContent = event.item.content.map((part) => part.text).join("");
          messages.append(reply);
        }
      }
      this.#fire("chatkit.response.end", undefined);
    }

    #fire(name, detail) {
      this.dispatchEvent(new CustomEvent(name, { detail }));
    }
  }

  customElements.define("openai-chatkit", OpenAIChatKit);
})();
