// A static server for the `trunk build` output on 127.0.0.1 that answers HTTP Range requests, and
// counts, per weights file served, how many whole-file answers and ranges it gave (the page must
// read weights in ranges, one tensor at a time). Shared by e2e.mjs and check.mjs.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';

const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.json': 'application/json', '.safetensors': 'application/octet-stream' };

/// Serves `dist`; resolves to { base, weightReads, server }.
export async function serve(dist) {
  const weightReads = {};
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dist, path.endsWith('/') ? path + 'index.html' : path);
    try {
      const body = await readFile(file);
      const type = types[extname(file)] || 'application/octet-stream';
      const reads = path.endsWith('model.safetensors')
        ? (weightReads[path] ??= { whole: 0, ranges: 0, largest_range: 0, file_bytes: body.length }) : null;
      const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range || '');
      if (range) {
        const [start, end] = [Number(range[1]), Math.min(Number(range[2]), body.length - 1)];
        if (start > end) {
          res.writeHead(416, { 'content-range': `bytes */${body.length}` });
          res.end();
          return;
        }
        if (reads) {
          reads.ranges += 1;
          reads.largest_range = Math.max(reads.largest_range, end - start + 1);
        }
        res.writeHead(206, { 'content-type': type, 'content-range': `bytes ${start}-${end}/${body.length}` });
        res.end(body.subarray(start, end + 1));
        return;
      }
      if (reads) reads.whole += 1;
      res.writeHead(200, { 'content-type': type });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { base: `http://127.0.0.1:${server.address().port}/`, weightReads, server };
}
