/**
 * A one-line progress bar on stderr (redrawn in place on a terminal, a line per tenth
 * otherwise, so CI logs stay short). Keeps stdout for the results.
 */
export class ProgressBar {
  private done = 0;
  private readonly started = performance.now();
  private lastDraw = 0;
  private lastTenth = -1;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(
    private readonly label: string,
    private readonly total: number
  ) {
    this.draw(true);
  }

  advance(n: number): void {
    this.done = Math.min(this.total, this.done + n);
    this.draw(false);
  }

  finish(): void {
    const drawn = !this.tty && this.lastTenth === 10;
    this.done = this.total;
    if (!drawn) {
      this.draw(true);
    }
    if (this.tty) {
      process.stderr.write('\n');
    }
  }

  private draw(force: boolean): void {
    const now = performance.now();
    const fraction = this.total ? this.done / this.total : 1;
    const tenth = Math.floor(fraction * 10);
    if (this.tty ? !force && now - this.lastDraw < 100 : !force && tenth === this.lastTenth) {
      return;
    }
    this.lastDraw = now;
    this.lastTenth = tenth;
    const seconds = (now - this.started) / 1000;
    const rate = seconds > 0 ? this.done / seconds : 0;
    const eta = rate > 0 ? Math.round((this.total - this.done) / rate) : undefined;
    const width = 30;
    const filled = Math.round(fraction * width);
    const line =
      `${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${this.done.toLocaleString('en-US')}/${this.total.toLocaleString('en-US')} ${Math.round(rate).toLocaleString('en-US')}/s` +
      (eta !== undefined && this.done < this.total ? ` ETA ${eta}s` : ` ${seconds.toFixed(1)}s`);
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }
}
