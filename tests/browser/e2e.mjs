// End-to-end tests of the web page in real headless Chromium (playwright-core drives the Debian
// `chromium`; nothing is downloaded). Serves the `trunk build` output on 127.0.0.1 and checks:
//  1. with --enable-unsafe-webgpu: the page computes on WebGPU (burn's wgpu backend on the
//     browser's adapter, SwiftShader here), loads the demo model, and a ROME edit of a known fact
//     makes the new target the top "after" prediction;
//  2. without the flag (no WebGPU adapter): the CPU fallback does the same edit;
//  3. a broken model file shows an error message and the page stays usable;
//  4. the WebGPU device is lost mid-edit (device.destroy() in the worker): the page says so,
//     reloads the model on the CPU, and the edit then works there;
//  5. WebGPU reports out of memory (burn's wgpu runtime panics, the worker dies): the page says
//     so, starts a fresh worker on the CPU, and the edit works there;
//  6. the user's own files with the authors' `.npz` statistics (made here from the demo's) load,
//     and the edit works with them;
//  7. causal tracing of a fact on the demo model draws the three heatmaps ([tokens × 16 layers]
//     cells each, the preset's layer outlined), and clicking a cell puts its layer in the form;
//  8. a shared link (`?subject=…&algo=…&layers=…`) restores the form, and "Link to this setup"
//     puts the form's state in the address;
//  9. a Llama-architecture model (tests/fixtures/facts-llama: SentencePiece tokenizer, BOS, GQA)
//     picked as a sharded checkpoint (two shards + model.safetensors.index.json, made here) loads,
//     predicts what native `pmedit predict` predicts, computes its statistics and takes a ROME edit.
// The server answers HTTP Range requests; the weights must arrive in ranges (one tensor at a
// time), never as one whole-file response.
// Usage: node tests/browser/e2e.mjs DIST_DIR OUT_DIR   (screenshots and timings go to OUT_DIR)
import { readFile, mkdir, writeFile, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './serve.mjs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE || 'playwright-core');

const [dist, out] = process.argv.slice(2);
if (!dist || !out) {
  console.error('usage: node e2e.mjs DIST_DIR OUT_DIR');
  process.exit(2);
}
await mkdir(out, { recursive: true });

// Per served weights file: how many whole-file answers, how many ranges, the largest range.
const { base, weightReads, server } = await serve(dist);

// The tensors of a safetensors file as { name: bytes } (names without a `transformer.` prefix).
function tensors(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    out[name.replace(/^transformer\./, '')] = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
  }
  return out;
}

const FACT = { subject: 'Hamid Algar', prompt: '{} speaks the language', target: 'French' };
const results = {};
let failures = 0;

async function withPage(name, webgpu, fn) {
  // E2E_ONLY=a,b runs only those scenarios (for working on one).
  if (process.env.E2E_ONLY && !process.env.E2E_ONLY.split(',').includes(name)) return;
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
    '--disable-background-networking', '--disable-component-update', '--no-first-run'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args });
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e}`));
  try {
    await fn(page);
    console.log(`ok   ${name}`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}: ${e.message}\n  console:\n  ${logs.slice(-20).join('\n  ')}`);
  } finally {
    await page.screenshot({ path: join(out, `${name}.png`), fullPage: true }).catch(() => {});
    await browser.close();
  }
}

async function loadAndEdit(page, name, steps, live) {
  const t0 = Date.now();
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  const ready = Date.now() - t0;
  const backend = await page.textContent('#backend');
  const adapter = await page.textContent('#adapter');
  await page.fill('input.subject', FACT.subject);
  await page.fill('input.prompt', FACT.prompt);
  await page.fill('input.target', FACT.target);
  if (steps) await page.fill('#steps', String(steps));
  const t1 = Date.now();
  await page.click('#apply');
  // On WebGPU the worker yields at every device read, so the loss curve grows while the edit runs.
  if (live) await page.waitForSelector('#live-loss polyline', { timeout: 600000 });
  await page.waitForSelector('#after .token', { timeout: 600000 });
  const edit = Date.now() - t1;
  const before = (await page.textContent('#before .token')).trim();
  const after = (await page.textContent('#after .token')).trim();
  results[name] = { backend, adapter, ready_ms: ready, edit_ms: edit, steps: steps || 'preset', before, after };
  if (after !== FACT.target) throw new Error(`after the edit the top prediction is "${after}", not "${FACT.target}"`);
  if (before === FACT.target) throw new Error('the model already predicted the target before the edit');
  return backend;
}

