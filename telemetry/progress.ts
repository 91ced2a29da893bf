// Progress of long work (model loading, adapter loading, benchmark runs) for a person watching: on a terminal
// one line redrawn in place (a bar, done/total, elapsed time); on anything else (a log file, CI) a plain line
// per update, never a carriage return. Written to stderr: stdout carries the ready line the launcher reads.

export interface ProgressSink {
  update(task: string, done: number, total: number): void;
}

export const NO_PROGRESS: ProgressSink = { update: () => undefined };

const BAR_WIDTH = 24;

export class ProgressDisplay implements ProgressSink {
  private readonly started = new Map<string, number>();
  private drawing = false;

  constructor(private readonly out: NodeJS.WriteStream = process.stderr) {}

  update(task: string, done: number, total: number): void {
    const startedAt = this.started.get(task) ?? Date.now();
    this.started.set(task, startedAt);
    const finished = done >= total;
    const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
    if (this.out.isTTY) {
      const filled = total > 0 ? Math.round((BAR_WIDTH * Math.min(done, total)) / total) : BAR_WIDTH;
      const bar = `${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}`;
      this.out.write(`\r\x1b[2K${task} [${bar}] ${done}/${total} ${seconds}s${finished ? "\n" : ""}`);
      this.drawing = !finished;
    } else {
      this.out.write(`${task}: ${done}/${total}${finished ? ` done in ${seconds}s` : ""}\n`);
    }
    if (finished) this.started.delete(task);
  }

  /** Ends a line left half drawn (e.g. when the work failed). */
  close(): void {
    if (this.drawing) this.out.write("\n");
    this.drawing = false;
  }
}
