// `npm test`: type check, lint, format check, import-cycle check, Node unit tests,
// browser tests. Every step runs even when an earlier one failed, so one run shows
// every problem; the exit code is non-zero when any step failed. Step results go to
// .test-results/steps.json for scripts/ci-summary.mjs.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

/**
 * [label, npm script] in order. Test steps write .test-results/<project>.json.
 * @type {[string, string][]}
 */
const steps = [
  ['type check', 'typecheck'],
  ['lint', 'lint'],
  ['format check', 'format:check'],
  ['import cycles', 'cycles'],
  ['unit tests (Node)', 'test:unit'],
  ['browser tests (Chromium)', 'test:browser'],
];

const resultsDir = '.test-results';
// Results of an earlier run must never be counted for this one.
rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

/** @type {{ step: string, script: string, ok: boolean, seconds: number }[]} */
const results = [];
for (const [step, script] of steps) {
  console.log(`\n=== ${step}: npm run ${script}`);
  const start = performance.now();
  const run = spawnSync('npm', ['run', '--silent', script], {
    stdio: 'inherit',
    env: { ...process.env, npm_config_loglevel: 'error' },
  });
  const seconds = Math.round((performance.now() - start) / 100) / 10;
  results.push({ step, script, ok: run.status === 0, seconds });
  writeFileSync(`${resultsDir}/steps.json`, `${JSON.stringify(results, null, 2)}\n`);
}

console.log('\n=== npm test summary');
for (const { step, ok, seconds } of results) {
  console.log(`  ${ok ? 'ok    ' : 'FAILED'}  ${step} (${seconds} s)`);
}
process.exitCode = results.every((result) => result.ok) ? 0 : 1;
