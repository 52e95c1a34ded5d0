// Bundles the editor into flows/static/flows/editor/ (committed: the server never needs
// Node.js) and lists what went into the bundle, with versions and licences, beside it.
// Run through bin/build-editor.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "flows", "static", "flows", "editor");
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: { editor: join(here, "src", "main.jsx") },
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  jsx: "automatic",
  outdir: out,
  legalComments: "external",
  metafile: true,
  sourcemap: false,
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});

// The packages whose files are in the bundle, from the inputs esbuild read.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (!match) continue;
  const name = match[1];
  const manifest = JSON.parse(readFileSync(join(here, "node_modules", name, "package.json"), "utf8"));
  packages.set(name, { version: manifest.version, license: manifest.license || "see the package" });
}
const rows = [...packages.entries()].sort(([a], [b]) => a.localeCompare(b))
  .map(([name, { version, license }]) => `| ${name} | ${version} | ${license} |`);
writeFileSync(join(out, "LICENSES.md"), [
  "# What the editor's bundle contains",
  "",
  "Written by bin/build-editor from the packages esbuild put into `editor.js` and `editor.css`.",
  "Their licence texts, as the packages ship them, are in `editor.js.LEGAL.txt` and",
  "`editor.css.LEGAL.txt` where a package has any.",
  "",
  "| package | version | licence |",
  "|---|---|---|",
  ...rows,
  "",
].join("\n"));

// The fingerprint of the sources, so a test can tell a bundle that is behind them.
const sources = [];
const walk = (folder) => {
  for (const entry of readdirSync(folder, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) walk(path);
    else sources.push(path);
  }
};
walk(join(here, "src"));
sources.push(join(here, "package-lock.json"), join(here, "build.mjs"));
const hash = createHash("sha256");
for (const path of sources) {
  hash.update(relative(here, path));
  hash.update("\0");
  hash.update(readFileSync(path));
  hash.update("\0");
}
writeFileSync(join(out, "build.json"), `${JSON.stringify({
  sources: `sha256:${hash.digest("hex")}`,
  packages: Object.fromEntries([...packages.entries()].sort(([a], [b]) => a.localeCompare(b))
    .map(([name, { version }]) => [name, version])),
}, null, 2)}\n`);
console.log(`editor: ${Object.keys(result.metafile.outputs).map((name) => relative(here, name)).join(", ")}`);
