import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isNode } from 'yaml';
import { MotusError } from '@motus/sdk';
import { SiteSchema, type SiteConfig } from './site-schema.js';

export interface SiteProblem {
  /** Dotted path of the field, e.g. hosts.1.memoryMiB */
  field: string;
  line?: number;
  message: string;
}

/** Parses and validates a site file's text; errors name the field and line of every problem. */
export function parseSite(text: string, source = 'site file'): SiteConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((err) => ({
      field: '(yaml)',
      line: lineCounter.linePos(err.pos[0]).line,
      message: err.message.split('\n')[0] ?? err.message,
    }));
    throw siteError(source, problems);
  }
  return validateSite(doc.toJS() ?? {}, source, (path) => {
    for (let depth = path.length; depth >= 0; depth--) {
      const node = doc.getIn(path.slice(0, depth), true);
      if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  });
}

/** Validates a site object (from YAML or from an embedder). */
export function validateSite(
  value: unknown,
  source = 'site',
  lineOf: (path: (string | number)[]) => number | undefined = () => undefined,
): SiteConfig {
  const result = SiteSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
    const line = lineOf(path);
    return { field: path.join('.') || '(root)', ...(line === undefined ? {} : { line }), message: issue.message };
  });
  throw siteError(source, problems);
}

export function loadSiteFile(path: string): SiteConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new MotusError('MOTUS_E_SITE_INVALID', `cannot read site file ${path}: ${(err as Error).message}`, { path });
  }
  return parseSite(text, path);
}

function siteError(source: string, problems: SiteProblem[]): MotusError {
  const lines = problems.map((p) => `  ${p.field}${p.line === undefined ? '' : ` (line ${p.line})`}: ${p.message}`);
  return new MotusError('MOTUS_E_SITE_INVALID', `${source} is not valid:\n${lines.join('\n')}`, { problems });
}
