// Lists the import graph of the web application's ES modules and fails on a cycle.
//
//   node tests/browser/import_graph.mjs [DIR]      (default web/js)
//
// Reads every *.js file in DIR, takes its relative imports (import ... from './x.js',
// export ... from './x.js', import './x.js', import('./x.js')) and prints one line
// per module: "a.js -> b.js, c.js". Exits 1 with "cycle: a.js -> b.js -> a.js" for
// every cycle found, and with "missing: a.js imports ./x.js" for an import of a
// file that does not exist; 0 when the graph is acyclic. Needs no packages.
//
// Why: modules that import each other are evaluated in an order that depends on
// which one the page loads first, so a binding can be read before it exists.

import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join, resolve, relative, dirname } from 'node:path';

const dir = resolve(process.argv[2] || 'web/js');
const IMPORT_RE = [
  /\b(?:import|export)\s[^;'"`]*?\bfrom\s*['"](\.{1,2}\/[^'"]+)['"]/g,
  /\bimport\s*['"](\.{1,2}\/[^'"]+)['"]/g,
  /\bimport\s*\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g,
];

// Comments may mention imports; they are not edges.
function stripComments(src) {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"\\])\/\/.*$/gm, '$1');
}

const files = readdirSync(dir).filter((f) => f.endsWith('.js')).sort();
const graph = new Map();
const problems = [];
for (const f of files) {
  const src = stripComments(readFileSync(join(dir, f), 'utf8'));
  const deps = new Set();
  for (const re of IMPORT_RE) {
    for (const m of src.matchAll(re)) {
      const target = resolve(dirname(join(dir, f)), m[1]);
      if (!existsSync(target)) problems.push(`missing: ${f} imports ${m[1]}`);
      deps.add(relative(dir, target));
    }
  }
  graph.set(f, [...deps].sort());
}

for (const [f, deps] of graph) console.log(`${f} -> ${deps.length ? deps.join(', ') : '(none)'}`);

// Depth-first search; a grey node met again closes a cycle. Each cycle is
// reported once, starting from its alphabetically first module.
const WHITE = 0, GREY = 1, BLACK = 2;
const colour = new Map(files.map((f) => [f, WHITE]));
const stack = [];
const cycles = new Set();
function visit(f) {
  colour.set(f, GREY);
  stack.push(f);
  for (const d of graph.get(f) || []) {
    if (!graph.has(d)) continue;
    if (colour.get(d) === GREY) {
      const loop = stack.slice(stack.indexOf(d));
      const first = loop.indexOf([...loop].sort()[0]);
      const rotated = loop.slice(first).concat(loop.slice(0, first));
      cycles.add('cycle: ' + rotated.concat(rotated[0]).join(' -> '));
    } else if (colour.get(d) === WHITE) {
      visit(d);
    }
  }
  stack.pop();
  colour.set(f, BLACK);
}
for (const f of files) if (colour.get(f) === WHITE) visit(f);

for (const c of [...cycles].sort()) problems.push(c);
for (const p of problems) console.log(p);
if (!files.length) {
  console.log(`no modules in ${dir}`);
  process.exit(1);
}
process.exit(problems.length ? 1 : 0);
