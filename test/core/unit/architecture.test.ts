import { expect } from 'chai';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '@motus/sdk';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    if (entry === 'node_modules' || entry === 'dist') return [];
    if (statSync(path).isDirectory()) return sources(path);
    return /\.(ts|js|mjs)$/.test(entry) ? [path] : [];
  });
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
}

describe('architecture rules', () => {
  const plugins = readdirSync(join(root, 'plugins')).filter((p) => statSync(join(root, 'plugins', p)).isDirectory());

  it('finds the plugins to check', () => {
    expect(plugins).to.include('hv-qemu');
  });

  for (const plugin of plugins) {
    it(`plugins/${plugin} imports neither core nor another plugin`, () => {
      const offenders: string[] = [];
      for (const file of sources(join(root, 'plugins', plugin, 'src'))) {
        for (const spec of imports(file)) {
          const otherPlugin = plugins.some((p) => p !== plugin && (spec === `@motus/${p}` || spec.startsWith(`@motus/${p}/`)));
          const relativeEscape = spec.startsWith('.') && !join(dirname(file), spec).startsWith(join(root, 'plugins', plugin));
          if (spec === '@motus/core' || spec.startsWith('@motus/core/') || otherPlugin || relativeEscape) {
            offenders.push(`${relative(root, file)} imports ${spec}`);
          }
        }
      }
      expect(offenders).to.deep.equal([]);
    });
  }

  it('sdk imports no other Motus package', () => {
    const offenders = sources(join(root, 'sdk', 'src')).flatMap((file) =>
      imports(file)
        .filter((spec) => spec.startsWith('@motus/'))
        .map((spec) => `${relative(root, file)} imports ${spec}`),
    );
    expect(offenders).to.deep.equal([]);
  });

  it('documents every error code in docs/errors.md', () => {
    const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
    const missing = Object.keys(ERROR_CODES).filter((code) => !doc.includes(`\`${code}\``));
    expect(missing).to.deep.equal([]);
  });

  it('gives every package a README', () => {
    const packages = ['sdk', 'core', 'test', ...plugins.map((p) => `plugins/${p}`)];
    const missing = packages.filter((p) => {
      try {
        return !statSync(join(root, p, 'README.md')).isFile();
      } catch {
        return true;
      }
    });
    expect(missing).to.deep.equal([]);
  });
});
