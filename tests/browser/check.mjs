// The scale check of the page: loads a model directory through the page's own file input in
// headless Chromium (WebGPU flag; `--backend cpu` for the CPU backend), predicts the next token of
// a prompt, optionally applies one edit, and prints as its last line one JSON object:
//   backend, adapter, weights, ready_s, top5 [{id, token, logprob}], predict_s, wasm_memory_peak_bytes,
//   edit_s, edit_phases (where the request's time went, as the page words it), after_top5,
//   browser_rss_peak_bytes, error.
// Run it through scripts/browser-check.sh (which builds the page).
// Usage: node check.mjs DIST MODEL_DIR [--prompt TEXT] [--stats FILE] [--edit REQUESTS.json]
//          [--layers L] [--steps N] [--algo ALGO] [--backend webgpu|cpu] [--timeout SECONDS]
//          [--gpu software|hardware] [--require-adapter TEXT]
// --gpu hardware lets Chromium use the machine's GPU (Vulkan, no display) instead of SwiftShader;
// --require-adapter stops at once, with an error, when the page's adapter line lacks TEXT.
import { readdir, readFile } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { serve } from './serve.mjs';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

const [dist, modelDir, ...rest] = process.argv.slice(2);
if (!dist || !modelDir) {
  console.error('usage: node check.mjs DIST MODEL_DIR [--prompt TEXT] [--stats FILE] [--edit REQUESTS.json] [--layers L] [--steps N] [--algo ALGO] [--backend webgpu|cpu] [--timeout SECONDS] [--gpu software|hardware] [--require-adapter TEXT]');
  process.exit(2);
}
const opt = { prompt: 'The Eiffel Tower is located in the city of', backend: 'webgpu', algo: 'rome', timeout: '3600',
  gpu: 'software' };
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, '')] = rest[i + 1];
const timeout = Number(opt.timeout) * 1000;

// Resident memory of the browser: every process below Chromium's, summed; polled for its peak.
function treeRss(root) {
  const children = {};
  const rss = {};
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      (children[ppid] ??= []).push(Number(pid));
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      rss[pid] = m ? Number(m[1]) * 1024 : 0;
    } catch { /* the process ended */ }
  }
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const p = stack.pop();
    total += rss[p] || 0;
    stack.push(...(children[p] || []));
  }
  return total;
}

const result = { backend: null, adapter: null, weights: null, ready_s: null, top5: null, wasm_memory_peak_bytes: null,
  predict_s: null, edit_s: null, edit_phases: null, after_top5: null, browser_rss_peak_bytes: 0, error: null };