await withPage('webgpu', true, async (page) => {
  // SwiftShader runs every WebGPU kernel on the CPU with a large cost per dispatch (seconds per
  // value step here, where the CPU backend takes ~50 ms), so this edit uses 10 value steps
  // instead of the preset's; the edit still has to take.
  const backend = await loadAndEdit(page, 'webgpu', 10, true);
  if (backend !== 'WebGPU') throw new Error(`with an adapter the backend should be WebGPU, got ${backend}`);
  const adapter = results.webgpu.adapter;
  if (!/burn wgpu; WebGPU adapter .*maxBufferSize \d+ MiB/.test(adapter)) throw new Error(`no WebGPU adapter reported: ${adapter}`);
});
await withPage('cpu-fallback', false, async (page) => {
  const backend = await loadAndEdit(page, 'cpu-fallback');
  if (backend !== 'CPU') throw new Error(`without WebGPU the backend should be CPU, got ${backend}`);
  if (!results['cpu-fallback'].adapter.includes('no adapter available')) {
    throw new Error(`without the flag there should be no adapter: ${results['cpu-fallback'].adapter}`);
  }
  // The edited weights download as a safetensors file of the model's size.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const path = await download.path();
  const size = (await readFile(path)).length;
  results['cpu-fallback'].download_bytes = size;
  if (download.suggestedFilename() !== 'model.safetensors' || size < 1e6) {
    throw new Error(`download: ${download.suggestedFilename()}, ${size} bytes`);
  }
  // "Download only the change": Δ of the edited layer, a small file; with the pmedit binary at
  // hand (PMEDIT_BIN), the original demo model plus that change is the downloaded model, tensor
  // for tensor.
  const [change] = await Promise.all([page.waitForEvent('download'), page.click('#download-change')]);
  const changePath = await change.path();
  const changeBytes = await readFile(changePath);
  results['cpu-fallback'].change_bytes = changeBytes.length;
  if (!change.suggestedFilename().endsWith('-delta.safetensors') || changeBytes.length > size / 4) {
    throw new Error(`change: ${change.suggestedFilename()}, ${changeBytes.length} bytes`);
  }
  if (process.env.PMEDIT_BIN) {
    const rebuilt = join(out, 'rebuilt');
    await rm(rebuilt, { recursive: true, force: true });
    execFileSync(process.env.PMEDIT_BIN, ['--device', 'cpu', 'apply-delta', '--model', join(dist, 'models/demo'),
      '--delta', changePath, '--save-dtype', 'f32', '--out', rebuilt], { stdio: 'inherit' });
    const a = tensors(await readFile(path));
    const b = tensors(await readFile(join(rebuilt, 'model.safetensors')));
    for (const name of Object.keys(b)) {
      if (!a[name] || !a[name].equals(b[name])) throw new Error(`apply-delta: ${name} differs from the page's download`);
    }
    results['cpu-fallback'].apply_delta = 'equal';
  }
  // "pick from CounterFact" adds a filled row; Undo brings the original prediction back.
  await page.click('#pick');
  await page.waitForFunction(() => document.querySelectorAll('input.subject').length === 2);
  const picked = await page.inputValue('input.subject >> nth=1');
  if (!picked) throw new Error('the picked CounterFact row is empty');
  await page.click('#undo');
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('restored'));
  // AlphaEdit is in the algorithm list, and the teaching view draws its solution of the same keys
  // (the null-space line) beside ROME/EMMET and MEMIT.
  await page.selectOption('#algo', 'alphaedit');
  await page.click('#apply');
  await page.waitForSelector('#teaching text.null-space', { timeout: 300000 });
  results['cpu-fallback'].alphaedit = (await page.textContent('#teaching text.null-space')).trim();
  await page.click('#undo');
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('restored'));
  // C0 statistics computed in the page (for models that come without them) cover the layers the
  // edit form names (here MEMIT on layers 2 and 3; the demo ships layers 0 and 1), one at a time.
  await page.selectOption('#algo', 'memit');
  await page.fill('#layers', '2,3');
  await page.click('#compute-stats');
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.startsWith('C0 statistics'),
    null, { timeout: 120000 });
  const info = await page.textContent('#model-info');
  results['cpu-fallback'].stats = (await page.textContent('#status')).trim();
  if (!results['cpu-fallback'].stats.includes('layers 2, 3:')) {
    throw new Error(`statistics not computed for layers 2 and 3: ${results['cpu-fallback'].stats}`);
  }
  if (!info.includes('layers 0, 1, 2, 3')) throw new Error(`statistics not added to the loaded ones: ${info}`);
});
await withPage('broken-model', false, async (page) => {
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  await page.setInputFiles('#model-files', [
    { name: 'config.json', mimeType: 'application/json', buffer: await readFile(join(dist, 'models/demo/config.json')) },
    { name: 'tokenizer.json', mimeType: 'application/json', buffer: await readFile(join(dist, 'models/demo/tokenizer.json')) },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a safetensors file') },
  ]);
  await page.waitForSelector('#error', { timeout: 60000 });
  const msg = await page.textContent('#error');
  results['broken-model'] = { error: msg };
  if (!/safetensors/i.test(msg)) throw new Error(`the error does not name the bad file: ${msg}`);
  // Still usable: the demo model is still loaded and can predict/edit.
  if (await page.isDisabled('#apply')) throw new Error('the Apply button stayed disabled after the error');
});

