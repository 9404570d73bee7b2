/**
 * A command's log in the run directory: `logs/<command>-<time>.log`, one line per event,
 * each dated, every known password blanked (util/redact.ts), the file private (0600).
 */
import path from 'node:path';
import { appendPrivateFile, makePrivateDir } from './private-files.js';
import { redact } from './redact.js';

export class RunLog {
  readonly file: string;

  constructor(dir: string, command: string) {
    makePrivateDir(dir);
    makePrivateDir(path.join(dir, 'logs'));
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    this.file = path.join(dir, 'logs', `${command}-${stamp}.log`);
  }

  line(text: string): void {
    appendPrivateFile(this.file, `${new Date().toISOString()} ${redact(text)}\n`);
  }
}
