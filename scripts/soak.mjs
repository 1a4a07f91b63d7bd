// `npm run soak -- --minutes N`: runs the model-based suite (test/model) with fresh
// random seeds until N minutes have passed, and writes each failing run's report
// (the minimal command list, the seed and path that replay it) to
// soak-failures/<seed>.txt. Prints the sequences and steps run. Exits non-zero
// when any run failed.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { minutes: { type: 'string', default: '10' }, runs: { type: 'string', default: '25' } },
});
const deadline = Date.now() + Number(values.minutes) * 60_000;
const totals = { batches: 0, sequences: 0, steps: 0, losses: 0, failures: 0 };

while (Date.now() < deadline) {
  const seed = Math.floor(Math.random() * 2 ** 31);
  const run = spawnSync('npx', ['vitest', 'run', '--project', 'browser', 'test/model'], {
    encoding: 'utf8',
    env: {
      ...process.env,
      VITE_WEBHMM_MODEL_SEED: String(seed),
      VITE_WEBHMM_MODEL_RUNS: values.runs,
    },
  });
  const output = `${run.stdout}\n${run.stderr}`;
  totals.batches++;
  const summary = /\[model\] (\d+) sequences, (\d+) steps, (\d+) with device loss/.exec(output);
  if (summary) {
    totals.sequences += Number(summary[1]);
    totals.steps += Number(summary[2]);
    totals.losses += Number(summary[3]);
  }
  if (run.status !== 0) {
    totals.failures++;
    mkdirSync('soak-failures', { recursive: true });
    writeFileSync(`soak-failures/${seed}.txt`, output);
    console.log(`soak: seed ${seed} FAILED: soak-failures/${seed}.txt`);
  } else {
    console.log(`soak: seed ${seed} ok (${summary?.[1] ?? '?'} sequences)`);
  }
}
console.log(
  `soak: ${totals.sequences} sequences, ${totals.steps} steps (${totals.losses} with device loss) in ${totals.batches} batches; ${totals.failures} failed`,
);
process.exitCode = totals.failures > 0 ? 1 : 0;