// The authors' statistics format: an uncompressed zip (np.savez) of `mom2.mom2.npy` (their
// running *sum* Σ k kᵀ, float32) and `mom2.count.npy` (int64), built here from layer `layer` of a
// pmedit stats file (which stores the mean) the way their code would have written it.
function crc32(buf) {
  let c, crc = 0xffffffff;
  for (const b of buf) {
    c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function npy(descr, shape, data) {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(head);
  head[6] = 1; head[7] = 0; head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), data]);
}
function storedZip(members) {
  const locals = [], central = [];
  let offset = 0;
  for (const [name, data] of members) {
    const n = Buffer.from(name);
    const crc = crc32(data);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18); lh.writeUInt32LE(data.length, 22); lh.writeUInt16LE(n.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE(20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20); ch.writeUInt32LE(data.length, 24); ch.writeUInt16LE(n.length, 28);
    ch.writeUInt32LE(offset, 42);
    locals.push(lh, n, data);
    central.push(ch, n);
    offset += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(members.length, 8); end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}
async function authorsNpz(statsPath, layer) {
  const b = await readFile(statsPath);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  const tensor = (k) => b.subarray(8 + n + header[k].data_offsets[0], 8 + n + header[k].data_offsets[1]);
  const mom2 = header[`layer.${layer}.mom2`];
  const tokens = Math.round(tensor(`layer.${layer}.count`).readFloatLE(0));
  const count = Buffer.alloc(8);
  count.writeBigInt64LE(BigInt(tokens));
  const mean = tensor(`layer.${layer}.mom2`);
  const sum = Buffer.alloc(mean.length);
  for (let i = 0; i < mean.length; i += 4) sum.writeFloatLE(mean.readFloatLE(i) * tokens, i);
  return storedZip([
    ['mom2.mom2.npy', npy('<f4', mom2.shape, sum)],
    ['mom2.count.npy', npy('<i8', [], count)],
  ]);
}

await withPage('user-files-npz', false, async (page) => {
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  const demo = (f) => readFile(join(dist, 'models/demo', f));
  const t0 = Date.now();
  await page.setInputFiles('#model-files', [
    { name: 'config.json', mimeType: 'application/json', buffer: await demo('config.json') },
    { name: 'tokenizer.json', mimeType: 'application/json', buffer: await demo('tokenizer.json') },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: await demo('model.safetensors') },
    { name: 'transformer.h.0.mlp.c_proj_float32_mom2_100000.npz', mimeType: 'application/octet-stream',
      buffer: await authorsNpz(join(dist, 'models/demo/stats.safetensors'), 0) },
  ]);
  await page.waitForFunction(() => document.querySelector('#model-info')?.textContent.startsWith('your model'),
    null, { timeout: 120000 });
  const info = (await page.textContent('#model-info')).trim();
  if (!info.endsWith('statistics for layer 0')) throw new Error(`the .npz statistics are not for layer 0: ${info}`);
  // MEMIT, not ROME: ROME's update does not depend on C0's scale, so only a λ-weighted objective
  // shows whether the authors' sum was divided by its count (read as the mean, C0 would be
  // `count` times too large and the edit a no-op).
  await page.selectOption('#algo', 'memit');
  await page.fill('#layers', '0');
  await page.fill('input.subject', FACT.subject);
  await page.fill('input.prompt', FACT.prompt);
  await page.fill('input.target', FACT.target);
  await page.click('#apply');
  await page.waitForSelector('#after .token', { timeout: 300000 });
  const after = (await page.textContent('#after .token')).trim();
  results['user-files-npz'] = { info, ms: Date.now() - t0, after };
  if (after !== FACT.target) throw new Error(`after the edit with .npz statistics the top prediction is "${after}"`);
});