// Stopped from outside (a time limit): still print what was measured so far.
process.on('SIGTERM', () => {
  result.error ??= 'stopped (SIGTERM) before the check ended';
  console.log(JSON.stringify(result));
  process.exit(1);
});
const { base, server } = await serve(dist);
const args = ['--headless', '--no-sandbox', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--no-first-run'];
// Without a display Chromium reaches a hardware GPU only through Vulkan with no surface
// (PMEDIT_CHROMIUM_FLAGS replaces these switches).
if (opt.gpu === 'hardware') {
  args.push(...(process.env.PMEDIT_CHROMIUM_FLAGS
    || '--use-angle=vulkan --enable-features=Vulkan --disable-vulkan-surface --ignore-gpu-blocklist --disable-gpu-sandbox')
    .split(/\s+/).filter(Boolean));
} else {
  args.push('--disable-gpu');
}
if (opt.backend !== 'cpu') args.push('--enable-unsafe-webgpu');
// A switch Chromium ignores, to find its main process (and so its whole tree) in /proc.
const marker = `--pmedit-check=${process.pid}-${Date.now()}`;
args.push(marker);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args });
const root = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).find((p) => {
  try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes(marker); } catch { return false; }
});
const poll = setInterval(() => {
  if (root) result.browser_rss_peak_bytes = Math.max(result.browser_rss_peak_bytes, treeRss(Number(root)));
}, 500);
const page = await browser.newPage();
// The page's and the worker's console, timestamped on stderr: where a long run spends its time.
// Chromium reports a dedicated worker's messages on the page too, so one listener hears both.
const t0 = Date.now();
page.on('console', (m) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${m.text()}`));
const status = () => page.textContent('#status');
// Waits until the status line says `done` (and the model line is no longer `stale`), or an error
// shows; returns the seconds taken.
async function until(done, stale = null) {
  const t0 = Date.now();
  console.error(`… waiting for "${done}"`);
  await page.waitForFunction(([want, old]) => document.querySelector('#error')
    || (document.querySelector('#status')?.textContent.includes(want)
      && document.querySelector('#model-info')?.textContent !== old), [done, stale], { timeout, polling: 500 });
  const err = await page.$('#error');
  if (err) throw new Error((await err.textContent()).trim());
  return (Date.now() - t0) / 1000;
}
// The edit's time as the status line words it ("840 ms", "12.3 s", "2 min 14 s"), in seconds.
function seconds(text) {
  const m = /edit applied in (?:(\d+) min (\d+) s|([\d.]+) s|(\d+) ms)/.exec(text);
  if (!m) throw new Error(`no edit time in the status line: ${text}`);
  return m[1] ? 60 * Number(m[1]) + Number(m[2]) : m[3] ? Number(m[3]) : Number(m[4]) / 1000;
}
async function predict() {
  await page.fill('#predict-prompt', opt.prompt);
  await page.click('#predict');
  const took = await until('predicted');
  if (result.predict_s === null) result.predict_s = took;
  else result.after_predict_s = took;
  return page.$$eval('#prediction li', (items) => items.map((li) => ({
    id: Number(li.dataset.id), token: li.querySelector('.token').textContent, logprob: Number(li.dataset.logprob) })));
}
async function memory() {
  const b = await page.$eval('#worker-memory', (e) => Number(e.dataset.bytes)).catch(() => null);
  result.wasm_memory_peak_bytes = Math.max(result.wasm_memory_peak_bytes ?? 0, b ?? 0);
}
try {
  await page.goto(base + (opt.backend === 'cpu' ? '?backend=cpu' : ''));
  await until('model ready');
  // The built-in model is on the adapter the big one will use: a wrong adapter stops here.
  const adapter = (await page.textContent('#adapter').catch(() => '')) ?? '';
  if (opt['require-adapter'] && !adapter.toLowerCase().includes(opt['require-adapter'].toLowerCase())) {
    result.adapter = adapter.trim();
    throw new Error(`the adapter is not the one required (${opt['require-adapter']}): ${adapter.trim()}`);
  }
  const files = (await readdir(modelDir))
    .filter((f) => /^(config\.json|tokenizer\.json|vocab\.json|merges\.txt|model\.safetensors)$/.test(f))
    .map((f) => join(modelDir, f));
  if (opt.stats) files.push(opt.stats);
  const demo = await page.textContent('#model-info');
  await page.setInputFiles('#model-files', files);
  result.ready_s = await until('model ready', demo);
  result.backend = (await page.textContent('#backend')).trim();
  result.adapter = (await page.textContent('#adapter')).trim();
  result.weights = (await page.textContent('#model-info')).trim();
  await memory();
  result.wasm_memory_after_load_bytes = result.wasm_memory_peak_bytes;
  console.error(`ready in ${result.ready_s} s on ${result.backend}; wasm memory ${result.wasm_memory_peak_bytes} bytes`);
  result.top5 = await predict();
  await memory();
  console.error(`top 5: ${JSON.stringify(result.top5)}; wasm memory ${result.wasm_memory_peak_bytes} bytes`);
  if (opt.edit) {
    const requests = JSON.parse(await readFile(opt.edit, 'utf8'));
    const r = Array.isArray(requests) ? requests[0] : requests;
    const fact = r.requested_rewrite ?? r;
    await page.fill('input.subject >> nth=0', fact.subject);
    await page.fill('input.prompt >> nth=0', fact.prompt);
    await page.fill('input.target >> nth=0', (fact.target_new?.str ?? fact.target_new).trim());
    await page.selectOption('#algo', opt.algo);
    if (opt.layers) await page.fill('#layers', opt.layers);
    if (opt.steps) await page.fill('#steps', opt.steps);
    await page.click('#apply');
    result.edit_wall_s = await until('edit applied');
    result.edit_s = seconds(await status());
    result.edit_phases = (await page.textContent('#edit-phases')).trim();
    result.after_top5 = await predict();
    await memory();
  }
} catch (e) {
  result.error = e.message;
  await memory();
} finally {
  clearInterval(poll);
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));
// A GPU process that outlives the browser keeps Node's pipes open: leave without waiting for it.
process.exit(0);
