// Times the old Node.js handler the way Lambda runs it: import once, then invoke per event.
// Usage: node old_node_driver.mjs <handler.mjs> <runs>
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

const [handlerPath, runsArg] = process.argv.slice(2);
const runs = Number(runsArg);
const event = {
  rawPath: "/api/chatkit/session",
  requestContext: { http: { method: "POST" } },
  body: JSON.stringify({ locale: "en", pageUrl: "https://shop.example/quote" }),
  isBase64Encoded: false,
};

const importStarted = performance.now();
const { handler } = await import(pathToFileURL(handlerPath).href);
const importMs = performance.now() - importStarted;

async function call() {
  const response = await handler(event);
  if (response.statusCode !== 200) throw new Error(`session answered ${response.statusCode}: ${response.body}`);
}

let started = performance.now();
await call();
const firstSessionMs = performance.now() - started;

for (let i = 0; i < 30; i++) await call();
const samples = [];
for (let i = 0; i < runs; i++) {
  started = performance.now();
  await call();
  samples.push(performance.now() - started);
}
samples.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    import_ms: importMs,
    first_session_ms: firstSessionMs,
    warm_median_ms: samples[Math.floor(samples.length / 2)],
    warm_p10_ms: samples[Math.floor(samples.length / 10)],
    warm_p90_ms: samples[Math.floor((samples.length * 9) / 10)],
    // VmHWM rather than resourceUsage().maxRSS, which keeps the spawning parent's peak.
    peak_rss_mb: Number(/VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1]) / 1024,
  }),
);