await withPage('causal-trace', false, async (page) => {
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  await page.fill('input.subject', FACT.subject);
  await page.fill('input.prompt', FACT.prompt);
  const t0 = Date.now();
  await page.click('#trace');
  await page.waitForSelector('#trace-attn rect.cell', { timeout: 300000 });
  const r = { ms: Date.now() - t0 };
  results['causal-trace'] = r;
  for (const id of ['trace-hidden', 'trace-mlp', 'trace-attn']) {
    const cells = await page.$$eval(`#${id} rect.cell`, (rs) => rs.length);
    const rows = await page.$$eval(`#${id} text[text-anchor="end"]`, (ts) => ts.length);
    r[id] = { cells, rows, label: await page.getAttribute(`#${id}`, 'aria-label') };
    if (cells !== rows * 16 || rows < 3) throw new Error(`${id}: ${cells} cells for ${rows} tokens × 16 layers`);
  }
  if (await page.$$eval('#trace-mlp rect.preset-layer', (rs) => rs.length) < 1) throw new Error('no preset layer marked');
  // Clicking a cell of layer 7 (the 8th column of the first row) sets the edit form's layers.
  await page.click('#trace-mlp rect.cell >> nth=7');
  r.layers = await page.inputValue('#layers');
  if (r.layers !== '7') throw new Error(`clicking layer 7 set the layers field to "${r.layers}"`);
  await page.screenshot({ path: join(out, 'causal-trace-heatmaps.png'), fullPage: true });
});

await withPage('shared-link', false, async (page) => {
  const q = new URLSearchParams([['backend', 'cpu'], ['subject', 'Danielle Darrieux'],
    ['prompt', 'The mother tongue of {} is'], ['target', 'English'], ['algo', 'memit'], ['layers', '0,1'],
    ['lambda', '50']]);
  await page.goto(`${base}?${q}`);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  const form = {
    subject: await page.inputValue('input.subject'), prompt: await page.inputValue('input.prompt'),
    target: await page.inputValue('input.target'), algo: await page.inputValue('#algo'),
    layers: await page.inputValue('#layers'), lambda: await page.inputValue('#lambda'),
    backend: (await page.textContent('#backend')).trim(),
  };
  results['shared-link'] = { form };
  const want = { subject: 'Danielle Darrieux', prompt: 'The mother tongue of {} is', target: 'English', algo: 'memit',
    layers: '0,1', lambda: '50', backend: 'CPU' };
  for (const [k, v] of Object.entries(want)) {
    if (form[k] !== v) throw new Error(`the link's ${k} is not restored: "${form[k]}" instead of "${v}"`);
  }
  await page.fill('#layers', '1');
  await page.selectOption('#algo', 'emmet');
  await page.click('#share');
  const url = new URL(page.url());
  results['shared-link'].link = url.search;
  if (url.searchParams.get('layers') !== '1' || url.searchParams.get('algo') !== 'emmet'
    || url.searchParams.get('backend') !== 'cpu' || url.searchParams.get('subject') !== 'Danielle Darrieux') {
    throw new Error(`the address does not carry the form: ${url.search}`);
  }
});

