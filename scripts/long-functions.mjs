// Lists the functions in src/ (or the folder given) longer than 120 lines (or the limit given), longest
// first: the style guide's limit, checked with the TypeScript compiler's own parser.
// Usage: node scripts/long-functions.mjs [dir] [limit]
import ts from 'typescript';
import fs from 'node:fs';
import path from 'node:path';
const root = process.argv[2] ?? 'src';
const limit = Number(process.argv[3] ?? 120);
const files = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => { const p = path.join(d, e.name); return e.isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []; });
const out = [];
for (const f of files(root)) {
  const sf = ts.createSourceFile(f, fs.readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true);
  const visit = (n) => {
    if (ts.isFunctionDeclaration(n) || ts.isMethodDeclaration(n) || ts.isArrowFunction(n) || ts.isFunctionExpression(n) || ts.isConstructorDeclaration(n)) {
      const a = sf.getLineAndCharacterOfPosition(n.getStart()).line, b = sf.getLineAndCharacterOfPosition(n.end).line;
      const lines = b - a + 1;
      if (lines > limit) {
        let name = n.name?.getText() ?? (ts.isVariableDeclaration(n.parent) ? n.parent.name.getText() : ts.isPropertyAssignment(n.parent) ? n.parent.name.getText() : '(anonymous)');
        out.push(`${lines}\t${f}:${a + 1}\t${name}`);
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
}
console.log(out.sort((x, y) => parseInt(y) - parseInt(x)).join('\n') || 'none');
