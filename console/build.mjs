// Bundles the console for the browser: one ES module (lit-html included), the
// page and its stylesheet, into dist/. Type checking is `tsc -b`'s job; this only
// bundles, so the served files need nothing from the network at run time.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.ts')],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  minify: true,
  sourcemap: true,
  outfile: join(out, 'console.js'),
  logLevel: 'warning',
});
for (const file of ['index.html', 'console.css']) copyFileSync(join(here, 'src', file), join(out, file));
console.log(`console bundled into ${out}`);