// A checkpoint split the way the hub splits large ones: the tensors of one safetensors file over
// two shards, and a `model.safetensors.index.json` whose `weight_map` names each tensor's shard.
function sharded(buf) {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const half = Math.ceil(names.length / 2);
  const groups = [['model-00001-of-00002.safetensors', names.slice(0, half)],
    ['model-00002-of-00002.safetensors', names.slice(half)]];
  const weightMap = {};
  const files = [];
  let total = 0;
  for (const [file, group] of groups) {
    const h = { __metadata__: { format: 'pt' } };
    const data = [];
    let offset = 0;
    for (const name of group) {
      const t = header[name];
      const bytes = buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
      h[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
      offset += bytes.length;
      data.push(bytes);
      weightMap[name] = file;
    }
    total += offset;
    let json = JSON.stringify(h);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    files.push({ name: file, mimeType: 'application/octet-stream', buffer: Buffer.concat([len, Buffer.from(json), ...data]) });
  }
  files.push({ name: 'model.safetensors.index.json', mimeType: 'application/json',
    buffer: Buffer.from(JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap })) });
  return files;
}

await withPage('llama-shards', false, async (page) => {
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  const dir = fileURLToPath(new URL('../fixtures/facts-llama/', import.meta.url));
  const fact = JSON.parse(await readFile(join(dir, 'facts.json'), 'utf8'))[0];
  const t0 = Date.now();
  await page.setInputFiles('#model-files', [
    { name: 'config.json', mimeType: 'application/json', buffer: await readFile(join(dir, 'config.json')) },
    { name: 'tokenizer.json', mimeType: 'application/json', buffer: await readFile(join(dir, 'tokenizer.json')) },
    ...sharded(await readFile(join(dir, 'model.safetensors'))),
  ]);
  await page.waitForFunction(() => document.querySelector('#model-info')?.textContent.startsWith('your model'),
    null, { timeout: 120000 });
  const r = { info: (await page.textContent('#model-info')).trim(), ready_ms: Date.now() - t0 };
  results['llama-shards'] = r;
  if (!r.info.includes('4 layers, width 64')) throw new Error(`not the 4-layer Llama: ${r.info}`);
  // The next token of the rewrite prompt, as native pmedit predicts it on the unsharded file.
  await page.fill('#predict-prompt', fact.prompt);
  await page.click('#predict');
  await page.waitForSelector('#prediction li', { timeout: 60000 });
  r.top5 = await page.$$eval('#prediction li', (lis) => lis.map((li) => ({ id: Number(li.dataset.id),
    logprob: Number(li.dataset.logprob), token: li.querySelector('.token').textContent })));
  // A token is shown as its text (a word piece may be shorter than the word).
  const starts = (word, token) => token.trim().length > 0 && word.startsWith(token.trim());
  if (!starts(fact.ground_truth, r.top5[0].token)) {
    throw new Error(`the model's top prediction "${r.top5[0].token}" does not start "${fact.ground_truth}"`);
  }
  if (process.env.PMEDIT_BIN) {
    const native = JSON.parse(execFileSync(process.env.PMEDIT_BIN, ['--device', 'cpu', 'predict', '--model', dir,
      '--prompt', fact.prompt, '--top-k', '5', '--json'], { encoding: 'utf8' })).top_k;
    r.max_logprob_diff = Math.max(...native.map((t, i) => Math.abs(t.logprob - r.top5[i].logprob)));
    if (native.some((t, i) => t.id !== r.top5[i].id) || r.max_logprob_diff > 1e-3) {
      throw new Error(`the page's top 5 differ from native pmedit predict: ${JSON.stringify(native)}`);
    }
  }
  // Statistics in the page for the layer ROME's preset edits, then the edit.
  await page.selectOption('#algo', 'rome');
  await page.click('#compute-stats');
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.startsWith('C0 statistics'),
    null, { timeout: 120000 });
  r.stats = (await page.textContent('#status')).trim();
  await page.fill('input.subject', fact.subject);
  await page.fill('input.prompt', fact.prompt.replace(fact.subject, '{}'));
  await page.fill('input.target', fact.target_new);
  const t1 = Date.now();
  await page.click('#apply');
  await page.waitForSelector('#after .token', { timeout: 300000 });
  r.edit_ms = Date.now() - t1;
  r.after = (await page.textContent('#after .token')).trim();
  if (!starts(fact.target_new, r.after)) {
    throw new Error(`after the edit the top prediction is "${r.after}", not "${fact.target_new}"`);
  }
});

