// Prints the closing line of a CI run, `N passed, N failed`, from Vitest's JSON reports
// (.test-results/unit.json and browser.json) and npm test's step list (steps.json).
// Counted as failed: each failed test; each test file that failed to load or run (it
// reports no failed test of its own); each failed check step (type check, lint, format,
// cycles); and, for each test project whose report is missing or unreadable, one.
// Exit code: 1 when anything failed, else 0.
import { existsSync, readFileSync } from 'node:fs';

const dir = '.test-results';
const projects = ['unit', 'browser'];

let passed = 0;
let failed = 0;
let skipped = 0;
/** @type {string[]} */
const notes = [];

/** @returns {unknown} the parsed JSON of `file` */
function readJson(/** @type {string} */ file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/**
 * @typedef {{ status: string, message?: string, name: string,
 *   assertionResults: { status: string }[] }} FileResult
 * @typedef {{ numPassedTests: number, numFailedTests: number, numPendingTests: number,
 *   numTodoTests: number, testResults: FileResult[] }} Report
 */

for (const project of projects) {
  const file = `${dir}/${project}.json`;
  if (!existsSync(file)) {
    failed += 1;
    notes.push(`${project}: no report (${file}); counted as 1 failed`);
    continue;
  }
  try {
    const report = /** @type {Report} */ (readJson(file));
    const brokenFiles = report.testResults.filter(
      (result) =>
        result.status === 'failed' && !result.assertionResults.some((t) => t.status === 'failed'),
    );
    passed += report.numPassedTests;
    failed += report.numFailedTests + brokenFiles.length;
    skipped += report.numPendingTests + report.numTodoTests;
    notes.push(
      `${project}: ${report.numPassedTests} passed, ${report.numFailedTests} failed` +
        (brokenFiles.length ? `, ${brokenFiles.length} test file(s) failed to run` : ''),
    );
    for (const broken of brokenFiles) notes.push(`  failed to run: ${broken.name}`);
  } catch (error) {
    failed += 1;
    notes.push(`${project}: unreadable report ${file} (${String(error)}); counted as 1 failed`);
  }
}

const stepsFile = `${dir}/steps.json`;
if (existsSync(stepsFile)) {
  try {
    const steps = /** @type {{ step: string, script: string, ok: boolean }[]} */ (
      readJson(stepsFile)
    );
    for (const step of steps) {
      if (step.ok || step.script.startsWith('test:')) continue;
      failed += 1;
      notes.push(`check failed: ${step.step} (npm run ${step.script}); counted as 1 failed`);
    }
  } catch (error) {
    notes.push(`unreadable ${stepsFile} (${String(error)})`);
  }
}

for (const note of notes) console.log(note);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 ? 1 : 0;
