/**
 * Preloaded into the pgconvoy process by the benchmark (`node --import rusage-hook.js
 * dist/src/cli/main.js clone ...`): when that process exits, writes its own getrusage
 * (peak RSS, user and system CPU; children such as pg_dump not included) to the file named
 * by PGCONVOY_BENCH_RUSAGE. Does nothing when the variable is unset.
 */
import { writeFileSync } from 'node:fs';

const file = process.env.PGCONVOY_BENCH_RUSAGE;
if (file) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    writeFileSync(
      file,
      JSON.stringify({
        maxRssKb: u.maxRSS,
        userSeconds: u.userCPUTime / 1e6,
        systemSeconds: u.systemCPUTime / 1e6,
      }),
    );
  });
}