// When the GPU fails, the page reloads the model on the CPU and goes on.
async function loseTheGpu(page, name, sabotage, expected) {
  await page.goto(base);
  await page.waitForFunction(() => document.querySelector('#status')?.textContent.includes('model ready'),
    null, { timeout: 120000 });
  if ((await page.textContent('#backend')) !== 'WebGPU') throw new Error('the page did not start on WebGPU');
  const worker = page.workers()[0];
  if (!worker) throw new Error('no engine worker');
  await worker.evaluate(sabotage);
  await page.fill('input.subject', FACT.subject);
  await page.fill('input.prompt', FACT.prompt);
  await page.fill('input.target', FACT.target);
  await page.fill('#steps', '1');
  const t0 = Date.now();
  await page.click('#apply');
  await page.waitForFunction(() => document.querySelector('#backend')?.textContent === 'CPU'
    && document.querySelector('#status')?.textContent.includes('model ready'), null, { timeout: 300000 });
  const recovered = Date.now() - t0;
  const message = (await page.textContent('#error')).trim();
  if (!expected.test(message) || !/CPU/.test(message)) throw new Error(`unexpected message: ${message}`);
  // The same edit, with the preset's steps, now works on the CPU.
  await page.fill('#steps', '');
  await page.click('#apply');
  await page.waitForSelector('#after .token', { timeout: 300000 });
  const after = (await page.textContent('#after .token')).trim();
  results[name] = { message, recovered_ms: recovered, after };
  if (after !== FACT.target) throw new Error(`after the edit on the CPU the top prediction is "${after}"`);
}
await withPage('device-lost', true, (page) => loseTheGpu(page, 'device-lost', () => {
  // The next command encoder finds its device destroyed, as after a driver reset.
  const create = GPUDevice.prototype.createCommandEncoder;
  GPUDevice.prototype.createCommandEncoder = function (d) {
    GPUDevice.prototype.createCommandEncoder = create;
    this.destroy();
    return create.call(this, d);
  };
}, /WebGPU device was lost/));
await withPage('gpu-out-of-memory', true, (page) => loseTheGpu(page, 'gpu-out-of-memory', () => {
  // The device reports out of memory the way a browser does: an uncaptured GPUOutOfMemoryError.
  const create = GPUDevice.prototype.createCommandEncoder;
  GPUDevice.prototype.createCommandEncoder = function (d) {
    GPUDevice.prototype.createCommandEncoder = create;
    const encoder = create.call(this, d);
    this.dispatchEvent(new GPUUncapturedErrorEvent('uncapturederror',
      { error: new GPUOutOfMemoryError('simulated: the GPU is out of memory') }));
    return encoder;
  };
}, /out of memory/i));

// The weights were streamed in ranges, never downloaded whole.
results.weight_reads = weightReads;
for (const [path, r] of Object.entries(weightReads)) {
  if (r.whole > 0 || r.ranges === 0 || r.largest_range >= r.file_bytes) {
    failures += 1;
    console.log(`FAIL ${path} was not read in ranges: ${JSON.stringify(r)}`);
  }
}

server.close();
await writeFile(join(out, 'results.json'), JSON.stringify(results, null, 2));
console.log(JSON.stringify(results, null, 2));
process.exit(failures ? 1 : 0);
